"""A lean HTTP/1.1 server for the RPC app: h11 and wsproto on trio streams.

Why it exists: issue 6's profile of single ``evidence.attest`` calls put
hypercorn's ASGI layer at about a third of a node's CPU.  Per request it
started a task, passed the body through a memory channel, restarted an
idle-timeout task, and wrote the head and the body with separate syscalls.
Here one task owns a connection: it parses with h11, runs the ASGI app in
that same task, reads the body only when the app asks for it, and writes
the whole response with one ``send_all``.  The app (``rpc/server.py``) is
the unchanged ASGI 3 callable, so every check it makes (auth, 405, 408,
413, 415, 429) stays in one place; the server only speaks HTTP.

Rules this module keeps (they are the hypercorn settings it replaces):

* A request line plus headers larger than ``head_bytes_max`` is refused
  (431); any other malformed HTTP gets 400 and the connection closes.  The
  client never sees a traceback.
* A request head (line and headers) must be whole within
  ``keep_alive_timeout_s`` of the connection opening or of the previous
  answer, or the connection is closed; a socket silent for
  ``read_timeout_s`` while a request is in progress is dropped (slow bodies
  get the app's 408 first), and so is one that does not take its answer
  within that time.
* HTTP/1.0, ``Connection: close`` and a response sent before its request's
  body was read end the connection; pipelined requests are answered in
  order.
* ``Upgrade: websocket`` requests become ASGI ``websocket`` scopes through
  wsproto, with the ``websocket.http.response`` extension (refusals carry
  a status and a body) and messages of at most ``ws_message_bytes_max``.
* A connection closed while the client may still be sending (a refused
  head, a body not read) is closed lingering: our side is shut, and what
  the client still sends is read and dropped for at most
  ``LINGER_S`` / ``LINGER_BYTES``.  Closing with unread bytes would make
  the kernel send a reset, which can destroy the error answer before the
  client reads it (RFC 9112 section 9.6).
* At most ``connections_max`` connections are served at once, and at most
  ``connections_per_address_max`` from one client address; a connection
  over either cap is answered 503 with ``Retry-After`` and closed at once.
  Why: every connection holds a file descriptor and a task; without a cap
  one client opening sockets (fault scenario 16b) used up the process's
  file limit, and with it every other agency's access.  The per-address cap
  keeps one client from filling the global one.
* Shutdown stops accepting, closes idle connections, gives requests in
  progress ``graceful_timeout_s``, then cancels what is left.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import unquote

import h11
import structlog
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsLocalError
from wsproto.utilities import RemoteProtocolError as WsRemoteError

__all__ = ["CONNECTIONS_MAX", "CONNECTIONS_PER_ADDRESS_MAX", "HttpSettings", "refusal_message",
           "serve_http"]

log = structlog.get_logger("pbftd.rpc.http")

App = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]

_RECEIVE_BYTES = 64 * 1024
_NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
LINGER_S = 1.0  # a lingering close reads and drops for this long at most
LINGER_BYTES = 1024 * 1024  # ... and at most this much
# Connection caps when the caller sets none (config/settings.py has the node's).
CONNECTIONS_MAX = 4096
CONNECTIONS_PER_ADDRESS_MAX = 256
CLOSE_ABNORMAL = 1006
CLOSE_TOO_BIG = 1009


@dataclass(frozen=True, slots=True)
class HttpSettings:
    read_timeout_s: float = 65.0
    keep_alive_timeout_s: float = 5.0
    head_bytes_max: int = 16 * 1024
    graceful_timeout_s: float = 3.0
    ws_message_bytes_max: int = 16 * 1024 * 1024
    connections_max: int = CONNECTIONS_MAX
    connections_per_address_max: int = CONNECTIONS_PER_ADDRESS_MAX


async def serve_http(app: App, host: str, port: int, settings: HttpSettings, *,
                     shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                     turn_away: Callable[[str, int], bytes] | None = None,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled or ``shutdown_trigger`` returns; reports the bound port.

    ``turn_away(cap, limit)`` gives the body of the 503 for a connection
    over a cap (``cap`` is ``"total"`` or ``"address"``); the caller also
    counts it there.  Without it the body is a plain JSON object."""
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    bound = listeners[0].socket.getsockname()[1]
    server = _Server(app, settings, turn_away or _plain_refusal)
    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:
            accepting.start_soon(partial(trio.serve_listeners, server.handle, listeners,
                                         handler_nursery=connections))
            task_status.started(bound)
            if shutdown_trigger is None:
                await trio.sleep_forever()
            await shutdown_trigger()
            accepting.cancel_scope.cancel()
        server.closing = True
        for conn in list(server.connections):
            conn.close_if_idle()
        if server.connections:
            with trio.move_on_after(settings.graceful_timeout_s):
                await server.drained.wait()
        connections.cancel_scope.cancel()


class _Server:
    def __init__(self, app: App, settings: HttpSettings,
                 turn_away: Callable[[str, int], bytes]) -> None:
        self.app = app
        self.settings = settings
        self.turn_away = turn_away
        self.closing = False
        self.connections: set[_Connection] = set()
        self.per_address: Counter[Any] = Counter()
        self.drained = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = _Connection(self, stream)
        address = conn.client[0] if conn.client else None
        cap = self._cap_reached(address)
        if cap is not None:
            limit = (self.settings.connections_max if cap == "total"
                     else self.settings.connections_per_address_max)
            await _turn_away(stream, self.turn_away(cap, limit))
            return
        self.connections.add(conn)
        self.per_address[address] += 1
        try:
            await conn.run()
        except Exception:  # our bug on one connection must not stop the server
            log.exception("rpc.http_connection_failed", peer=conn.client)
        finally:
            self.connections.discard(conn)
            self.per_address[address] -= 1
            if not self.per_address[address]:
                del self.per_address[address]
            await trio.aclose_forcefully(stream)
            if self.closing and not self.connections:
                self.drained.set()

    def _cap_reached(self, address: Any) -> str | None:
        if len(self.connections) >= self.settings.connections_max:
            return "total"
        if self.per_address[address] >= self.settings.connections_per_address_max:
            return "address"
        return None


def _plain_refusal(cap: str, limit: int) -> bytes:
    return json.dumps({"error": refusal_message(cap, limit)}).encode()


def refusal_message(cap: str, limit: int) -> str:
    """What a client over a connection cap is told."""
    what = "connections" if cap == "total" else "connections from your address"
    return f"too many {what} (at most {limit}); retry later"


async def _turn_away(stream: trio.SocketStream, body: bytes) -> None:
    """Answer 503 and close without reading: the connection is over a cap.

    Not a lingering close: a client opening sockets in a loop must not make
    us hold each one for ``LINGER_S``.  A client that had already sent a
    request may see a reset instead of the answer; it retries either way."""
    head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body))
    with trio.move_on_after(1.0):
        with contextlib.suppress(*_NETWORK_ERRORS):
            await stream.send_all(head + body)
    await trio.aclose_forcefully(stream)


def _addresses(stream: trio.SocketStream) -> tuple[Any, Any]:
    try:
        return stream.socket.getpeername()[:2], stream.socket.getsockname()[:2]
    except OSError:
        return None, None


class _Connection:
    """One TCP connection: HTTP/1.1 requests in turn, or one websocket."""

    def __init__(self, server: _Server, stream: trio.SocketStream) -> None:
        self.server = server
        self.settings = server.settings
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER,
                                  max_incomplete_event_size=server.settings.head_bytes_max)
        self.client, self.server_addr = _addresses(stream)
        self.idle_scope: trio.CancelScope | None = None
        self.response: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.protocol_error: h11.RemoteProtocolError | None = None
        self.lookahead: h11.Event | None = None  # a body event read ahead (_receive)

    def close_if_idle(self) -> None:
        if self.idle_scope is not None:
            self.idle_scope.cancel()

    async def run(self) -> None:
        try:
            await self._serve()
        except h11.RemoteProtocolError as exc:
            await self._refuse_malformed(exc)
        except _NETWORK_ERRORS:
            return
        if self.h11.their_state in (h11.SEND_BODY, h11.ERROR):
            await self._linger()  # the client may still be sending

    async def _serve(self) -> None:
        while not self.server.closing:
            event = await self._next_request()
            if not isinstance(event, h11.Request):
                return
            if _is_websocket(event):
                await _WebSocket(self, event).run()
                return
            await self._http(event)
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()

    async def _linger(self) -> None:
        """Shut our side, then read and drop what the client still sends,
        within ``LINGER_S`` and ``LINGER_BYTES``, so the close is not a reset
        that loses the answer we just sent."""
        try:
            await self.stream.send_eof()
            dropped = 0
            with trio.move_on_after(LINGER_S):
                while dropped < LINGER_BYTES:
                    chunk = await self.stream.receive_some(_RECEIVE_BYTES)
                    if not chunk:
                        return
                    dropped += len(chunk)
        except _NETWORK_ERRORS:
            pass

    async def _next_request(self) -> h11.Event | None:
        """The next request head, whole within the keep-alive timeout: a client
        trickling its headers (slowloris) holds a connection for that long at
        most, as under hypercorn (tests/faults/test_rpc_hostile_load.py)."""
        with trio.CancelScope() as self.idle_scope:
            self.idle_scope.deadline = trio.current_time() + self.settings.keep_alive_timeout_s
            event = self.h11.next_event()
            while event is h11.NEED_DATA:
                data = await self.stream.receive_some(_RECEIVE_BYTES)
                self.h11.receive_data(data)
                event = self.h11.next_event()
            self.idle_scope = None
            return event
        self.idle_scope = None
        return None  # idle too long, or the server is closing

    async def _next_body_event(self) -> h11.Event | None:
        """The next body event; None when the socket went silent or closed."""
        event = self.h11.next_event()
        while event is h11.NEED_DATA:
            with trio.move_on_after(self.settings.read_timeout_s):
                data = await self.stream.receive_some(_RECEIVE_BYTES)
                self.h11.receive_data(data)
                event = self.h11.next_event()
                continue
            return None
        return event

    async def _http(self, request: h11.Request) -> None:
        self.response, self.lookahead = None, None
        scope = self._scope("http", request)
        await self.server.app(scope, self._receive, self._send)
        if self.protocol_error is not None:
            raise self.protocol_error
        # A bodiless request (GET) ends with an EndOfMessage already buffered:
        # take it, so the connection can be kept alive without reading more.
        while self.h11.their_state is h11.SEND_BODY:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break

    def _scope(self, kind: str, request: h11.Request) -> dict[str, Any]:
        raw_path, _, query = request.target.partition(b"?")
        return {
            "type": kind, "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http" if kind == "http" else "ws",
            "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path,
            "query_string": query, "root_path": "",
            "headers": list(request.headers), "client": self.client,
            "server": self.server_addr, "extensions": {},
        }

    async def _receive(self) -> dict[str, Any]:
        if self.h11.their_state is not h11.SEND_BODY:
            # ASGI: after the body, ``receive`` waits for a disconnect; reading
            # the socket here would eat a pipelined request, so it just waits
            # (the app in this package never asks).
            await trio.sleep_forever()
        if self.h11.they_are_waiting_for_100_continue:
            await self.stream.send_all(self.h11.send(h11.InformationalResponse(
                status_code=100, headers=[])))
        try:
            event, self.lookahead = self.lookahead or await self._next_body_event(), None
            if isinstance(event, h11.Data):
                # Look one event ahead without I/O, so a small body is one
                # message with more_body False; a further Data is kept.
                after = self.h11.next_event()
                if not isinstance(after, h11.EndOfMessage) and after is not h11.NEED_DATA:
                    self.lookahead = after
                return {"type": "http.request", "body": bytes(event.data),
                        "more_body": not isinstance(after, h11.EndOfMessage)}
        except h11.RemoteProtocolError as exc:
            self.protocol_error = exc  # answered with 400 once the app is done
            return {"type": "http.disconnect"}
        except _NETWORK_ERRORS:
            return {"type": "http.disconnect"}
        if isinstance(event, h11.EndOfMessage):
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.response = (message["status"], list(message.get("headers", [])))
            return
        if kind != "http.response.body" or self.h11.our_state not in (h11.SEND_RESPONSE,
                                                                        h11.SEND_BODY):
            return
        data = bytearray()
        if self.response is not None:
            status, headers = self.response
            self.response = None
            data += self.h11.send(h11.Response(status_code=status, headers=headers))
        body = message.get("body", b"")
        if body:
            data += self.h11.send(h11.Data(data=body))
        if not message.get("more_body", False):
            data += self.h11.send(h11.EndOfMessage())
        with trio.move_on_after(self.settings.read_timeout_s):
            await self.stream.send_all(data)
            return
        # A client that does not read its answer must not hold a task forever.
        raise trio.ClosedResourceError("response not read within the read timeout")

    async def _refuse_malformed(self, exc: h11.RemoteProtocolError) -> None:
        """400 (431 for an oversized head) and close; never a traceback."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = 431 if exc.error_status_hint == 431 else 400
        try:
            data = self.h11.send(h11.Response(status_code=status, headers=[
                (b"content-length", b"0"), (b"connection", b"close")]))
            data += self.h11.send(h11.EndOfMessage())
            await self.stream.send_all(data)
        except (h11.LocalProtocolError, *_NETWORK_ERRORS):
            pass


def _is_websocket(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return True
    return False


class _WebSocket:
    """One websocket connection presented to the app as an ASGI scope."""

    def __init__(self, conn: _Connection, request: h11.Request) -> None:
        self.conn = conn
        self.stream = conn.stream
        self.request = request
        self.ws = WSConnection(ConnectionType.SERVER)
        self.send_lock = trio.Lock()
        self.accepted = False
        self.closed = False
        self.connect_sent = False
        self.response: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.parts: list[str | bytes] = []
        self.size = 0

    async def run(self) -> None:
        scope = self.conn._scope("websocket", self.request)
        scope["subprotocols"] = []
        scope["extensions"] = {"websocket.http.response": {}}
        try:
            self.ws.initiate_upgrade_connection(list(self.request.headers), self.request.target)
        except (WsRemoteError, WsLocalError):
            await self.conn._refuse_malformed(h11.RemoteProtocolError("bad upgrade", 400))
            return
        list(self.ws.events())  # the handshake's Request event
        leftover, _closed = self.conn.h11.trailing_data
        if leftover:
            self.ws.receive_data(bytes(leftover))
        await self.conn.server.app(scope, self.receive, self.send)
        if not self.accepted and not self.closed:
            await self._write(self.ws.send(RejectConnection(status_code=500)))

    async def abort_transport(self) -> None:
        """Drop the TCP connection under a send that does not drain (rpc/ws.py)."""
        await trio.aclose_forcefully(self.stream)

    async def _write(self, data: bytes) -> None:
        """Whole frames only: a send cut by cancellation would leave half a
        frame on the wire and the peer would read garbage.  A send that
        never drains is ended by ``abort_transport`` (rpc/ws.py's stall limit)."""
        async with self.send_lock:
            with trio.CancelScope(shield=True):
                await self.stream.send_all(data)

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.closed:
            return
        try:
            if kind == "websocket.accept":
                self.accepted = True
                await self._write(self.ws.send(AcceptConnection(
                    subprotocol=message.get("subprotocol"),
                    extra_headers=list(message.get("headers", [])))))
            elif kind == "websocket.send":
                data = message.get("bytes")
                out = self.ws.send(Message(data=data) if data is not None
                                   else TextMessage(data=message.get("text") or ""))
                await self._write(out)
            elif kind == "websocket.close":
                self.closed = True
                if self.accepted:
                    await self._write(self.ws.send(CloseConnection(
                        code=message.get("code", 1000), reason=message.get("reason"))))
                else:
                    await self._write(self.ws.send(RejectConnection(status_code=403)))
            elif kind == "websocket.http.response.start" and not self.accepted:
                self.response = (message["status"], list(message.get("headers", [])))
            elif kind == "websocket.http.response.body" and self.response is not None:
                status, headers = self.response
                self.response = None
                more = message.get("more_body", False)
                out = self.ws.send(RejectConnection(status_code=status, headers=headers,
                                                    has_body=True))
                out += self.ws.send(RejectData(data=message.get("body", b""),
                                               body_finished=not more))
                self.closed = not more
                await self._write(out)
        except (WsLocalError, *_NETWORK_ERRORS):
            self.closed = True  # the app learns of it from ``receive``

    async def receive(self) -> dict[str, Any]:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            for event in self.ws.events():
                message = await self._on_event(event)
                if message is not None:
                    return message
            data = b""
            with trio.move_on_after(self.conn.settings.read_timeout_s):
                try:
                    data = await self.stream.receive_some(_RECEIVE_BYTES)
                except _NETWORK_ERRORS:
                    data = b""
            if not data:
                self.closed = True
                return {"type": "websocket.disconnect", "code": CLOSE_ABNORMAL}
            try:
                self.ws.receive_data(data)
            except WsRemoteError:
                self.closed = True
                return {"type": "websocket.disconnect", "code": CLOSE_ABNORMAL}

    async def _on_event(self, event: Any) -> dict[str, Any] | None:
        if isinstance(event, (TextMessage, BytesMessage)):
            self.parts.append(event.data)
            self.size += len(event.data)
            if self.size > self.conn.settings.ws_message_bytes_max:
                await self._close_quietly(CLOSE_TOO_BIG, "message too big")
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG}
            if not event.message_finished:
                return None
            parts, self.parts, self.size = self.parts, [], 0
            if isinstance(event, TextMessage):
                return {"type": "websocket.receive", "text": "".join(parts)}  # type: ignore[arg-type]
            return {"type": "websocket.receive", "bytes": b"".join(parts)}  # type: ignore[arg-type]
        if isinstance(event, Ping):
            await self._write_quietly(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if not self.closed:
                self.closed = True
                await self._write_quietly(self.ws.send(event.response()))
            return {"type": "websocket.disconnect", "code": event.code}
        return None

    async def _close_quietly(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self._write_quietly(self.ws.send(CloseConnection(code=code, reason=reason)))

    async def _write_quietly(self, data: bytes) -> None:
        with contextlib.suppress(*_NETWORK_ERRORS):
            await self._write(data)
