"""The HTTP shell, end to end: a real server (rpc/http11.py) on a loopback port,
spoken to with h11. Each test runs its own server inside trio.run."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from structlog.testing import capture_logs

from rpc.jsonrpc import Dispatcher, RpcContext
from rpc.metrics import Registry
from rpc.server import RpcLimits, make_app
from tests.rpc.fakes import TOKENS, FakeNode, chain_dispatcher, request
from tests.rpc.http_client import HttpResponse, connect, fetch, running
from tests.rpc.test_metrics import parse as parse_metrics

JSON_HEADERS = [("content-type", "application/json")]


def serve_and(test: Callable[[int], Awaitable[None]], *, node: FakeNode | None = None,
              limits: RpcLimits | None = None, auth: Any = TOKENS.get,
              dispatcher: Dispatcher | None = None, **serve: Any) -> Registry:
    registry = Registry()
    node = node or FakeNode()
    app = make_app(dispatcher or chain_dispatcher(node), node_api=node, metrics=registry,
                   limits=limits, auth=auth)

    async def main() -> None:
        async with running(app, **serve) as port:
            await test(port)
    trio.run(main)
    return registry


async def post(port: int, body: str | bytes, *, token: str | None = None,
               headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    all_headers = list(JSON_HEADERS if headers is None else headers)
    if token is not None:
        all_headers.append(("authorization", f"Bearer {token}"))
    raw = body.encode() if isinstance(body, str) else body
    return await fetch(port, "POST", "/", body=raw, headers=all_headers)


def rpc_body(response: HttpResponse) -> Any:
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.body)
    return json.loads(response.body)


def test_post_a_public_call_and_keep_the_connection_alive() -> None:
    async def check(port: int) -> None:
        async with connect(port) as client:
            for id_ in (1, 2):
                response = await client.request("POST", "/", body=request(
                    "node.status", id_=id_).encode(), headers=JSON_HEADERS)
                assert response.status == 200
                got = rpc_body(response)
                assert got["id"] == id_ and got["result"]["node_id"] == "n0"
                assert "server" not in response.headers
                client.reuse()
    serve_and(check)


def test_content_type_must_be_json_with_at_most_a_utf8_charset() -> None:
    async def check(port: int) -> None:
        body = request("node.status")
        for content_type in ("application/json; charset=utf-8", "Application/JSON",
                             'application/json;charset="UTF-8"'):
            assert (await post(port, body, headers=[("content-type", content_type)])).status == 200
        for headers in ([("content-type", "text/plain")], [],
                        [("content-type", "application/json; charset=latin-1")],
                        [("content-type", "application/jsonx")]):
            response = await post(port, body, headers=headers)
            assert response.status == 415
            assert rpc_body(response)["error"]["code"] == -32600
    serve_and(check)


def test_declared_oversized_body_is_413_before_any_body_is_read() -> None:
    async def check(port: int) -> None:
        async with connect(port) as client:
            await client.send_head("POST", "/", [*JSON_HEADERS, ("content-length", "1025")])
            response = await client.response()  # no body was ever sent
            assert response.status == 413
            got = rpc_body(response)
            assert got["error"]["code"] == -32600 and got["id"] is None
            assert got["error"]["data"]["body_bytes_max"] == 1024
            assert response.headers["connection"] == "close"
            assert await client.server_closed()
    serve_and(check, limits=RpcLimits(body_bytes_max=1024))


def test_streamed_oversized_body_is_413_once_past_the_cap() -> None:
    async def check(port: int) -> None:
        async with connect(port) as client:
            await client.send_head("POST", "/", [*JSON_HEADERS,
                                                 ("transfer-encoding", "chunked")])
            await client.send_data(b" " * 1025)
            response = await client.response()
            assert response.status == 413 and rpc_body(response)["error"]["code"] == -32600
    serve_and(check, limits=RpcLimits(body_bytes_max=1024))


def test_a_body_slower_than_the_request_timeout_gets_408() -> None:
    async def check(port: int) -> None:
        async with connect(port) as client:
            await client.send_head("POST", "/", [*JSON_HEADERS, ("content-length", "100")])
            await client.send_data(b'{"jsonrpc":')  # ...and the rest never comes
            response = await client.response()
            assert response.status == 408
            assert rpc_body(response)["error"]["data"]["request_timeout_ms"] == 200
    serve_and(check, limits=RpcLimits(request_timeout_ms=200))


def test_health_is_200_when_ok_and_503_when_not() -> None:
    node = FakeNode()

    async def check(port: int) -> None:
        response = await fetch(port, "GET", "/health")
        assert response.status == 200
        assert json.loads(response.body) == {"height": 1, "status": "ok"}
        node.healthy = False
        response = await fetch(port, "GET", "/health")
        assert response.status == 503
        assert json.loads(response.body)["status"] == "unavailable"
        assert (await fetch(port, "POST", "/health")).headers["allow"] == "GET"
    serve_and(check, node=node)


def test_metrics_are_prometheus_text_and_count_what_happened() -> None:
    async def check(port: int) -> None:
        await post(port, request("node.status"))
        await post(port, request("no.such"))
        response = await fetch(port, "GET", "/metrics")
        assert response.status == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = parse_metrics(response.body.decode())
        assert ("pbftd_rpc_http_requests_total", '{route="/",status="200"}', 2.0) in families[
            "pbftd_rpc_http_requests_total"]
        calls = families["pbftd_rpc_calls_total"]
        assert ("pbftd_rpc_calls_total", '{method="node.status",outcome="ok"}', 1.0) in calls
        assert ("pbftd_rpc_calls_total", '{method="(invalid)",outcome="-32601"}', 1.0) in calls
        assert any(s[0] == "pbftd_rpc_call_seconds_count" for s in families[
            "pbftd_rpc_call_seconds"])
    serve_and(check)


def test_unknown_path_404_and_other_methods_on_root_405() -> None:
    async def check(port: int) -> None:
        assert (await fetch(port, "GET", "/nope")).status == 404
        assert (await fetch(port, "POST", "/rpc", body=b"{}", headers=JSON_HEADERS)).status == 404
        for method in ("PUT", "GET", "DELETE"):
            response = await fetch(port, method, "/", body=b"{}", headers=JSON_HEADERS)
            assert response.status == 405 and response.headers["allow"] == "POST"
    serve_and(check)


def test_bad_bearer_token_is_401_with_a_json_rpc_body() -> None:
    async def check(port: int) -> None:
        for header in ("Bearer wrong-token", "Basic cmVhZGVyOng=", "Bearer", "Bearer a b"):
            response = await post(port, request("node.status"), headers=[
                *JSON_HEADERS, ("authorization", header)])
            assert response.status == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            got = rpc_body(response)
            assert got["error"]["code"] == -32001 and got["id"] is None
    serve_and(check)


def test_public_methods_for_anyone_scoped_methods_need_their_scope() -> None:
    async def check(port: int) -> None:
        get_block = request("chain.getBlock", {"height": 1})
        anonymous = rpc_body(await post(port, get_block))
        assert anonymous["error"]["message"] == "unauthorized"
        wrong = rpc_body(await post(port, get_block, token="case-token"))
        assert wrong["error"]["message"] == "forbidden"
        for token in ("reader-token", "admin-token"):
            got = rpc_body(await post(port, get_block, token=token))
            assert got["result"]["header"]["height"] == 1
        assert "result" in rpc_body(await post(port, request("node.status"), token="case-token"))
    serve_and(check)


def test_all_notification_batch_is_204_with_no_body() -> None:
    async def check(port: int) -> None:
        body = json.dumps([{"jsonrpc": "2.0", "method": "node.status"},
                           {"jsonrpc": "2.0", "method": "no.such"}])
        response = await post(port, body)
        assert response.status == 204 and response.body == b""
        assert "content-length" not in response.headers
    serve_and(check)


def test_bad_json_over_http_is_200_with_parse_error_never_500() -> None:
    async def check(port: int) -> None:
        for body in (b"[" * 100_000, b'{"id":1,"id":2}', b"\xef\xbb\xbf{}", b"\xff",
                     b'{"a":NaN}', b"1e999999", b'"\\ud800"', b"9" * 5000):
            response = await post(port, body)
            assert response.status == 200
            got = rpc_body(response)
            assert got["error"]["code"] == -32700 and b"Traceback" not in response.body
    serve_and(check)


def test_an_unexpected_failure_in_the_shell_is_500_with_an_incident_id_only() -> None:
    def broken_auth(token: str) -> frozenset[str] | None:
        raise RuntimeError("database password is hunter2")

    async def check(port: int) -> None:
        with capture_logs() as logs:
            response = await post(port, request("node.status"), token="any")
        assert response.status == 500
        got = rpc_body(response)
        assert got["error"]["code"] == -32603 and set(got["error"]["data"]) == {"incident"}
        assert b"hunter2" not in response.body and b"RuntimeError" not in response.body
        assert logs[0]["incident"] == got["error"]["data"]["incident"]
    serve_and(check, auth=broken_auth)


def test_a_call_running_past_the_request_timeout_is_answered_with_a_timeout_error() -> None:
    dispatcher = Dispatcher()

    @dispatcher.method("stuck", public=True, result_schema={"type": "null"}, summary="hangs")
    async def stuck(_params: dict[str, Any], _ctx: RpcContext) -> None:
        await trio.sleep_forever()  # the slow handler under test, not a wait for an event

    async def check(port: int) -> None:
        response = await post(port, request("stuck"))
        assert response.status == 200
        got = rpc_body(response)
        assert got["error"] == {"code": -32003, "message": "timeout",
                                "data": {"request_timeout_ms": 100}}
    serve_and(check, dispatcher=dispatcher, limits=RpcLimits(request_timeout_ms=100))


def test_lifespan_startup_and_shutdown_complete() -> None:
    node = FakeNode()
    app = make_app(chain_dispatcher(node), node_api=node, metrics=Registry(), auth=TOKENS.get)

    async def main() -> None:
        to_app, app_inbox = trio.open_memory_channel[dict[str, Any]](2)
        app_outbox, from_app = trio.open_memory_channel[dict[str, Any]](2)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app, {"type": "lifespan"}, app_inbox.receive,
                                   app_outbox.send)
                await to_app.send({"type": "lifespan.startup"})
                assert await from_app.receive() == {"type": "lifespan.startup.complete"}
                await to_app.send({"type": "lifespan.shutdown"})
                assert await from_app.receive() == {"type": "lifespan.shutdown.complete"}
    trio.run(main)  # returns only because the app's lifespan task ended by itself


def test_bodiless_requests_keep_the_connection_alive() -> None:
    """A GET has no body to read: the server must not take the missing body
    read as a reason to close (every /health or /metrics poll would reconnect)."""
    async def check(port: int) -> None:
        async with connect(port) as client:
            for _ in range(2):
                response = await client.request("GET", "/health")
                assert response.status == 200
                client.reuse()
            response = await client.request("POST", "/", body=request("node.status").encode(),
                                             headers=JSON_HEADERS)
            assert rpc_body(response)["result"]["node_id"] == "n0"
    serve_and(check)


def test_an_app_failure_on_one_connection_leaves_the_server_serving() -> None:
    """The app guards itself (500 with an incident id); a failure it does not
    catch still ends only its own connection, never the server."""
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        if scope["path"] == "/boom":
            raise RuntimeError("a bug in the app")
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        async with running(app) as port:
            async with connect(port) as client:
                await client.send_head("GET", "/boom", [])
                await client.end()
                assert await client.server_closed()
            response = await fetch(port, "GET", "/fine")
            assert (response.status, response.body) == (200, b"ok")
    with capture_logs() as logs:
        trio.run(main)
    assert calls == ["/boom", "/fine"]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "rpc.http_connection_failed"]


def test_a_chunked_body_arriving_in_one_read_is_read_whole() -> None:
    """Several chunks in one TCP read are several h11 Data events; none may
    be lost between the server's look-ahead and the app's next receive."""
    body = request("node.status", id_=7).encode()
    parts = [body[:5], body[5:20], body[20:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)

    async def check(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        data = b""
        async with stream:
            await stream.send_all(raw)
            with trio.fail_after(10):
                while chunk := await stream.receive_some(65_536):
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        reply = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert (reply["id"], reply["result"]["node_id"]) == (7, "n0")
    serve_and(check)


def test_a_request_head_trickled_byte_by_byte_is_cut_at_the_keep_alive_timeout() -> None:
    """Slowloris on headers: each byte arrives well within any read timeout,
    but the head as a whole must be complete within the keep-alive timeout."""
    from rpc.http11 import HttpSettings, serve_http
    node = FakeNode()
    app = make_app(chain_dispatcher(node), node_api=node, metrics=Registry(), auth=TOKENS.get)
    settings = HttpSettings(keep_alive_timeout_s=0.3, read_timeout_s=60)

    async def main() -> None:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(serve_http, app, "127.0.0.1", 0, settings)
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                received = b""
                async with stream:
                    await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    with trio.move_on_after(15) as never:
                        while True:  # one header byte at a time, never ending the head
                            try:
                                await stream.send_all(b"a")
                            except (trio.BrokenResourceError, OSError):
                                break
                            with trio.move_on_after(0.05):
                                if not (chunk := await stream.receive_some(4096)):
                                    break
                                received += chunk
                assert not never.cancelled_caught, "the server kept the connection open"
                assert not received.startswith(b"HTTP/1.1 2")
                nursery.cancel_scope.cancel()
    trio.run(main)


def test_connections_over_a_cap_get_503_and_the_rest_are_served() -> None:
    """Two per address, three in all: the third from one address and the
    fourth in all are turned away with a -32005 body saying which cap; a
    freed slot is usable again, and each refusal is counted by cap."""
    async def status(client: Any) -> int:
        response = await client.request("POST", "/", body=request("node.status").encode(),
                                        headers=JSON_HEADERS)
        client.reuse()
        return response.status

    async def check(port: int) -> None:
        async with connect(port) as a1, connect(port) as a2:
            assert await status(a1) == 200 and await status(a2) == 200
            async with connect(port) as a3:
                refused = await a3.response()
                assert refused.status == 503 and refused.headers["retry-after"] == "1"
                error = rpc_body(refused)["error"]
                assert error["code"] == -32005 and error["data"] == {"retry_after_ms": 1000}
                assert "from your address (at most 2)" in error["message"]
                assert await a3.server_closed()
            async with connect(port, source="127.0.0.2") as b1:
                assert await status(b1) == 200
                async with connect(port, source="127.0.0.3") as c1:
                    refused = await c1.response()
                    assert refused.status == 503
                    message = rpc_body(refused)["error"]["message"]
                    assert "too many connections (at most 3)" in message
                assert await status(a1) == 200  # the admitted ones are still served
        with trio.fail_after(5):  # the server notices the closes, then admits again
            while True:
                async with connect(port) as again:
                    try:
                        if await status(again) == 200:
                            break
                    except AssertionError:  # "server closed without a response"
                        pass
                await trio.sleep(0.01)

    registry = serve_and(check, connections_max=3, connections_per_address_max=2)
    refused = parse_metrics(registry.render())["pbftd_rpc_connections_refused_total"]
    assert sorted(refused) == [("pbftd_rpc_connections_refused_total", '{cap="address"}', 1.0),
                               ("pbftd_rpc_connections_refused_total", '{cap="total"}', 1.0)]
