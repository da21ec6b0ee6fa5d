"""Shared helpers for p2p tests: keys, free ports, running meshes, raw peers.

pytest-trio is not installed, so each test wraps its body in `run()`, which
also bounds the whole test with a deadline.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from p2p import FRAMES, WS_PATH, Mesh, MeshConfig, PeerInfo, raw_public_key
from p2p.handshake import Handshaker
from p2p.link import run_handshake
from p2p.tls import dial_tls, make_tls
from pbftd.testnet import free_base_port

CHAIN = "court-chain-test"
HOST = "127.0.0.1"
TEST_DEADLINE_S = 20


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with trio.fail_after(TEST_DEADLINE_S):
            await test()

    trio.run(bounded)


def free_port() -> int:
    """A port that was free a moment ago (peers must know it before start),
    outside the ephemeral range (``free_base_port`` says why)."""
    return free_base_port(1)


@dataclass(frozen=True)
class Node:
    node_id: str
    key: Ed25519PrivateKey
    port: int

    @property
    def public(self) -> bytes:
        return raw_public_key(self.key)

    def info(self) -> PeerInfo:
        return PeerInfo(self.node_id, self.public, HOST, self.port)


def nodes(*ids: str) -> dict[str, Node]:
    return {i: Node(i, Ed25519PrivateKey.generate(), free_port()) for i in ids}


FAST = {
    "heartbeat_interval_ms": 100,
    "peer_dead_after_ms": 400,
    "handshake_timeout_ms": 2000,
    "reconnect_backoff_min_ms": 20,
    "reconnect_backoff_max_ms": 200,
    "close_timeout_ms": 100,
}


def config(me: Node, peers: list[Node], **overrides: object) -> MeshConfig:
    fields = {"tls": True, **FAST, **overrides}
    return MeshConfig(
        chain_id=str(fields.pop("chain_id", CHAIN)), node_id=me.node_id, private_key=me.key,
        listen_host=HOST, listen_port=me.port, peers=tuple(p.info() for p in peers),
        **fields,  # type: ignore[arg-type]
    )


def cluster_configs(all_nodes: dict[str, Node], **overrides: object) -> dict[str, MeshConfig]:
    return {
        i: config(n, [p for j, p in all_nodes.items() if j != i], **overrides)
        for i, n in all_nodes.items()
    }


async def _run_scoped(mesh: Mesh, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            task_status.started(scope)


async def start(nursery: trio.Nursery, mesh: Mesh) -> trio.CancelScope:
    """Run `mesh` until the returned scope is cancelled; returns once listening."""
    return await nursery.start(_run_scoped, mesh)


async def start_connected(nursery: trio.Nursery,
                          cfgs: dict[str, MeshConfig]) -> dict[str, Mesh]:
    """A mesh per config, all running in `nursery` and connected to each other."""
    meshes = {i: Mesh(cfg) for i, cfg in cfgs.items()}
    for mesh in meshes.values():
        await start(nursery, mesh)
    await wait_all_connected(meshes)
    return meshes


async def wait_all_connected(meshes: dict[str, Mesh]) -> None:
    for i, mesh in meshes.items():
        for j in meshes:
            if j != i:
                await mesh.wait_connected(j)


# Frames of a message taken from a mesh's inbox beyond what a test asked for.
_LEFT_OVER: weakref.WeakKeyDictionary[Mesh, deque[tuple[str, bytes]]] = (
    weakref.WeakKeyDictionary())


async def receive(mesh: Mesh, count: int) -> list[tuple[str, bytes]]:
    """Take `count` frames as `(peer, frame)`, releasing each as a real
    consumer does. The inbox yields a websocket message's frames together;
    frames beyond `count` are kept for the next call."""
    left_over = _LEFT_OVER.setdefault(mesh, deque())
    got = []
    while len(got) < count:
        if not left_over:
            tag, peer, frames = await mesh.inbox.receive()
            assert tag == FRAMES and frames, (tag, frames)
            left_over.extend((peer, frame) for frame in frames)
        peer, frame = left_over.popleft()
        mesh.release(peer, len(frame))
        got.append((peer, frame))
    return got


async def wait_closed(ws: WebSocketConnection) -> ConnectionClosed:
    """Drain the socket until the other side closes it; return the close."""
    while True:
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            return exc


@asynccontextmanager
async def raw_peer(target: Node, me_id: str, me_key: Ed25519PrivateKey, *, tls: bool = True,
                   authenticate: bool = True, chain_id: str = CHAIN,
                   ) -> AsyncIterator[WebSocketConnection]:
    """A hand-driven peer: TLS + websocket to `target`, optionally authenticated.

    It never sends anything on its own afterwards, which is how tests play a
    stalled, malicious or buggy peer.
    """
    async with trio.open_nursery() as nursery:
        tcp = await trio.open_tcp_stream(HOST, target.port)
        stream, binding = (await dial_tls(tcp, make_tls(me_id, None, None).client)
                           if tls else (tcp, b""))
        ws = await wrap_client_stream(nursery, stream, f"{HOST}:{target.port}", WS_PATH,
                                      max_message_size=64 * 1024 * 1024)
        if authenticate:
            hs = Handshaker.new(chain_id=chain_id, node_id=me_id, private_key=me_key,
                                known_keys={target.node_id: target.public},
                                expected_peer=target.node_id, tls_binding=binding)
            assert await run_handshake(ws, hs) == target.node_id
        yield ws
        await ws.aclose()
        nursery.cancel_scope.cancel()


def with_overrides(cfg: MeshConfig, **changes: object) -> MeshConfig:
    return replace(cfg, **changes)  # type: ignore[arg-type]


class LogWatch:
    """Records structlog events and lets a test await one (no polling)."""

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self._waiters: list[tuple[dict, trio.Event, list[dict]]] = []

    def __call__(self, _logger: object, method: str, event_dict: dict) -> dict:
        entry = {**event_dict, "log_level": method}
        self.entries.append(entry)
        for match, event, found in self._waiters:
            if not event.is_set() and _matches(entry, match):
                found.append(entry)
                event.set()
        return event_dict

    def matching(self, **match: object) -> list[dict]:
        return [e for e in self.entries if _matches(e, match)]

    async def wait_for(self, **match: object) -> dict:
        """The first entry (past or future) whose fields equal `match`."""
        past = self.matching(**match)
        if past:
            return past[0]
        event, found = trio.Event(), []
        self._waiters.append((match, event, found))
        await event.wait()
        return found[0]


def _matches(entry: dict, match: dict) -> bool:
    return all(entry.get(k) == v for k, v in match.items())


@contextmanager
def watch_logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    with capture_logs(processors=[watch]):
        yield watch
