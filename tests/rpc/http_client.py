"""A minimal HTTP/1.1 client for tests: h11 does all the parsing, trio the I/O,
and every network wait is bounded with trio.fail_after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import h11
import trio

from rpc.server import serve_rpc

IO_TIMEOUT_S = 10


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    """One connection; send a request (or only its head), then read the response."""

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.conn = h11.Connection(h11.CLIENT)

    async def _send(self, event: Any) -> None:
        with trio.fail_after(IO_TIMEOUT_S):
            await self.stream.send_all(self.conn.send(event))

    async def send_head(self, method: str, target: str,
                        headers: Sequence[tuple[str, str]] = ()) -> None:
        all_headers = [("host", f"127.0.0.1:{self.port}"), *headers]
        await self._send(h11.Request(method=method, target=target, headers=all_headers))

    async def send_data(self, data: bytes) -> None:
        await self._send(h11.Data(data=data))

    async def end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def request(self, method: str, target: str, *, body: bytes = b"",
                      headers: Sequence[tuple[str, str]] = ()) -> HttpResponse:
        await self.send_head(method, target, [*headers, ("content-length", str(len(body)))])
        if body:
            await self.send_data(body)
        await self.end()
        return await self.response()

    async def response(self) -> HttpResponse:
        head: h11.Response | None = None
        body = bytearray()
        with trio.fail_after(IO_TIMEOUT_S):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert head is not None
                    headers = {k.decode(): v.decode() for k, v in head.headers}
                    return HttpResponse(head.status_code, headers, bytes(body))
                elif isinstance(event, h11.ConnectionClosed):
                    raise AssertionError("server closed without a response")

    def reuse(self) -> None:
        """Keep-alive: ready the connection for its next request."""
        self.conn.start_next_cycle()

    async def server_closed(self) -> bool:
        """True once the server has closed its side (EOF), within the timeout."""
        with trio.fail_after(IO_TIMEOUT_S):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return True
                if not data:
                    return True


@asynccontextmanager
async def connect(port: int, *, source: str | None = None) -> AsyncIterator[Client]:
    """A connection to the server; ``source`` picks the client address
    (any 127.x.y.z works on Linux loopback)."""
    with trio.fail_after(IO_TIMEOUT_S):
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    async with stream:
        yield Client(stream, port)


async def fetch(port: int, method: str, target: str, *, body: bytes = b"",
                headers: Sequence[tuple[str, str]] = ()) -> HttpResponse:
    async with connect(port) as client:
        return await client.request(method, target, body=body, headers=headers)


@asynccontextmanager
async def running(app: Any, **serve: Any) -> AsyncIterator[int]:
    """Serve `app` on a free loopback port (``serve``: more serve_rpc
    arguments); shut it down gracefully afterwards."""
    stop = trio.Event()
    with trio.fail_after(60):  # the whole test, including graceful shutdown
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_rpc, app, "127.0.0.1", 0,
                                               shutdown_trigger=stop.wait, **serve))
            try:
                yield port
            finally:
                stop.set()
