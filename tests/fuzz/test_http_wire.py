"""Malformed HTTP on a real socket: what the in-process ASGI fuzz cannot
reach because the HTTP server (h11) parses it before the app (long and many
headers, bad request lines, bad or conflicting Content-Length, broken
chunked bodies, pipelining, HTTP/1.0, bare LF).  Each gets an HTTP error or
a closed connection, never a traceback, and the server answers a normal
request right after.  One real server (serve_rpc) serves the whole batch."""

from __future__ import annotations

import json

import trio

from tests.fuzz.test_jsonrpc_http import App
from tests.rpc.http_client import running

OK = b'{"jsonrpc": "2.0", "method": "node.status", "id": 1}'


def _req(head: bytes, body: bytes = OK) -> bytes:
    return head + b"\r\n\r\n" + body


CASES: dict[str, bytes] = {
    "long_header_64k": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"X-Long: " + b"a" * 65_536 + b"\r\nContent-Length: 52"),
    "many_headers": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + b"".join(b"X-%d: v\r\n" % i for i in range(20_000))
                         + b"Content-Length: 52"),
    "bad_request_line": _req(b"POST/HTTP/1.1\r\nHost: x"),
    "unknown_version": _req(b"POST / HTTP/9.9\r\nHost: x\r\nContent-Length: 52"),
    "content_length_abc": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                               b"\r\nContent-Length: abc"),
    "content_length_negative": _req(b"POST / HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Type: application/json\r\nContent-Length: -1"),
    "two_content_lengths": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                b"\r\nContent-Length: 52\r\nContent-Length: 10"),
    "length_and_chunked": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                               b"\r\nContent-Length: 52\r\nTransfer-Encoding: chunked"),
    "bad_chunk_size": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                           b"\r\nTransfer-Encoding: chunked", b"zz\r\n" + OK + b"\r\n0\r\n\r\n"),
    "huge_chunk_size": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                            b"\r\nTransfer-Encoding: chunked", b"ffffffffffffffff\r\n" + OK),
    "header_no_colon": _req(b"POST / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\nContent-Length: 52"),
    "header_nul": _req(b"POST / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nContent-Length: 52"),
    "bare_lf": b"POST / HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 52"
               b"\n\n" + OK,
    "http_1_0": _req(b"POST / HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 52"),
    "pipelined_3": _req(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 52") * 3,
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "utf8_path": _req("POST /ü HTTP/1.1\r\nHost: x\r\nContent-Length: 52".encode()),
}


async def _exchange(port: int, raw: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data = b""
    async with stream:
        try:
            await stream.send_all(raw)
            with trio.move_on_after(0.5):
                while chunk := await stream.receive_some(65_536):
                    data += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
    return data


def test_malformed_http_gets_an_http_error_and_the_server_keeps_serving() -> None:
    app = App()
    answers: dict[str, bytes] = {}

    async def main() -> None:
        async with running(app.app) as port:
            for name, raw in CASES.items():
                answers[name] = await _exchange(port, raw)
                normal = await _exchange(port, _req(
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: 52"))
                assert normal.startswith(b"HTTP/1.1 200"), (name, normal[:200])
                assert json.loads(normal.split(b"\r\n\r\n", 1)[1])["result"]["node_id"] == "n0"

    trio.run(main)
    for name, data in answers.items():
        assert b"Traceback" not in data and b'File "' not in data, (name, data[:300])
        statuses = [line.split(b" ")[1] for line in data.split(b"\r\n")
                    if line.startswith(b"HTTP/1.")]
        for status in statuses:  # every answer is a status we mean to send
            assert status in (b"200", b"400", b"405", b"413", b"415", b"431", b"404"), \
                (name, data[:300])
        if name == "pipelined_3":
            # a server may answer buffered pipelined requests only as more bytes
            # arrive; what matters here is that none is answered wrongly
            assert statuses and set(statuses) == {b"200"}, data[:300]
        if name.startswith(("long_header", "many_headers")):
            assert statuses and statuses[0] in (b"400", b"431"), (name, data[:300])
    assert app.writes == []


def test_a_refused_head_is_answered_even_while_the_client_is_still_sending() -> None:
    """A client that sends its whole request before reading (most HTTP
    libraries) must get the 431, not a reset: closing with the rest of its
    request unread would make the kernel reset the connection and the client's
    send fail before it reads the answer.  The server closes lingering
    (rpc/http11.py).  Without that, 30 of 30 such exchanges lost their answer."""
    raw = CASES["many_headers"] + b"x" * 500_000
    answers: list[bytes] = []

    async def main() -> None:
        async with running(App().app) as port:
            for _ in range(5):
                answers.append(await _exchange(port, raw))

    trio.run(main)
    assert [a[:12] for a in answers] == [b"HTTP/1.1 431"] * 5
