"""JSON-RPC over WebSocket at /ws: the HTTP dispatcher, one frame at a time.

Protocol: each text frame holds one JSON-RPC request or batch; the answer
(if any: notifications get none) comes back as one text frame. Frames are
handled concurrently, so answers may come back out of order: match by id.
Server pushes (events.notify) are JSON-RPC notifications on the same socket.

Authentication happens once, on the upgrade request: `Authorization: Bearer
TOKEN`, checked by the same callback as HTTP. No header means anonymous
(public methods only). A bad token is refused with HTTP 401 before the
upgrade. A `token` query parameter is refused with 400: URLs end up in logs.

Limits, all per connection unless said:
- a frame larger than `frame_bytes_max` (the HTTP body_bytes_max) closes
  the connection with 1009; a binary frame closes it with 1003;
- at most `calls_in_flight_max` frames are being handled at once; beyond
  that the connection is simply not read (TCP pushes back on the client);
- each frame is answered within request_timeout_ms, else a -32003 error;
- rate limits are those of HTTP (same buckets): a frame over the limit is
  answered with -32005 errors for its calls, and the connection stays open;
- answers and notifications wait in a bounded send queue
  (`send_queue_frames_max`). A frame that cannot be queued within
  `send_stall_ms` means the client does not read: it is disconnected with
  close code 1008 and a reason (for subscribers: the height to resubscribe
  from). If even the close frame cannot be written within `send_stall_ms`,
  the TCP connection is aborted, so a client that never reads costs one
  bounded queue for a bounded time, never unbounded buffering;
- at most `connections_max` connections per node (503 beyond).

`WsSession` is what methods that push (events.subscribe) see as
`ctx.session`; over HTTP `ctx.session` is None.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import structlog
import trio

from .errors import TIMEOUT, UNAUTHORIZED, RpcError
from .jsonrpc import Dispatcher, RpcContext, encode_response, error_response
from .ratelimit import (
    RateLimiter,
    error_responses,
    rate_key,
    rate_limited_error,
    retry_after_header,
)
from .strict_json import parse_request_body

__all__ = ["CLOSE_POLICY", "WsEndpoint", "WsLimits", "WsSession"]

log = structlog.get_logger("pbftd.rpc.ws")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
REASON_BYTES_MAX = 123  # RFC 6455 §5.5: control frame payload 125, minus the code
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class WsLimits:
    """Per-connection limits of /ws (see the module docstring)."""

    frame_bytes_max: int | None = None  # None: the app's body_bytes_max
    calls_in_flight_max: int = 32
    send_queue_frames_max: int = 256
    send_stall_ms: int = 10_000
    abort_after_ms: int | None = None  # after a close, until the TCP abort; None: send_stall_ms
    connections_max: int = 1024
    subscriptions_max: int = 16


class SessionClosed(Exception):
    """The connection is closing; what was to be sent is dropped."""


def _clip_reason(reason: str) -> str:
    raw = reason.encode("utf-8")[:REASON_BYTES_MAX]
    return raw.decode("utf-8", errors="ignore")


class WsSession:
    """One accepted connection. Methods reach it as `ctx.session`."""

    def __init__(self, endpoint: WsEndpoint, scope: Scope, receive: Receive, send: Send,
                 ctx: RpcContext, key: str) -> None:
        self.endpoint = endpoint
        self.limits = endpoint.ws
        self.peer = ctx.peer
        self.scopes = ctx.scopes
        self.authenticated = ctx.authenticated
        self.rate_key = key
        self.paced = 0  # times `spend` waited for tokens
        self.id = secrets.token_hex(6)
        # Free-form per-connection state for methods (events keep their subscriptions here).
        self.state: dict[str, Any] = {}
        # Called when the connection is dropped as too slow; returns advice for the
        # close reason (e.g. "resubscribe from_height=42"), or None.
        self.resume_hint: Callable[[], str | None] | None = None
        self._scope = scope
        self._receive = receive
        self._send = send
        self._outbox_send, self._outbox = trio.open_memory_channel[str](
            self.limits.send_queue_frames_max)
        self._slots = trio.Semaphore(self.limits.calls_in_flight_max)
        self._work_scope = trio.CancelScope()
        self._work: trio.Nursery | None = None
        self._outer: trio.Nursery | None = None
        self._closing: tuple[int, str] | None = None
        self._peer_gone = trio.Event()
        self._finished = trio.Event()
        self.closing_started = trio.Event()  # close() was called
        self.closed = trio.Event()  # set once the connection is over and forgotten
        self.close_code: int | None = None
        self.close_reason: str | None = None

    # -- what methods use ------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing is not None or self._peer_gone.is_set()

    def queued_frames(self) -> int:
        return self._outbox.statistics().current_buffer_used

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Queue a JSON-RPC notification; waits for room at most send_stall_ms.

        A client that leaves it waiting longer is disconnected as too slow,
        and this raises (trio.Cancelled, since the connection's tasks end).
        """
        await self._enqueue(encode_response(
            {"jsonrpc": "2.0", "method": method, "params": params}).decode("utf-8"))

    async def spend(self, tokens: int) -> None:
        """Charge work done for this connection outside any call (a
        subscription's deliveries) to its caller's rate bucket, waiting while
        the bucket is short: the work is paced, never refused."""
        limiter = self.endpoint.rate_limiter
        if limiter is None or tokens <= 0:
            return
        while (wait := limiter.pace(self.rate_key, tokens)) is not None:
            self.paced += 1
            await trio.sleep(wait)

    def start_task(self, fn: Callable[[], Awaitable[None]], *,
                   after: trio.Event | None = None) -> trio.CancelScope:
        """Run `fn` for the connection's lifetime (cancel the returned scope to
        stop it early). With `after`, it starts only once that event is set
        (the frame that created it has been answered)."""
        cancel = trio.CancelScope()
        if self._work is None or self.closing:
            cancel.cancel()
            return cancel

        async def run() -> None:
            with cancel:
                if after is not None:
                    await after.wait()
                try:
                    await fn()
                except SessionClosed:
                    return
                except Exception:
                    incident = secrets.token_hex(8)
                    log.exception("rpc.ws_task_failed", incident=incident, peer=self.peer)
                    self.close(CLOSE_INTERNAL, f"internal error, incident {incident}")
        self._work.start_soon(run)
        return cancel

    def close(self, code: int, reason: str) -> None:
        """Close the connection with `code` and `reason` (idempotent)."""
        if self.closing:
            return
        self._closing = (code, _clip_reason(reason))
        self.close_code, self.close_reason = self._closing
        self.closing_started.set()
        self._work_scope.cancel()
        if self._outer is not None:
            self._outer.start_soon(self._abort_if_stuck)

    # -- the connection ----------------------------------------------------

    async def run(self) -> None:
        await self._send({"type": "websocket.accept"})
        try:
            async with trio.open_nursery() as outer:
                self._outer = outer
                outer.start_soon(self._reader)
                with self._work_scope:
                    async with trio.open_nursery() as work:
                        self._work = work
                        work.start_soon(self._writer)
                        await self._peer_gone.wait()
                self._work = None
                if not self._peer_gone.is_set():
                    code, reason = self._closing or (CLOSE_NORMAL, "")
                    self.close_code, self.close_reason = code, reason
                    await self._send({"type": "websocket.close", "code": code,
                                      "reason": reason})
                self._finished.set()
                outer.cancel_scope.cancel()
        finally:
            self._outbox_send.close()

    async def _reader(self) -> None:
        frame_max = self.endpoint.frame_bytes_max
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._peer_gone.set()
                self._work_scope.cancel()
                return
            if kind != "websocket.receive" or self.closing:
                continue  # after close: drain, so the server can see the peer's close
            if message.get("bytes") is not None:
                self.close(CLOSE_UNSUPPORTED, "binary frames are not accepted; send JSON text")
                continue
            text = message.get("text") or ""
            body = text.encode("utf-8")
            if len(body) > frame_max:
                self.close(CLOSE_TOO_BIG, f"frame larger than {frame_max} bytes")
                continue
            await self._slots.acquire()
            if self.closing or self._work is None:
                self._slots.release()
                continue
            self._work.start_soon(self._frame, body)

    async def _frame(self, body: bytes) -> None:
        answered = trio.Event()
        try:
            ctx = RpcContext(self.scopes, self.authenticated, self.peer,
                             session=_FrameSession(self, answered))
            value = await self.endpoint.answer(body, ctx, self.rate_key)
            if value is not None:
                await self._enqueue(value)
            answered.set()
        except SessionClosed:
            pass
        finally:
            self._slots.release()

    async def _enqueue(self, frame: str) -> None:
        if self.closing:
            raise SessionClosed
        with trio.move_on_after(self.limits.send_stall_ms / 1000):
            await self._outbox_send.send(frame)
            return
        self.endpoint.stats["slow_consumers_dropped"] += 1
        hint = self.resume_hint() if self.resume_hint is not None else None
        reason = "too slow: not reading" + (f"; {hint}" if hint else "")
        log.info("rpc.ws_slow_consumer", peer=self.peer, queued=self.queued_frames())
        self.close(CLOSE_POLICY, reason)
        await trio.lowlevel.checkpoint()  # cancelled: the work scope is
        raise SessionClosed

    async def _writer(self) -> None:
        async for frame in self._outbox:
            await self._send({"type": "websocket.send", "text": frame})
            self.endpoint.stats["frames_sent"] += 1

    async def _abort_if_stuck(self) -> None:
        """A client that never reads can hold a send (and the close after it)
        forever; past the stall limit, close the TCP connection under it."""
        grace_ms = self.limits.abort_after_ms
        with trio.move_on_after((self.limits.send_stall_ms if grace_ms is None else grace_ms)
                                / 1000):
            await self._finished.wait()
            return
        abort = _transport_aborter(self._send)
        self.endpoint.stats["connections_aborted"] += 1
        log.info("rpc.ws_aborted", peer=self.peer, supported=abort is not None)
        if abort is not None:
            await abort()


class _FrameSession:
    """ctx.session for one frame: the connection, plus "after this answer"."""

    def __init__(self, conn: WsSession, answered: trio.Event) -> None:
        self.connection = conn
        self.answered = answered

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)

    def start_after_answer(self, fn: Callable[[], Awaitable[None]]) -> trio.CancelScope:
        """Start `fn` once this frame's answer is queued, so a subscriber sees
        its subscription id before the first notification."""
        return self.connection.start_task(fn, after=self.answered)


def _transport_aborter(send: Send) -> Callable[[], Awaitable[None]] | None:
    """The server's way to drop the TCP connection under an ASGI `send`, if any.

    ASGI offers no way to drop a connection whose socket will not drain;
    rpc/http11.py's websocket `send` is a bound method whose owner has
    `abort_transport`.  None for a server without it.
    """
    abort = getattr(getattr(send, "__self__", None), "abort_transport", None)
    return abort if callable(abort) else None


class WsEndpoint:
    """The /ws route of the RPC app."""

    def __init__(self, dispatcher: Dispatcher, *, auth: Callable[[str], frozenset[str] | None],
                 ws: WsLimits, body_bytes_max: int, request_timeout_ms: int, depth_max: int,
                 string_chars_max: int, rate_limiter: RateLimiter | None) -> None:
        self.dispatcher = dispatcher
        self.auth = auth
        self.ws = ws
        self.frame_bytes_max = ws.frame_bytes_max or body_bytes_max
        self.request_timeout_ms = request_timeout_ms
        self.depth_max = depth_max
        self.string_chars_max = string_chars_max
        self.rate_limiter = rate_limiter
        self.sessions: set[WsSession] = set()
        self.stats: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(bytes(name).lower(), []).append(bytes(value))
        client = scope.get("client")
        peer = f"{client[0]}:{client[1]}" if client else None
        if "token" in parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1")):
            self.stats["refused_token_in_url"] += 1
            await _refuse(scope, send, 400, RpcError(
                -32600, data={"reason": "send the token in an Authorization: Bearer header, "
                                        "never in the URL"}))
            return
        values = headers.get(b"authorization", [])
        token: str | None = None
        if values:
            match = _BEARER.fullmatch(values[0].decode("latin-1")) if len(values) == 1 else None
            scopes = self.auth(match.group(1)) if match else None
            if match is None or scopes is None:
                log.info("rpc.auth_refused", peer=peer, transport="ws")
                self.stats["refused_auth"] += 1
                await _refuse(scope, send, 401, RpcError(
                    UNAUTHORIZED, "unauthorized", {"reason": "unknown or malformed bearer token"}))
                return
            token = match.group(1)
            ctx = RpcContext(frozenset(scopes), authenticated=True, peer=peer)
        else:
            ctx = RpcContext(frozenset(), authenticated=False, peer=peer)
        key = rate_key(token, client)
        wait = None if self.rate_limiter is None else self.rate_limiter.take(key)
        if wait is not None:  # opening a connection costs a call
            self.stats["refused_rate"] += 1
            await _refuse(scope, send, 429, rate_limited_error(wait),
                          [(b"retry-after", retry_after_header(wait))])
            return
        if len(self.sessions) >= self.ws.connections_max:
            self.stats["refused_full"] += 1
            await _refuse(scope, send, 503, RpcError(
                -32000, "server busy", {"connections_max": self.ws.connections_max}))
            return
        session = WsSession(self, scope, receive, send, ctx, key)
        self.sessions.add(session)
        self.stats["accepted"] += 1
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            session.closed.set()

    async def answer(self, body: bytes, ctx: RpcContext, key: str) -> str | None:
        """One frame in, its answer frame out (None: nothing to send)."""
        try:
            request = parse_request_body(body, depth_max=self.depth_max,
                                         string_chars_max=self.string_chars_max,
                                         batch_len_max=self.dispatcher.batch_len_max)
        except RpcError:  # let the dispatcher answer (and count) the parse error
            raw = await self.dispatcher.handle_body(body, ctx, depth_max=self.depth_max,
                                                    string_chars_max=self.string_chars_max)
            return None if raw is None else raw.decode("utf-8")
        value: Any
        wait = None if self.rate_limiter is None else \
            self.rate_limiter.take(key, self.dispatcher.cost(request, ctx))
        if wait is not None:
            self.stats["rate_limited"] += 1
            value = error_responses(request, rate_limited_error(wait))
        else:
            with trio.move_on_after(self.request_timeout_ms / 1000) as timer:
                value = await self.dispatcher.handle(request, ctx)
            if timer.cancelled_caught:
                value = error_responses(request, RpcError(
                    TIMEOUT, "timeout", {"request_timeout_ms": self.request_timeout_ms}))
        return None if value is None else encode_response(value).decode("utf-8")


async def _refuse(scope: Scope, send: Send, status: int, error: RpcError,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Refuse the upgrade with an HTTP status and a JSON-RPC error body, or
    (a server without the websocket.http.response extension) a plain 403."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": CLOSE_POLICY})
        return
    body = encode_response(error_response(None, error))
    await send({"type": "websocket.http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *(headers or [])]})
    await send({"type": "websocket.http.response.body", "body": body})

