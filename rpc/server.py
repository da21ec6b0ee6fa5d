"""The HTTP shell around the JSON-RPC engine: an ASGI 3 app, served by rpc/http11.py.

http11 speaks HTTP (h11, wsproto); this module only maps requests to the
engine and outcomes to status codes. Routes:

    POST /        JSON-RPC 2.0. Every JSON-RPC answer, errors included, is
                  HTTP 200 (the error lives in the body); 204 with no body when
                  only notifications came. Transport problems get their HTTP
                  status *and* a JSON-RPC error body (id null) so any client
                  can show them: 401 bad token, 405 not POST, 408 body too
                  slow, 413 body too big, 415 not application/json.
    GET /ws       JSON-RPC over WebSocket, plus subscriptions (rpc/ws.py).
    GET /health   200 {"status": "ok", ...} or 503 when the node says not ok.
    GET /metrics  Prometheus text format 0.0.4.
    anything else 404.

Order of checks on POST /: method, then bearer token, then Content-Type,
then declared Content-Length, then the body itself is read against both
`body_bytes_max` and the `request_timeout_ms` deadline, so an unauthorised or
oversized request costs no body reading and a slow one cannot hold a task
open. Responses sent before the body was read end the connection.

Rate limits (rpc/ratelimit.py, when the app has a RateLimiter): a caller whose
bucket is empty gets 429 before its body is read; once the body is parsed, a
batch costs its number of calls, and over the limit the answer is 429 with
`Retry-After` (seconds) and -32005 errors with data {retry_after_ms}.

Authentication: `Authorization: Bearer TOKEN` is passed to the `auth`
callback, which returns the token's scopes or None (unknown token → 401).
No header means anonymous: public methods only. Tokens are never logged.

Binding: `serve_rpc` binds host:port and reports the port actually bound
through task_status, so port 0 works without a probe-then-bind race.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
import trio

from .errors import INTERNAL_ERROR, INVALID_REQUEST, TIMEOUT, UNAUTHORIZED, RpcError
from .http11 import (
    CONNECTIONS_MAX,
    CONNECTIONS_PER_ADDRESS_MAX,
    HttpSettings,
    refusal_message,
    serve_http,
)
from .jsonrpc import Dispatcher, RpcContext, encode_response, error_response
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Registry
from .node_api import NodeApi
from .ratelimit import (
    RATE_LIMITED,
    RateLimiter,
    error_responses,
    rate_key,
    rate_limited_error,
    retry_after_header,
)
from .ws import WsEndpoint, WsLimits

__all__ = ["Auth", "RpcLimits", "http_settings", "make_app", "serve_rpc"]

log = structlog.get_logger("pbftd.rpc.http")

Auth = Callable[[str], frozenset[str] | None]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)
_ROUTES = ("/", "/health", "/metrics")


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Caps per request; defaults match config's [rpc] section. (The batch
    length cap belongs to the Dispatcher, which every transport shares.)"""

    body_bytes_max: int = 16 * 1024 * 1024
    request_timeout_ms: int = 30_000
    depth_max: int = 64
    string_chars_max: int = 65_536


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: bytes | None = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    close: bool = False


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _rpc_error(status: int, code: int, message: str | None = None, *, close: bool = False,
               headers: list[tuple[bytes, bytes]] | None = None,
               **data: Any) -> _Response:
    body = encode_response(error_response(None, RpcError(code, message, data)))
    return _Response(status, body, headers=headers or [], close=close)


def make_app(dispatcher: Dispatcher, *, node_api: NodeApi, metrics: Registry,
             limits: RpcLimits | None = None,
             auth: Auth, rate_limiter: RateLimiter | None = None,
             ws: WsLimits | None = None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app. Make one per dispatcher: it adds a metrics observer to it.

    `rate_limiter` None means no rate limits; `ws` None means WsLimits()."""
    return _RpcApp(dispatcher, node_api, metrics, limits or RpcLimits(), auth,
                   rate_limiter, ws or WsLimits())


class _RpcApp:
    def __init__(self, dispatcher: Dispatcher, node_api: NodeApi, metrics: Registry,
                 limits: RpcLimits, auth: Auth, rate_limiter: RateLimiter | None = None,
                 ws: WsLimits | None = None) -> None:
        self.dispatcher = dispatcher
        self.node_api = node_api
        self.registry = metrics
        self.limits = limits
        self.auth = auth
        self.rate_limiter = rate_limiter
        self.ws = WsEndpoint(dispatcher, auth=auth, ws=ws or WsLimits(),
                             body_bytes_max=limits.body_bytes_max,
                             request_timeout_ms=limits.request_timeout_ms,
                             depth_max=limits.depth_max,
                             string_chars_max=limits.string_chars_max,
                             rate_limiter=rate_limiter)
        # serve_rpc gives the HTTP server this cap, so it never buffers a larger message
        self.message_bytes_max = self.ws.frame_bytes_max
        if rate_limiter is not None:
            metrics.counter("pbftd_rpc_rate_limited_total", "calls refused by rate limits",
                            callback=lambda: rate_limiter.refused)
            metrics.counter("pbftd_rpc_rate_paced_total",
                            "waits of subscriptions for their caller's rate tokens",
                            callback=lambda: rate_limiter.paced)
        self.http_requests = metrics.counter(
            "pbftd_rpc_http_requests_total", "HTTP requests by route and status",
            ("route", "status"))
        self.calls = metrics.counter(
            "pbftd_rpc_calls_total", "JSON-RPC calls by method and outcome (ok or error code)",
            ("method", "outcome"))
        self.call_seconds = metrics.histogram(
            "pbftd_rpc_call_seconds", "JSON-RPC call duration, seconds", ("method",))
        dispatcher.add_observer(self._observe_call)

    def _observe_call(self, method: str | None, code: int | None, seconds: float) -> None:
        name = method or "(invalid)"  # never a caller-chosen string: bounded label values
        self.calls.inc(method=name, outcome="ok" if code is None else str(code))
        self.call_seconds.observe(seconds, method=name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            if scope["path"] == "/ws":
                await self.ws(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._route(scope, receive)
        except Exception:
            incident = secrets.token_hex(8)
            log.exception("rpc.http_internal_error", incident=incident, path=scope["path"])
            response = _rpc_error(500, INTERNAL_ERROR, close=True, incident=incident)
        if response is None:  # the client went away; nobody to answer
            return
        route = scope["path"] if scope["path"] in _ROUTES else "other"
        self.http_requests.inc(route=route, status=str(response.status))
        await _send(send, response)

    async def _route(self, scope: Scope, receive: Receive) -> _Response | None:
        path, method = scope["path"], scope["method"]
        if path == "/":
            if method != "POST":
                return _rpc_error(405, INVALID_REQUEST, close=True, headers=[(b"allow", b"POST")],
                                  reason="JSON-RPC is served by POST")
            return await self._post_rpc(scope, receive)
        if path in ("/health", "/metrics"):
            if method != "GET":
                return _Response(405, b'{"error":"method not allowed"}',
                                 headers=[(b"allow", b"GET")])
            return self._health() if path == "/health" else self._metrics()
        # --- static pages (rpc/pages.py: GET /verify) -- begin ---
        from .pages import EXTRA_HEADERS, PAGES
        if path in PAGES:
            if method != "GET":
                return _Response(405, b'{"error":"method not allowed"}',
                                 headers=[(b"allow", b"GET")])
            content_type, body = PAGES[path]
            return _Response(200, body, content_type=content_type.encode(),
                             headers=list(EXTRA_HEADERS))
        # --- static pages -- end ---
        return _Response(404, b'{"error":"not found"}')

    async def _post_rpc(self, scope: Scope, receive: Receive) -> _Response | None:
        headers = _headers(scope)
        ctx = self._authenticate(headers.get(b"authorization", []), scope.get("client"))
        key = rate_key(_bearer(headers.get(b"authorization", [])) if ctx and ctx.authenticated
                       else None, scope.get("client"))
        if ctx is not None and self.rate_limiter is not None:
            wait = self.rate_limiter.peek(key)  # an empty bucket costs no body reading
            if wait is not None:
                return _too_many(wait, close=True)
        if ctx is None:
            return _rpc_error(401, UNAUTHORIZED, "unauthorized", close=True,
                              headers=[(b"www-authenticate",
                                        b'Bearer realm="pbftd", error="invalid_token"')],
                              reason="unknown or malformed bearer token")
        if not _is_json(headers.get(b"content-type", [])):
            return _rpc_error(415, INVALID_REQUEST, close=True,
                              reason="Content-Type must be application/json")
        if _declared_length(headers) > self.limits.body_bytes_max:
            return self._too_large()
        timeout_s = self.limits.request_timeout_ms / 1000
        try:
            with trio.fail_after(timeout_s):
                body = await _read_body(receive, self.limits.body_bytes_max)
        except trio.TooSlowError:
            return _rpc_error(408, INVALID_REQUEST, close=True,
                              reason=f"body not received within {self.limits.request_timeout_ms}"
                                     " ms", request_timeout_ms=self.limits.request_timeout_ms)
        except _BodyTooLarge:
            return self._too_large()
        except _Disconnected:
            return None
        try:
            request = self.dispatcher.parse_body(body, depth_max=self.limits.depth_max,
                                                 string_chars_max=self.limits.string_chars_max)
        except RpcError as error:
            return _Response(200, self.dispatcher.refuse_body(error))
        if self.rate_limiter is not None:
            wait = self.rate_limiter.take(key, self.dispatcher.cost(request, ctx))
            if wait is not None:
                return _too_many(wait, request=request)
        return await self._dispatch(request, ctx, timeout_s)

    def _too_large(self) -> _Response:
        # Built only when needed: encoding it for every call cost 2% of a
        # node's CPU in issue 6's single-attest profile.
        return _rpc_error(413, INVALID_REQUEST, close=True,
                          reason=f"body larger than {self.limits.body_bytes_max} bytes",
                          body_bytes_max=self.limits.body_bytes_max)

    async def _dispatch(self, request: Any, ctx: RpcContext, timeout_s: float) -> _Response:
        with trio.move_on_after(timeout_s) as scope:
            answer = await self.dispatcher.handle_parsed(request, ctx)
        if scope.cancelled_caught:
            return _rpc_error(200, TIMEOUT, "timeout",
                              request_timeout_ms=self.limits.request_timeout_ms)
        if answer is None:
            return _Response(204, content_type=None)
        return _Response(200, answer)

    def _authenticate(self, values: list[bytes], client: Any) -> RpcContext | None:
        peer = f"{client[0]}:{client[1]}" if client else None
        if not values:
            return RpcContext(frozenset(), authenticated=False, peer=peer)
        match = _BEARER.fullmatch(values[0].decode("latin-1")) if len(values) == 1 else None
        scopes = self.auth(match.group(1)) if match else None
        if scopes is None:
            log.info("rpc.auth_refused", peer=peer)
            return None
        return RpcContext(frozenset(scopes), authenticated=True, peer=peer)

    def _health(self) -> _Response:
        try:
            report = dict(self.node_api.health())
            healthy = report.pop("ok", False) is True
            body = encode_response({**report, "status": "ok" if healthy else "unavailable"})
        except Exception:
            incident = secrets.token_hex(8)
            log.exception("rpc.health_failed", incident=incident)
            return _Response(503, encode_response({"status": "error", "incident": incident}))
        return _Response(200 if healthy else 503, body)

    def _metrics(self) -> _Response:
        return _Response(200, self.registry.render().encode("utf-8"),
                         content_type=METRICS_CONTENT_TYPE.encode())


def _too_many(wait: float, *, request: Any = None, close: bool = False) -> _Response:
    """429 with Retry-After and -32005 errors (one per call of a parsed body)."""
    error = rate_limited_error(wait)
    value = error_responses(request, error) if request is not None else None
    body = encode_response(value if value is not None else error_response(None, error))
    return _Response(429, body, close=close,
                     headers=[(b"retry-after", retry_after_header(wait))])


def _bearer(values: list[bytes]) -> str | None:
    match = _BEARER.fullmatch(values[0].decode("latin-1")) if len(values) == 1 else None
    return match.group(1) if match else None


def _headers(scope: Scope) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in scope["headers"]:
        found.setdefault(bytes(name).lower(), []).append(bytes(value))
    return found


def _is_json(values: list[bytes]) -> bool:
    """application/json, optionally with charset=utf-8 (any other charset is refused)."""
    if len(values) != 1:
        return False
    media, *params = values[0].decode("latin-1").split(";")
    if media.strip().lower() != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and \
                value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _declared_length(headers: Mapping[bytes, list[bytes]]) -> int:
    # h11 has already refused malformed or conflicting Content-Length headers.
    values = headers.get(b"content-length", [])
    return int(values[0]) if values else 0


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body += message.get("body", b"")
        if len(body) > limit:
            raise _BodyTooLarge
        if not message.get("more_body", False):
            return bytes(body)


async def _send(send: Send, response: _Response) -> None:
    headers = [(b"cache-control", b"no-store"), *response.headers]
    if response.status != 204:
        headers += [(b"content-length", str(len(response.body)).encode())]
    if response.content_type is not None:
        headers += [(b"content-type", response.content_type),
                    (b"x-content-type-options", b"nosniff")]
    if response.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to set up: the daemon starts its services before serving RPC.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def http_settings(*, read_timeout_s: int = 65, keep_alive_timeout_s: float = 5.0,
                  ws_message_bytes_max: int = 16 * 1024 * 1024,
                  connections_max: int = CONNECTIONS_MAX,
                  connections_per_address_max: int = CONNECTIONS_PER_ADDRESS_MAX) -> HttpSettings:
    """The HTTP server's limits for a node's RPC port (rpc/http11.py).

    A socket silent for `read_timeout_s` is dropped even while its request
    is still being handled, so it must exceed the longest call
    (RpcLimits.request_timeout_ms, wait: true included).
    """
    return HttpSettings(read_timeout_s=read_timeout_s, keep_alive_timeout_s=keep_alive_timeout_s,
                        head_bytes_max=16 * 1024,  # request line plus headers, bytes
                        graceful_timeout_s=3.0, ws_message_bytes_max=ws_message_bytes_max,
                        connections_max=connections_max,
                        connections_per_address_max=connections_per_address_max)


def _connection_refusal(registry: Registry | None) -> Callable[[str, int], bytes]:
    """The 503 body for a connection over a cap: a JSON-RPC -32005 error, as
    for a rate limit, so agency clients handle both alike; counted by cap."""
    refused = (registry.counter("pbftd_rpc_connections_refused_total",
                                "RPC connections turned away over a connection cap",
                                labelnames=("cap",)) if registry is not None else None)

    def refusal(cap: str, limit: int) -> bytes:
        if refused is not None:
            refused.inc(cap=cap)
        error = RpcError(RATE_LIMITED, refusal_message(cap, limit), {"retry_after_ms": 1000})
        return encode_response(error_response(None, error))
    return refusal


async def serve_rpc(app: Callable[..., Awaitable[None]], host: str, port: int, *,
                    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                    read_timeout_s: int = 65, connections_max: int = CONNECTIONS_MAX,
                    connections_per_address_max: int = CONNECTIONS_PER_ADDRESS_MAX,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` until cancelled or `shutdown_trigger` returns; report the bound port.

    `port` 0 picks a free port; the port actually bound is what task_status reports.
    `read_timeout_s` must exceed the app's request_timeout_ms (see http_settings).
    """
    settings = http_settings(read_timeout_s=read_timeout_s,
                             ws_message_bytes_max=getattr(app, "message_bytes_max",
                                                          16 * 1024 * 1024),
                             connections_max=connections_max,
                             connections_per_address_max=connections_per_address_max)
    refusal = _connection_refusal(getattr(app, "registry", None))
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(
            serve_http, app, host, port, settings, shutdown_trigger=shutdown_trigger,
            turn_away=refusal))
        shown = f"[{host}]" if ":" in host else host
        log.info("rpc.listening", address=f"http://{shown}:{bound}")
        task_status.started(bound)
