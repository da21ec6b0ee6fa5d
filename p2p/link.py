"""One websocket link to one peer: handshake, then a reader and a writer.

Rules this module keeps:
* Nothing but HELLO and AUTH is accepted before the peer is authenticated,
  and the whole exchange runs under the caller's deadline.
* A watchdog task declares the peer dead when no byte arrives for
  `peer_dead_after_ms` (time the reader spends waiting on our own consumer
  does not count). It wakes about once a window: a deadline around every
  message read cost about 6% of a message's CPU (trio registers and removes
  each one). Websocket pings are not enough: a stopped (SIGSTOP) process or
  a silent partition leaves TCP open and the kernel keeps ACKing, so only
  application-level traffic proves the peer is alive.
* The writer sends a PING whenever it has been idle for
  `heartbeat_interval_ms`, so a healthy idle peer is never declared dead.
  A heartbeat task tells it so (`PeerQueue.take_batch`'s `stop`), as
  retiring does, rather than a deadline around every wait for frames.
* Every peer fault (malformed envelope, oversize message, closed socket)
  ends only this link; it is logged, counted and never reaches the mesh.
* The reader hands the consumer each websocket message's frames as one
  inbox item, `(FRAMES, peer_id, frames)`: one channel operation and one
  wake-up per message, not per frame.
* The reader blocks on a full inbox, or while this peer's frames not yet
  released by the consumer exceed `inbox_bytes_per_peer_max`: backpressure
  lands on this one link, and a peer sending large frames faster than we
  handle them holds a bounded amount of our memory.
* A duplicate link is retired, not cut: each side sends GOODBYE after its
  last batch and reads until the other's GOODBYE, so frames already written
  to the losing link are still delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from p2p import wire
from p2p.config import MeshConfig
from p2p.handshake import Handshaker
from p2p.peer_queue import PeerQueue
from p2p.peer_state import PeerSlot

__all__ = ["FRAMES", "ActivityStream", "Counters", "Inbox", "Link", "PeerDead", "run_handshake"]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_DUPLICATE = 4000

NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)

# The tag of an inbox item, `(FRAMES, peer_id, frames)`. It lets an owner
# that takes all its inputs from one tagged channel have the mesh deliver
# into that channel directly (`Mesh.run(deliver_to=...)`), with no task
# between the link and the owner.
FRAMES = "frames"
Inbox = trio.MemorySendChannel[tuple[str, str, list[bytes]]]


class PeerDead(Exception):
    """Nothing arrived from the peer within peer_dead_after_ms."""


class ActivityStream(trio.abc.Stream):
    """A pass-through stream that remembers when the peer last sent bytes.

    Liveness is judged on bytes, not whole messages, so a large batch
    crawling over a slow link does not count as silence.
    """

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.last_rx = trio.current_time()

    def touch(self) -> None:
        self.last_rx = trio.current_time()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.touch()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(slots=True)
class Counters:
    """Mesh-wide counters; see `Mesh.stats` for their meaning."""

    frames_sent: int = 0
    frames_received: int = 0
    frames_dropped_queue_full: int = 0
    frames_dropped_unknown_peer: int = 0
    frames_dropped_oversize: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    handshakes_failed: int = 0
    reconnects: int = 0
    links_established: int = 0
    links_dead: int = 0
    links_duplicate_closed: int = 0
    envelopes_malformed: int = 0
    messages_oversize: int = 0


async def _receive(ws: WebSocketConnection) -> bytes:
    message = await ws.get_message()
    if type(message) is not bytes:
        raise wire.PeerProtocolError("text message on a binary link")
    return message


async def run_handshake(ws: WebSocketConnection, hs: Handshaker) -> str:
    """Exchange HELLO and AUTH; return the peer's authenticated node id.

    Raises HandshakeRejected, PeerProtocolError or ConnectionClosed; the
    caller applies the deadline and closes the socket.
    """
    await ws.send_message(wire.encode_hello(hs.hello()))
    theirs = wire.decode_hello(await _receive(ws))
    hs.check_hello(theirs)
    if hs.is_dialer:
        # The acceptor answers with its AUTH only after checking ours, so a
        # dialer never counts a link up that the acceptor refused.
        await ws.send_message(wire.encode_auth(hs.auth(theirs)))
        return hs.check_auth(theirs, wire.decode_auth(await _receive(ws)))
    peer_id = hs.check_auth(theirs, wire.decode_auth(await _receive(ws)))
    await ws.send_message(wire.encode_auth(hs.auth(theirs)))
    return peer_id


class Link:
    """An authenticated link. `close()` may be called from any task."""

    def __init__(self, ws: WebSocketConnection, stream: ActivityStream, slot: PeerSlot,
                 dialer_id: str, cfg: MeshConfig, counters: Counters) -> None:
        self.ws = ws
        self._slot = slot
        peer_id = slot.node_id
        self._stream = stream
        self.peer_id = peer_id
        self.dialer_id = dialer_id
        self._cfg = cfg
        self._counters = counters
        self._cancel_scope = trio.CancelScope()
        self.close_code = CLOSE_NORMAL
        self.close_reason: str | None = None
        self._last_tx = trio.current_time()
        self._ping_due = False
        self._retiring = False
        self._retired_at = 0.0
        self._sent_goodbye = False
        self._got_goodbye = False
        self._holding = False
        self.log = structlog.get_logger("p2p").bind(
            node_id=cfg.node_id, peer_id=peer_id, dialer_id=dialer_id)

    def close(self, reason: str, code: int = CLOSE_NORMAL) -> None:
        """Stop the link; the first reason given is the one reported."""
        if self.close_reason is None:
            self.close_reason, self.close_code = reason, code
        self._cancel_scope.cancel()

    def retire(self, reason: str) -> None:
        """Wind the link down without losing what either side already sent.

        Used for the loser of a duplicate pair: we stop taking frames from
        the peer's queue (the winning link takes over), send GOODBYE after
        any batch in flight, and keep delivering what the peer sent until
        its GOODBYE arrives. Both ends run the same rule, so both say
        GOODBYE. The drain has no fixed deadline, because time spent blocked
        on our own full inbox must not cost frames; a silent peer is caught
        by the dead-peer timer and one that keeps pinging instead of saying
        GOODBYE is cut after peer_dead_after_ms.
        """
        if self._retiring:
            return
        self._retiring = True
        self._slot.add_draining(+1)
        if self.close_reason is None:
            self.close_reason, self.close_code = reason, CLOSE_DUPLICATE
        self._retired_at = trio.current_time()
        self._slot.queue.wake_takers()  # our writer takes nothing more

    async def run(self, inbox: Inbox) -> None:
        """Move frames until the link fails or is closed; the caller then
        unregisters the link and calls `aclose` (which may wait on the peer)."""
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._write_loop, self._slot.queue)
                    nursery.start_soon(self._guard, self._read_loop, inbox)
                    nursery.start_soon(self._guard, self._watch_liveness)
                    nursery.start_soon(self._guard, self._heartbeat, self._slot.queue)
        finally:
            if self._retiring:
                self._slot.add_draining(-1)

    async def aclose(self) -> None:
        """Send a close frame if the peer is still listening; bounded."""
        with trio.move_on_after(self._cfg.close_timeout_ms / 1000) as scope:
            scope.shield = True
            await self.ws.aclose(self.close_code, (self.close_reason or "")[:120])
        if scope.cancelled_caught:
            # A stalled peer never answers the close handshake; drop TCP.
            await trio.aclose_forcefully(self._stream)

    async def _guard(self, loop: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Turn every peer fault into a closed link; never raise past here."""
        try:
            await loop(*args)
        except ConnectionClosed as exc:
            if exc.reason is not None and exc.reason.code == CLOSE_TOO_BIG:
                self._counters.messages_oversize += 1
                self.close("message over frame_bytes_max", CLOSE_TOO_BIG)
            else:
                self.close(f"connection closed: {exc.reason}")
        except wire.PeerProtocolError as exc:
            self._counters.envelopes_malformed += 1
            self.close(f"malformed envelope: {exc}", CLOSE_PROTOCOL_ERROR)
        except PeerDead:
            self._counters.links_dead += 1
            self.close("peer dead: heartbeat timeout", CLOSE_GOING_AWAY)
        except NETWORK_ERRORS as exc:
            self.close(f"network error: {exc!r}")
        finally:
            self._cancel_scope.cancel()

    async def _write_loop(self, queue: PeerQueue) -> None:
        cfg, counters = self._cfg, self._counters
        stop = self._stop_taking
        while not self._retiring:
            batch = await queue.take_batch(cfg.batch_frames_max, cfg.frame_bytes_max, stop)
            if self._retiring and not batch:
                break
            message = wire.encode_batch(batch) if batch else wire.PING
            await self.ws.send_message(message)
            # Any message serves as the heartbeat, one the heartbeat asked
            # for while this one was being sent too.
            self._ping_due = False
            self._last_tx = trio.current_time()
            counters.messages_sent += 1
            counters.bytes_sent += len(message)
            counters.frames_sent += len(batch)
        await self.ws.send_message(wire.GOODBYE)
        self._sent_goodbye = True
        if not self._got_goodbye:
            await trio.sleep_forever()  # the reader ends the link on their GOODBYE

    def _stop_taking(self) -> bool:
        return self._ping_due or self._retiring

    async def _heartbeat(self, queue: PeerQueue) -> None:
        """Have the writer send a PING once it has sent nothing for
        `heartbeat_interval_ms`; then give it an interval to do so."""
        interval_s = self._cfg.heartbeat_interval_ms / 1000
        while not self._retiring:
            due = self._last_tx + interval_s
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            self._ping_due = True
            queue.wake_takers()
            await trio.sleep(interval_s)
        # Returning would end the link (see _guard); a retired one still
        # drains until the peer's GOODBYE.
        await trio.sleep_forever()

    async def _read_loop(self, inbox: Inbox) -> None:
        cfg, counters = self._cfg, self._counters
        dead_after_s = cfg.peer_dead_after_ms / 1000
        while True:
            message = await _receive(self.ws)
            frames = wire.decode_message(message, frame_bytes_max=cfg.frame_bytes_max,
                                         batch_frames_max=cfg.batch_frames_max)
            if frames == [] and self._retiring and (
                    trio.current_time() - self._retired_at > dead_after_s):
                self.close("peer kept pinging instead of saying GOODBYE", CLOSE_DUPLICATE)
                return
            if frames is None:  # GOODBYE: nothing more will come on this link
                self._got_goodbye = True
                self.retire("peer retired the link")
                if not self._sent_goodbye:
                    await trio.sleep_forever()  # the writer ends the link after ours
                return
            counters.messages_received += 1
            counters.bytes_received += len(message)
            self._holding = True  # on our own consumer: not the peer's silence
            while frames and self._slot.draining and not self._retiring:
                await self._slot.wait_drain_change()
            if frames:
                await self._deliver(frames, inbox)
            self._holding = False
            self._stream.touch()

    async def _watch_liveness(self) -> None:
        """Declare the peer dead once no byte has arrived for
        `peer_dead_after_ms`, except while the reader waits on our own
        consumer. One task waking about once a window, rather than a
        deadline around every message read."""
        dead_after_s = self._cfg.peer_dead_after_ms / 1000
        while True:
            await trio.sleep_until(self._stream.last_rx + dead_after_s)
            if self._holding:
                self._stream.touch()
            elif trio.current_time() >= self._stream.last_rx + dead_after_s:
                raise PeerDead

    async def _deliver(self, frames: list[bytes], inbox: Inbox) -> None:
        """Count the frames against the peer's byte budget, then queue them.

        Frames never queued (the link closed while the inbox was full) are
        given back, or the peer's budget would shrink with every such close.
        """
        size = sum(map(len, frames))
        await self._slot.reserve_inbox(size, self._cfg.inbox_bytes_per_peer_max)
        queued = False
        try:
            await inbox.send((FRAMES, self.peer_id, frames))
            queued = True
            self._counters.frames_received += len(frames)
        finally:
            if not queued:
                self._slot.release_inbox(size)
