"""The mesh: one authenticated link per peer, fed from per-peer queues.

Theory of operation.
* Every node listens and also dials every validator in `peers`; observers in
  `extra_known` may connect in but are never dialed. A dial loop waits while
  the peer is connected by any link and redials with jittered backoff when it
  is not.
* A link exists for the mesh only after the handshake proved the peer's key
  (see `p2p.handshake`). Only then can it read or write frames.
* Two links to one peer arise when both nodes dial at once. Exactly one is
  kept, by a rule both ends compute alike: the link dialed by the node with
  the smaller node id wins; between two links from the same dialer the newer
  wins, since a dialer holds one dial at a time and the older one must be
  stale. The loser is retired: both ends send GOODBYE after their last
  batch and read until the other's, then close with code 4000. While a
  retired link drains, the active link holds its deliveries, so frames a
  peer sent before switching links reach the inbox first. Order is still
  only guaranteed per link: if the two ends first adopted different links,
  a few frames around the swap can be reordered (PBFT tolerates that).
* Frames wait in the peer's bounded queue (`p2p.peer_queue`), not in the
  link, so a link swap loses at most the batch in flight.
* `send` and `broadcast` are synchronous and never block; the caller learns
  about drops from the return value and `stats`.
* Frames are delivered a websocket message at a time: `inbox` yields
  `(FRAMES, peer_id, frames)`, or the owner passes its own channel to
  `run(deliver_to=...)` and takes the mesh's items there among its other
  inputs, so no task stands between a link and the owner.
* What a peer sends us is bounded in messages (`inbox_messages_max`, all
  peers, when `inbox` is used; the owner's channel bounds them otherwise)
  and in bytes per peer (`inbox_bytes_per_peer_max`): a frame counts from
  its link's reader until the consumer calls `release`, so one peer sending
  large frames faster than we handle them stalls only its own link.
"""

from __future__ import annotations

import random as random_module
from functools import partial

import structlog
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from p2p import wire
from p2p.backoff import Backoff
from p2p.config import MeshConfig, PeerInfo
from p2p.handshake import Handshaker, HandshakeRejected
from p2p.link import (
    CLOSE_POLICY,
    FRAMES,
    NETWORK_ERRORS,
    ActivityStream,
    Counters,
    Inbox,
    Link,
    run_handshake,
)
from p2p.peer_queue import PeerQueue
from p2p.peer_state import PeerSlot, keep_new_link
from p2p.tls import accept_tls, dial_tls, make_tls

__all__ = ["FRAMES", "WS_PATH", "Mesh"]

WS_PATH = "/pbftd-p2p/v1"
# Messages buffered inside trio-websocket per link; each may be a full batch.
_WS_QUEUE_MESSAGES = 2
# trio-websocket reads 4 KiB at a time by default: too slow for 4 MiB batches.
_RECEIVE_BUFFER_BYTES = 64 * 1024
_HANDSHAKE_FAILURES = (HandshakeRejected, wire.PeerProtocolError, trio.TooSlowError)
_CONNECTION_FAILURES = (*NETWORK_ERRORS, ConnectionClosed, HandshakeError)


class Mesh:
    """Authenticated frame transport between validators (see module doc)."""

    def __init__(self, cfg: MeshConfig, *, random: random_module.Random | None = None) -> None:
        self._cfg = cfg
        self._rng = random if random is not None else random_module.Random()
        self._log = structlog.get_logger("p2p").bind(node_id=cfg.node_id)
        self._known = cfg.known_keys()
        self._peers = {
            node_id: PeerSlot(node_id, PeerQueue(cfg.send_queue_frames_max))
            for node_id in self._known
        }
        self._counters = Counters()
        self._ws_bytes_max = wire.envelope_bytes_max(cfg.frame_bytes_max, cfg.batch_frames_max)
        self._handshakes_pending = 0
        self._tls = make_tls(cfg.node_id, cfg.tls_cert_file, cfg.tls_key_file) if cfg.tls else None
        self._sink: Inbox
        self._sink, self.inbox = trio.open_memory_channel[tuple[str, str, list[bytes]]](
            cfg.inbox_messages_max)
        self.listen_port: int | None = None
        if not cfg.tls:
            self._log.warning("p2p_plaintext_links",
                              detail="links are UNENCRYPTED and can be hijacked on path")

    # -- public API -------------------------------------------------------

    async def run(self, *, deliver_to: Inbox | None = None,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and dial until cancelled; reports the bound port once listening.

        Received frames go to `inbox`, or to `deliver_to` if given (items
        `(FRAMES, peer_id, frames)`; see the module doc). On exit that
        channel is closed, so its consumer sees EndOfChannel (for a clone,
        once every clone is closed)."""
        cfg = self._cfg
        if deliver_to is not None:
            self._sink = deliver_to
        async with self._sink:
            listeners = await trio.open_tcp_listeners(cfg.listen_port, host=cfg.listen_host)
            self.listen_port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(
                    trio.serve_listeners, self._on_accept, listeners, handler_nursery=nursery))
                for info in cfg.peers:
                    nursery.start_soon(self._dial_loop, info)
                self._log.info("p2p_listening", host=cfg.listen_host, port=self.listen_port,
                               tls=cfg.tls)
                task_status.started(self.listen_port)

    def send(self, peer_id: str, frame: bytes) -> bool:
        """Queue `frame` for `peer_id`; False (and counted) when it was dropped."""
        if type(frame) is not bytes:
            raise TypeError("frame must be bytes")
        peer = self._peers.get(peer_id)
        if peer is None:
            self._counters.frames_dropped_unknown_peer += 1
            return False
        if len(frame) > self._cfg.frame_bytes_max:
            self._counters.frames_dropped_oversize += 1
            self._log.warning("p2p_frame_oversize", peer_id=peer_id, frame_bytes=len(frame))
            return False
        if peer.queue.offer(frame):
            return True
        self._counters.frames_dropped_queue_full += 1
        peer.drops += 1
        if peer.drops & (peer.drops - 1) == 0:  # log at 1, 2, 4, 8, ... drops
            self._log.warning("p2p_queue_full", peer_id=peer_id, drops=peer.drops)
        return False

    def broadcast(self, frame: bytes) -> None:
        """Queue `frame` for every validator in `peers` (observers excluded)."""
        for info in self._cfg.peers:
            self.send(info.node_id, frame)

    def release(self, peer_id: str, size: int) -> None:
        """Say that `size` bytes of `peer_id`'s delivered frames are handled.

        Every consumer must call this for the frames it is done with (their
        total ``len``, per item or per frame): a peer whose unreleased bytes reach
        `inbox_bytes_per_peer_max` is not read from until some are released.
        Releasing when the frame is handled, not when it leaves the inbox,
        lets a consumer that queues frames further keep them in the bound.
        """
        self._peers[peer_id].release_inbox(size)

    def connected_peers(self) -> set[str]:
        return {node_id for node_id, peer in self._peers.items() if peer.link is not None}

    async def wait_connected(self, peer_id: str) -> None:
        await self._peers[peer_id].wait_until(connected=True)

    async def wait_disconnected(self, peer_id: str) -> None:
        await self._peers[peer_id].wait_until(connected=False)

    @property
    def stats(self) -> dict[str, object]:
        """Counter snapshot. bytes_* count websocket message payloads;
        messages_* count websocket messages (batches and PINGs); reconnects
        counts dial attempts after a peer's first one; links maps each
        connected peer to the node that dialed its link."""
        snapshot: dict[str, object] = {
            name: getattr(self._counters, name) for name in Counters.__slots__
        }
        snapshot["queue_depth"] = {nid: len(p.queue) for nid, p in self._peers.items()}
        snapshot["inbox_bytes"] = {nid: p.inbox_bytes for nid, p in self._peers.items()}
        snapshot["links"] = {nid: p.link.dialer_id for nid, p in self._peers.items() if p.link}
        return snapshot

    # -- connections ------------------------------------------------------

    async def _dial_loop(self, info: PeerInfo) -> None:
        peer = self._peers[info.node_id]
        backoff = Backoff(self._cfg.reconnect_backoff_min_ms,
                          self._cfg.reconnect_backoff_max_ms, self._rng)
        attempts = 0
        while True:
            await peer.wait_until(connected=False)
            if attempts:
                self._counters.reconnects += 1
            attempts += 1
            if await self._dial_once(info):
                backoff.reset()
            await trio.sleep(backoff.next_delay_ms() / 1000)

    async def _dial_once(self, info: PeerInfo) -> bool:
        try:
            with trio.fail_after(self._cfg.handshake_timeout_ms / 1000):
                tcp = await trio.open_tcp_stream(info.host, info.port)
        except (OSError, trio.TooSlowError) as exc:
            self._log.debug("p2p_dial_failed", peer_id=info.node_id, error=repr(exc))
            return False
        return await self._connect(tcp, dial=info)

    async def _on_accept(self, tcp: trio.SocketStream) -> None:
        # Unauthenticated connections may each make trio-websocket buffer one
        # message of up to the envelope limit, so their number is capped.
        if self._handshakes_pending >= self._cfg.handshakes_pending_max:
            self._log.warning("p2p_accept_refused", reason="too many pending handshakes")
            await trio.aclose_forcefully(tcp)
            return
        await self._connect(tcp, dial=None)

    async def _connect(self, tcp: trio.abc.Stream, *, dial: PeerInfo | None) -> bool:
        """Own one TCP connection from handshake to close; True if authenticated."""
        async with trio.open_nursery() as ws_nursery:  # hosts the websocket reader
            link = await self._establish(ws_nursery, tcp, dial)
            if link is not None:
                await self._run_link(link)
            ws_nursery.cancel_scope.cancel()
        return link is not None

    async def _establish(self, nursery: trio.Nursery, tcp: trio.abc.Stream,
                         dial: PeerInfo | None) -> Link | None:
        cfg = self._cfg
        stream, ws = tcp, None
        inbound = dial is None
        self._handshakes_pending += inbound
        try:
            with trio.fail_after(cfg.handshake_timeout_ms / 1000):
                secured, binding = await self._secure(tcp, dialer=dial is not None)
                stream = ActivityStream(secured)
                ws = await self._open_ws(nursery, stream, dial)
                hs = Handshaker.new(
                    chain_id=cfg.chain_id, node_id=cfg.node_id, private_key=cfg.private_key,
                    known_keys=self._known, expected_peer=dial.node_id if dial else None,
                    tls_binding=binding)
                peer_id = await run_handshake(ws, hs)
            dialer_id = cfg.node_id if dial else peer_id
            stream.touch()  # the dead-peer clock starts when the link does
            return Link(ws, stream, self._peers[peer_id], dialer_id, cfg, self._counters)
        except _HANDSHAKE_FAILURES as exc:
            reason = str(exc) or type(exc).__name__
            self._counters.handshakes_failed += 1
            self._log.warning("p2p_handshake_failed", peer_id=dial and dial.node_id,
                              reason=reason)
        except _CONNECTION_FAILURES as exc:
            reason = repr(exc)
            self._log.info("p2p_connection_failed", peer_id=dial and dial.node_id,
                           reason=reason)
        finally:
            self._handshakes_pending -= inbound
        await self._abandon(ws, stream, reason)
        return None

    async def _secure(self, tcp: trio.abc.Stream, *, dialer: bool) -> tuple[trio.abc.Stream, bytes]:
        if self._tls is None:
            return tcp, b""
        if dialer:
            return await dial_tls(tcp, self._tls.client)
        return await accept_tls(tcp, self._tls)

    async def _open_ws(self, nursery: trio.Nursery, stream: trio.abc.Stream,
                       dial: PeerInfo | None) -> WebSocketConnection:
        limits = {"message_queue_size": _WS_QUEUE_MESSAGES,
                  "max_message_size": self._ws_bytes_max,
                  "receive_buffer_size": _RECEIVE_BUFFER_BYTES}
        if dial is not None:
            return await wrap_client_stream(nursery, stream, f"{dial.host}:{dial.port}",
                                            WS_PATH, **limits)
        request = await wrap_server_stream(nursery, stream, **limits)
        if request.path != WS_PATH:
            await request.reject(404)
            raise HandshakeRejected(f"unknown path {request.path!r}")
        return await request.accept()

    async def _abandon(self, ws: WebSocketConnection | None, stream: trio.abc.Stream,
                       reason: str) -> None:
        with trio.move_on_after(self._cfg.close_timeout_ms / 1000, shield=True):
            if ws is not None:
                await ws.aclose(CLOSE_POLICY, reason[:120])
        await trio.aclose_forcefully(stream)

    async def _run_link(self, link: Link) -> None:
        peer = self._peers[link.peer_id]
        if self._adopt(peer, link):
            self._counters.links_established += 1
            link.log.info("p2p_link_up")
        else:
            link.retire("duplicate link")  # drain what the peer already sent on it
        try:
            await link.run(self._sink)
        finally:
            if peer.link is link:
                peer.set_link(None)
            link.log.info("p2p_link_down", reason=link.close_reason, code=link.close_code)
            await link.aclose()

    def _adopt(self, peer: PeerSlot, link: Link) -> bool:
        """Make `link` the peer's link unless the current one is preferred."""
        current = peer.link
        if current is not None:
            self._counters.links_duplicate_closed += 1
            if not self._prefer(link, current):
                link.log.info("p2p_duplicate_link", kept_dialer=current.dialer_id)
                return False
            link.log.info("p2p_duplicate_link", kept_dialer=link.dialer_id)
            current.retire("replaced by a preferred link")
        peer.set_link(link)
        return True

    def _prefer(self, new: Link, old: Link) -> bool:
        return keep_new_link(self._cfg.node_id, new.peer_id, new.dialer_id, old.dialer_id)

