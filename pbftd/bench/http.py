"""A small keep-alive HTTP/1.1 client for the bench: trio streams, h11 framing.

One ``Connection`` is one TCP connection used for one request at a time (the
closed-loop clients each own one).  h11 does all of the HTTP; this module only
moves bytes.  A connection the server closed (keep-alive timeout, an error
answered with ``Connection: close``) is reopened on the next request, and a
request that failed on a reused connection before any answer arrived is sent
once more on a fresh one (bench writes carry a request_id, so a resend is
idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

__all__ = ["Connection", "HttpError", "Reply", "split_url"]

RECEIVE_BYTES = 65536


class HttpError(Exception):
    """The server could not be reached or broke the HTTP exchange."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of an http:// URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http://host:port/ URL")
    return parts.hostname, parts.port or 80, parts.path or "/"


class Connection:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.host, self.port, self.path = split_url(url)
        self.host_header = f"{self.host}:{self.port}".encode()
        self.auth = f"Bearer {token}".encode() if token else None
        self._stream: trio.SocketStream | None = None
        self._h11: h11.Connection | None = None
        self.opened = 0  # TCP connections made over this object's life

    async def aclose(self) -> None:
        stream, self._stream, self._h11 = self._stream, None, None
        if stream is not None:
            await stream.aclose()

    async def _open(self) -> None:
        try:
            self._stream = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise HttpError("connect", f"{self.host}:{self.port}: {exc.strerror or exc}") from None
        self._h11 = h11.Connection(our_role=h11.CLIENT)
        self.opened += 1

    async def post_json(self, body: Any) -> Reply:
        data = json.dumps(body, separators=(",", ":")).encode()
        return await self.request("POST", self.path, data)

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path, b"")

    async def request(self, method: str, path: str, data: bytes) -> Reply:
        reused = self._stream is not None
        try:
            return await self._exchange(method, path, data)
        except _NoAnswer as exc:
            await self.aclose()
            if not reused:
                raise HttpError("transport", str(exc)) from None
        # the server had closed an idle keep-alive connection: one fresh try
        try:
            return await self._exchange(method, path, data)
        except _NoAnswer as exc:
            await self.aclose()
            raise HttpError("transport", str(exc)) from None

    async def _exchange(self, method: str, path: str, data: bytes) -> Reply:
        if self._stream is None:
            await self._open()
        stream, conn = self._stream, self._h11
        assert stream is not None and conn is not None
        headers = [("Host", self.host_header), ("Content-Length", str(len(data)))]
        if method == "POST":
            headers.append(("Content-Type", "application/json"))
        if self.auth is not None:
            headers.append(("Authorization", self.auth))
        answered = False
        try:
            out = conn.send(h11.Request(method=method, target=path, headers=headers))
            out += conn.send(h11.Data(data=data)) if data else b""
            out += conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            status, chunks = 0, []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    received = await stream.receive_some(RECEIVE_BYTES)
                    conn.receive_data(received)
                    continue
                if isinstance(event, h11.Response):
                    status, answered = event.status_code, True
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("connection closed mid-answer")
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                h11.RemoteProtocolError, h11.LocalProtocolError) as exc:
            await self.aclose()
            if not answered:
                raise _NoAnswer(f"{self.host}:{self.port}: {exc}") from None
            raise HttpError("transport", f"{self.host}:{self.port}: {exc}") from None
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            await self.aclose()
        else:
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                await self.aclose()
        return Reply(status, b"".join(chunks))


class _NoAnswer(Exception):
    """The exchange failed before any part of an answer arrived."""
