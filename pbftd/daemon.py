"""``pbftd run``: assemble one court's node from its config and run it.

Start-up order matters: settings and genesis are validated first (a bad
file stops here with its name and key), then the store is opened (its flock
makes a second daemon on the same data directory fail before touching
anything), then the pid file is written.  SIGTERM and SIGINT cancel the
nursery; the replica task only yields between whole events and persists are
synchronous, so no write is cut in half, and the store is closed last.
"""

from __future__ import annotations

import os
import signal
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from config import ConfigError, Court, Genesis, Settings, load_genesis, load_private_key
from config.settings import listen_addresses
from p2p import Mesh, MeshConfig, PeerInfo
from storage import NodeStore, StoreError, StoreIOError

from . import evidence, memtrim, sdnotify
from .chainstore import ChainStore
from .core.chain import ChainTip
from .core.crypto import Signer, Verifier
from .core.follower import Follower, FollowerConfig
from .core.replica import Replica, ReplicaConfig
from .core.validators import ValidatorSet
from .runtime import NodeRuntime
from .workflow_app import WorkflowApp, engine_config
from .workflow_keeper import run_keeper

__all__ = ["DaemonError", "Node", "StorageStopped", "assemble", "serve"]

log = structlog.get_logger("pbftd")


class DaemonError(Exception):
    """Start-up cannot proceed; the message is one line for the admin."""


class StorageStopped(Exception):
    """A write failed other than by a full disk (EIO, fsync): its outcome is
    unknown, so the node stopped, to restart from what is on disk."""

    EXIT_STATUS = 75  # EX_TEMPFAIL: systemd's Restart=on-failure restarts it


@dataclass
class Node:
    settings: Settings
    genesis: Genesis
    court: Court
    signer: Signer
    store: NodeStore
    chain: ChainStore
    runtime: NodeRuntime
    rpc_listen: str
    workflows: WorkflowApp

    @property
    def replica(self) -> Replica:
        return self.runtime.replica


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def replica_config(settings: Settings, genesis: Genesis) -> ReplicaConfig:
    c = settings.consensus
    return ReplicaConfig(
        chain_id=genesis.chain_id,
        checkpoint_interval=genesis.consensus.checkpoint_interval_blocks,
        watermark_window=genesis.consensus.watermark_window_blocks,
        batch_requests_max=c.batch_requests_max, batch_bytes_max=c.batch_bytes_max,
        batch_wait_ms=c.batch_wait_ms, pipeline_depth_max=c.pipeline_depth_max,
        partial_depth_max=c.partial_depth_max,
        request_timeout_ms=c.request_timeout_ms, view_change_timeout_ms=c.view_change_timeout_ms,
        block_time_skew_max_ms=c.block_time_skew_max_ms)


def observer_ring(genesis: Genesis, court_id: str, fanout: int) -> list[str]:
    """The observers an observer dials besides the validators: the next
    ``fanout`` observers in genesis order, wrapping, so blocks can travel
    observer to observer with bounded fan-out."""
    ids = [c.id for c in genesis.observers()]
    if court_id not in ids:
        return []
    i = ids.index(court_id)
    return [ids[(i + k) % len(ids)] for k in range(1, min(fanout, len(ids) - 1) + 1)]


def mesh_config(settings: Settings, genesis: Genesis, key: Any, p2p_listen: str) -> MeshConfig:
    p = settings.p2p
    host, port = _split(p2p_listen)
    dial = [c.id for c in genesis.validators() if c.id != settings.court_id]
    dial += observer_ring(genesis, settings.court_id, p.gossip_fanout)
    peers = tuple(PeerInfo(c.id, bytes.fromhex(c.public_key), *_split(c.p2p_address))
                  for c in genesis.courts if c.id in dial)
    observers = {c.id: bytes.fromhex(c.public_key) for c in genesis.observers()
                 if c.id != settings.court_id and c.id not in dial}
    return MeshConfig(
        chain_id=genesis.chain_id, node_id=settings.court_id, private_key=key,
        listen_host=host, listen_port=port, peers=peers, tls=p.tls, plaintext_ok=p.plaintext_ok,
        tls_cert_file=p.tls_cert_file, tls_key_file=p.tls_key_file, extra_known=observers,
        frame_bytes_max=p.frame_bytes_max, send_queue_frames_max=p.send_queue_frames_max,
        heartbeat_interval_ms=p.heartbeat_interval_ms, peer_dead_after_ms=p.peer_dead_after_ms,
        reconnect_backoff_min_ms=p.reconnect_backoff_min_ms,
        reconnect_backoff_max_ms=p.reconnect_backoff_max_ms)


def assemble(settings: Settings, stack: ExitStack) -> Node:
    """Everything but the event loop; resources are closed by ``stack``."""
    genesis = load_genesis(settings.genesis_file)
    if not genesis.has_court(settings.court_id):
        raise DaemonError(f"court {settings.court_id!r} is not in {settings.genesis_file}")
    court = genesis.court(settings.court_id)
    key = load_private_key(settings.key_file)
    signer = Signer(key)
    if signer.public_key.hex() != court.public_key:
        raise DaemonError(f"{settings.key_file} does not hold the key genesis lists for "
                          f"{court.id}")
    p2p_listen, rpc_listen = listen_addresses(settings, genesis)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    s = settings.storage
    try:
        store = NodeStore.open(settings.data_dir, sync_writes=s.sync_writes,
                               write_buffer_bytes=s.write_buffer_bytes,
                               ballast_bytes=s.ballast_bytes)
    except StoreError as exc:
        raise DaemonError(str(exc)) from None
    stack.callback(store.close)
    _write_pid_file(settings.data_dir, stack)
    genesis_tip = ChainTip.genesis(genesis.genesis_hash(), genesis.genesis_time_ms)
    evidence.remember_parsed(settings.consensus.batch_requests_max)
    workflows = WorkflowApp(store, engine_config(genesis))
    chain = ChainStore(store, genesis.chain_id, genesis_tip, indexers=[evidence.index_block],
                       app=workflows)
    vals = ValidatorSet.of([(c.id, bytes.fromhex(c.public_key)) for c in genesis.validators()])
    submitters = {c.id: bytes.fromhex(c.public_key) for c in genesis.courts}
    rcfg = replica_config(settings, genesis)
    ring = observer_ring(genesis, court.id, settings.p2p.gossip_fanout)
    fcfg = FollowerConfig(chain_id=genesis.chain_id,
                          checkpoint_interval=rcfg.checkpoint_interval,
                          batch_requests_max=rcfg.batch_requests_max,
                          batch_bytes_max=rcfg.batch_bytes_max)

    def make_replica() -> Any:
        if court.role == "observer":
            return Follower(fcfg, vals, court.id, signer, Verifier(), submitters,
                            [*vals.ids, *ring])
        return Replica(rcfg, vals, court.id, signer, Verifier(), submitters)

    mesh = Mesh(mesh_config(settings, genesis, key, p2p_listen))
    runtime = NodeRuntime(make_replica(), chain, mesh, make_replica=make_replica)
    return Node(settings, genesis, court, signer, store, chain, runtime, rpc_listen, workflows)


def _write_pid_file(data_dir: Path, stack: ExitStack) -> None:
    path = data_dir / "pbftd.pid"
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)
    stack.callback(lambda: path.unlink(missing_ok=True))


async def serve(node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                extra_services: Any = None) -> None:
    """Run the node until SIGTERM/SIGINT (or cancellation)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
        await nursery.start(node.runtime.run)
        nursery.start_soon(memtrim.trim_forever)
        if node.court.is_validator:
            nursery.start_soon(run_keeper, node)
        if extra_services is not None:
            await extra_services(node, nursery)
        if node.settings.systemd.notify and sdnotify.notify("READY=1"):
            interval = sdnotify.watchdog_interval_s()
            if interval:
                nursery.start_soon(_watchdog, interval)
        log.info("node_ready", node=node.court.id, tier=node.court.tier, rpc=node.rpc_listen,
                 view=node.replica.view, height=node.chain.tip().height)
        task_status.started()
    sdnotify.notify("STOPPING=1")
    log.info("node_stopped", node=node.court.id, height=node.chain.tip().height)


async def _stop_on_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            scope.cancel()
            return


async def _watchdog(interval_s: float) -> None:
    while True:
        sdnotify.notify("WATCHDOG=1")
        await trio.sleep(interval_s)


def _exit_during_start_up(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def run_daemon(settings: Settings, extra_services: Any = None) -> None:
    """Blocking entry point for ``pbftd run``; raises DaemonError/ConfigError.

    SIGTERM before the event loop has its own handler (while the store opens)
    must still unwind the ExitStack: close the store, remove the pid file.
    """
    signal.signal(signal.SIGTERM, _exit_during_start_up)
    with ExitStack() as stack:
        try:
            node = assemble(settings, stack)
        except ConfigError:
            raise
        failed = False
        try:
            trio.run(lambda: serve(node, extra_services=extra_services))
        except* StoreIOError:
            failed = True  # logged by the store as store_failed_write_error
        if failed:
            raise StorageStopped("a storage write failed (see the store_failed_write_error "
                                 "log line); stopped so that a restart trusts only what is "
                                 "on disk")
