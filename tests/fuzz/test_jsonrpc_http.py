"""Every JSON-RPC request shape against the ASGI app, in process (no sockets).

tests/rpc/test_strict_json.py fuzzes the body parser and the dispatcher;
this drives the whole HTTP shell (rpc/server.py: routes, methods, headers,
auth, content type, body limits, rate limits, then the dispatcher) the way
an ASGI server would, by calling the ASGI app with scope/receive/send.  Shapes:
malformed JSON, a BOM, scalars, empty and huge batches, ids of every type,
NaN, 1e999999, lone surrogates (escaped and raw), 100,000 nested brackets,
huge bodies, wrong content types, GET/PUT/OPTIONS/..., long and repeated
headers, bodies in many small chunks.  Every answer must be a clear HTTP
status with a JSON-RPC (or JSON) error, never a 500, never a traceback, and
no write handler may run for a request that is refused.  Slowloris against
a real server is in tests/faults/test_rpc_hostile_load.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbftd.rpcservice import ATTEST_PARAMS, ATTEST_RESULT
from rpc.jsonrpc import RpcContext
from rpc.metrics import Registry
from rpc.ratelimit import RateLimiter
from rpc.server import RpcLimits, make_app
from tests.rpc.fakes import TOKENS, FakeNode, chain_dispatcher

BUDGET = settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
BODY_BYTES_MAX = 256 * 1024
OK_STATUSES = {200, 204, 401, 404, 405, 408, 413, 415, 429}
WRITER = "writer-token"
SHA = "ab" * 32


class App:
    """The app with chain methods on a FakeNode plus a recording write method."""

    def __init__(self, rate_per_s: float = 1e9) -> None:
        self.node = FakeNode()
        self.writes: list[dict[str, Any]] = []
        dispatcher = chain_dispatcher(self.node)

        @dispatcher.method("evidence.attest", scope="evidence:write", params_schema=ATTEST_PARAMS,
                           result_schema=ATTEST_RESULT, summary="recording stand-in")
        def attest(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
            self.writes.append(params)
            return {"tx_id": SHA, "status": "pending"}

        tokens = {**TOKENS, WRITER: frozenset({"evidence:write"})}
        self.app = make_app(dispatcher, node_api=self.node, metrics=Registry(),
                            limits=RpcLimits(body_bytes_max=BODY_BYTES_MAX,
                                             request_timeout_ms=2_000),
                            auth=tokens.get,
                            rate_limiter=RateLimiter(rate_per_s_token=rate_per_s,
                                                     rate_per_s_anonymous=rate_per_s))

    def request(self, method: str = "POST", path: str = "/", body: bytes = b"",
                headers: list[tuple[bytes, bytes]] | None = None,
                chunks: int = 1) -> tuple[int, dict[bytes, bytes], bytes]:
        if headers is None:
            headers = [(b"content-type", b"application/json")]
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        size = max(1, -(-len(body) // chunks))
        pieces = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
        inbox = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                 for i, p in enumerate(pieces)]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop(0)
            await trio.sleep_forever()
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path,
                 "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 40000),
                 "server": ("127.0.0.1", 8545)}

        async def main() -> None:
            with trio.fail_after(10):
                await self.app(scope, receive, send)

        trio.run(main)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], dict(start["headers"]), body_out


def check_answer(status: int, headers: dict[bytes, bytes], body: bytes) -> Any:
    """A clear answer: a known status, no traceback, JSON that says what failed."""
    assert status in OK_STATUSES, (status, body[:300])
    assert b"Traceback" not in body and b'File "' not in body, body[:300]
    if status == 204:
        assert body == b""
        return None
    if headers.get(b"content-type") != b"application/json":
        return body
    value = json.loads(body)
    for item in value if isinstance(value, list) else [value]:
        if "error" in item and "jsonrpc" in item:
            code = item["error"]["code"]
            assert -32768 <= code <= -32000, item
            assert isinstance(item["error"]["message"], str) and item["error"]["message"]
    return value


@pytest.fixture(scope="module")
def app() -> App:
    return App()


def _rpc(method: Any = "node.status", params: Any = None, id_: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        message["params"] = params
    return message


# --------------------------------------------------------------------------
# named shapes from the issue, each with the answer it must get

NESTED = b"[" * 100_000 + b"]" * 100_000
SHAPES: dict[str, tuple[bytes, int, int | None]] = {
    # name: (body, HTTP status, JSON-RPC error code or None for a result)
    "empty_body": (b"", 200, -32700),
    "malformed": (b'{"jsonrpc": "2.0", "method": ', 200, -32700),
    "bom": (b"\xef\xbb\xbf" + json.dumps(_rpc()).encode(), 200, -32700),
    "scalar_int": (b"1", 200, -32600),
    "scalar_string": (b'"node.status"', 200, -32600),
    "scalar_null": (b"null", 200, -32600),
    "scalar_true": (b"true", 200, -32600),
    "empty_batch": (b"[]", 200, -32600),
    "huge_batch": (b"[" + b",".join([b"1"] * 10_001) + b"]", 200, -32600),
    "nan_id": (b'{"jsonrpc": "2.0", "method": "node.status", "id": NaN}', 200, -32700),
    "infinity_param": (b'{"jsonrpc": "2.0", "method": "node.status", "id": 1, '
                       b'"params": {"x": -Infinity}}', 200, -32700),
    "1e999999": (b'{"jsonrpc": "2.0", "method": "node.status", "id": 1e999999}', 200, -32700),
    "5000_digit_id": (b'{"jsonrpc": "2.0", "method": "node.status", "id": 1'
                      + b"0" * 5000 + b"}", 200, -32700),
    "lone_surrogate_escaped": (b'{"jsonrpc": "2.0", "method": "node.\\ud800", "id": 1}',
                               200, -32700),
    "lone_surrogate_raw": (b'{"jsonrpc": "2.0", "method": "node.\xed\xa0\x80", "id": 1}',
                           200, -32700),
    "invalid_utf8": (b'{"jsonrpc": "2.0", "method": "\xff", "id": 1}', 200, -32700),
    "duplicate_id": (b'{"jsonrpc": "2.0", "method": "node.status", "id": 1, "id": 2}',
                     200, -32700),
    "nested_100000": (NESTED, 200, -32700),
    "nested_objects": (b'{"a":' * 30_000 + b"1" + b"}" * 30_000, 200, -32700),
    "huge_body": (b'{"jsonrpc": "2.0", "method": "node.status", "id": "'
                  + b"x" * BODY_BYTES_MAX + b'"}', 413, -32600),
    "long_string": (json.dumps(_rpc(params={"x": "y" * 70_000})).encode(), 200, -32700),
    "id_float": (json.dumps(_rpc(id_=1.5)).encode(), 200, None),  # a number: allowed
    "id_object": (json.dumps(_rpc(id_={"a": 1})).encode(), 200, -32600),
    "id_list": (json.dumps(_rpc(id_=[1])).encode(), 200, -32600),
    "id_bool": (json.dumps(_rpc(id_=True)).encode(), 200, -32600),
    "id_null": (json.dumps(_rpc(id_=None)).encode(), 200, None),
    "id_string": (json.dumps(_rpc(id_="x" * 1000)).encode(), 200, None),
    "id_negative_big": (json.dumps(_rpc(id_=-(2**70))).encode(), 200, None),
    "method_int": (json.dumps(_rpc(method=5)).encode(), 200, -32600),
    "method_unknown": (json.dumps(_rpc(method="rpc.evil")).encode(), 200, -32601),
    "params_scalar": (json.dumps(_rpc(method="chain.getBlock", params=3)).encode(), 200, -32600),
    "write_anonymous": (json.dumps(_rpc(method="evidence.attest", params={
        "sha256": SHA, "kind": "judgment", "case_no": "x"})).encode(), 200, -32001),
    "jsonrpc_1": (json.dumps({**_rpc(), "jsonrpc": "1.0"}).encode(), 200, -32600),
    "extra_member": (json.dumps({**_rpc(), "x": 1}).encode(), 200, None),  # ignored
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_named_request_shape_gets_a_clear_answer(app: App, name: str) -> None:
    body, status, code = SHAPES[name]
    writes = len(app.writes)
    got_status, headers, out = app.request(body=body)
    value = check_answer(got_status, headers, out)
    assert got_status == status, (name, got_status, out[:300])
    first = value[0] if isinstance(value, list) else value
    if code is None:
        assert "result" in first, first
    else:
        assert first["error"]["code"] == code, (name, first)
    assert len(app.writes) == writes


@pytest.mark.parametrize("method", ["GET", "PUT", "OPTIONS", "DELETE", "PATCH", "HEAD",
                                    "TRACE", "BREW"])
@pytest.mark.parametrize("path", ["/", "/health", "/metrics", "/ws", "/nope", "/%00",
                                  "/" + "a" * 10_000, "/\udcff"])
def test_every_http_method_on_every_path(app: App, method: str, path: str) -> None:
    writes = len(app.writes)
    status, headers, out = app.request(method, path, body=json.dumps(_rpc()).encode())
    check_answer(status, headers, out)
    if path == "/" and method != "POST":
        assert status == 405 and headers[b"allow"] == b"POST"
    assert len(app.writes) == writes


HEADER_CASES: dict[str, tuple[list[tuple[bytes, bytes]], int]] = {
    "no_content_type": ([], 415),
    "text_plain": ([(b"content-type", b"text/plain")], 415),
    "latin1": ([(b"content-type", b"application/json; charset=latin-1")], 415),
    "two_content_types": ([(b"content-type", b"application/json")] * 2, 415),
    "form": ([(b"content-type", b"application/x-www-form-urlencoded")], 415),
    "bad_bearer": ([(b"content-type", b"application/json"),
                    (b"authorization", b"Bearer nope")], 401),
    "basic_auth": ([(b"content-type", b"application/json"),
                    (b"authorization", b"Basic dXNlcjpwYXNz")], 401),
    "two_bearers": ([(b"content-type", b"application/json"),
                     (b"authorization", b"Bearer " + WRITER.encode()),
                     (b"authorization", b"Bearer " + WRITER.encode())], 401),
    "bearer_latin1": ([(b"content-type", b"application/json"),
                       (b"authorization", b"Bearer \xff\xfe")], 401),
    "long_bearer": ([(b"content-type", b"application/json"),
                     (b"authorization", b"Bearer " + b"a" * 65_536)], 401),
    "long_other_header": ([(b"content-type", b"application/json"),
                           (b"x-junk", b"j" * 65_536)], 200),
    "many_headers": ([(b"content-type", b"application/json"),
                      *[(b"x-h%d" % i, b"v") for i in range(2000)]], 200),
}


@pytest.mark.parametrize("name", sorted(HEADER_CASES))
def test_header_shapes_get_a_clear_answer(app: App, name: str) -> None:
    headers, status = HEADER_CASES[name]
    writes = len(app.writes)
    body = json.dumps(_rpc("evidence.attest", {"sha256": SHA, "kind": "judgment",
                                               "case_no": "(2024)1"})).encode()
    got, out_headers, out = app.request(body=body, headers=headers)
    value = check_answer(got, out_headers, out)
    assert got == status, (name, got, out[:200])
    if got != 200:
        assert value["error"]["code"] in (-32600, -32001), value
    assert len(app.writes) == writes  # anonymous or refused: never written


def test_declared_content_length_over_the_cap_is_413_unread(app: App) -> None:
    status, headers, out = app.request(
        body=b"{}", headers=[(b"content-type", b"application/json"),
                             (b"content-length", str(10**12).encode())])
    check_answer(status, headers, out)
    assert status == 413


# --------------------------------------------------------------------------
# generated shapes

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
request_obj = st.fixed_dictionaries(
    {}, optional={"jsonrpc": st.one_of(st.just("2.0"), json_value),
                  "method": st.one_of(st.sampled_from(["node.status", "chain.getBlock",
                                                       "evidence.attest", "rpc.discover"]),
                                      json_value),
                  "id": json_value, "params": json_value, "extra": json_value})
RAW_SPLICES = [b"NaN", b"Infinity", b"-Infinity", b"1e999999", b'"\\ud800"', b'"\\udfff"',
               b"\xed\xa0\x80", b"\xff", b"[" * 70, b"1" * 4400, b'{"a":1,"a":2}', b"\x00",
               b"", b"}", b"'x'", b"undefined", b"0x10", b"01", b"+1", b".5"]


def _bodies() -> st.SearchStrategy[bytes]:
    single = request_obj.map(lambda m: json.dumps(m).encode())
    batch = st.lists(request_obj, max_size=5).map(lambda ms: json.dumps(ms).encode())

    def splice(args: tuple[bytes, int, bytes]) -> bytes:
        body, at, raw = args
        at = at % (len(body) + 1)
        return body[:at] + raw + body[at:]

    spliced = st.tuples(st.one_of(single, batch), st.integers(0, 10_000),
                        st.sampled_from(RAW_SPLICES)).map(splice)
    truncated = st.tuples(single, st.integers(0, 10_000)).map(
        lambda a: a[0][: a[1] % (len(a[0]) + 1)])
    return st.one_of(single, batch, spliced, truncated, st.binary(max_size=64),
                     single.map(lambda b: b"\xef\xbb\xbf" + b))


@BUDGET
@given(body=_bodies(), chunks=st.sampled_from([1, 3, 50]))
def test_any_generated_body_gets_a_clear_answer_and_never_writes(body: bytes,
                                                                 chunks: int) -> None:
    app = _shared_app()
    status, headers, out = app.request(body=body, chunks=chunks)
    check_answer(status, headers, out)
    assert status in (200, 204), (status, out[:200])
    assert app.writes == []  # anonymous: evidence.attest is refused before its handler


@BUDGET
@given(params=st.dictionaries(st.sampled_from(["sha256", "kind", "case_no", "title",
                                               "request_id", "wait", "extra"]),
                              json_value, max_size=7))
def test_write_with_bad_params_is_invalid_params_and_never_reaches_the_handler(params):
    """With a token that may write: any params the schema refuses are -32602
    and the handler does not run; those it accepts are written once."""
    app = _shared_app()
    before = len(app.writes)
    body = json.dumps(_rpc("evidence.attest", params)).encode()
    status, headers, out = app.request(
        body=body, headers=[(b"content-type", b"application/json"),
                            (b"authorization", b"Bearer " + WRITER.encode())])
    value = check_answer(status, headers, out)
    assert status == 200
    if "error" in value:
        assert value["error"]["code"] == -32602, value
        assert len(app.writes) == before
    else:
        assert len(app.writes) == before + 1 and app.writes[-1] == params


_APP: App | None = None


def _shared_app() -> App:
    global _APP
    if _APP is None:
        _APP = App()
    return _APP


def test_rate_limited_caller_gets_429_with_retry_after_and_no_write() -> None:
    app = App(rate_per_s=1)
    body = json.dumps([_rpc("evidence.attest", {"sha256": SHA, "kind": "judgment",
                                                "case_no": "x"}, id_=i) for i in range(5)])
    headers = [(b"content-type", b"application/json"),
               (b"authorization", b"Bearer " + WRITER.encode())]
    statuses = []
    for _ in range(3):
        status, out_headers, out = app.request(body=body.encode(), headers=headers)
        check_answer(status, out_headers, out)
        statuses.append(status)
        if status == 429:
            assert int(out_headers[b"retry-after"]) >= 1
            answer = json.loads(out)  # per call once parsed; one error if refused unread
            answers = answer if isinstance(answer, list) else [answer]
            assert {e["error"]["code"] for e in answers} == {-32005}
    assert 429 in statuses
    assert len(app.writes) == 5 * statuses.count(200)
