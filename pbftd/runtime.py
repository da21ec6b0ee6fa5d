"""The trio shell around the pure replica.

Exactly one task (``run``) owns the replica: every input (a peer's frame, a
timer, a client submission) arrives on one bounded channel and is handled to
completion before the next, so nothing needs a lock.  Actions are performed
in order; consecutive persists are grouped into one synced write that lands
before the next action that sends bytes or executes a block (the ordering
contract of ``pbftd.core.actions``).  Storage calls are synchronous on
purpose: a synced RocksDB batch costs well under a millisecond, and doing it
inline keeps "durable before sent" obvious.

Time given to the replica is the wall clock in ms (block times are compared
across courts), clamped so it never goes backwards within a process.

Disk full: a write that fails for lack of space leaves the replica's memory
ahead of its disk, so the runtime stops acknowledging anything (peer frames
and timers are dropped, submissions refused with the reason), keeps serving
reads, retries every ``recover_interval_s``, and once the store is writable
again rebuilds the replica from what is durably on disk, exactly as a restart
would.  An I/O error (a failed fsync) is not retried: the write is
indeterminate, so the error propagates and the process exits for systemd to
restart it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from storage import StoreFullError

from .chainstore import ChainStore
from .core.actions import (
    Broadcast,
    CancelTimer,
    Execute,
    Note,
    Persist,
    Send,
    ServeBlocks,
    SetTimer,
)
from .core.chain import RequestKey
from .core.messages import Request
from .core.replica import ExecutedTip, Replica

__all__ = ["CommitWaiter", "NodeRuntime"]

EVENTS_MAX = 4096


@dataclass
class CommitWaiter:
    """Lets an RPC caller wait until its requests are in a block."""

    keys: set[RequestKey]
    submitted_ms: int = 0
    sid: int = 0
    error: str | None = None
    heights: dict[RequestKey, int] = field(default_factory=dict)
    accepted: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)


class NodeRuntime:
    def pending_waiters(self) -> int:
        return len(self._waiters)

    def __init__(self, replica: Replica, chain: ChainStore, mesh: Any,
                 clock: Callable[[], float] = time.time,
                 make_replica: Callable[[], Replica] | None = None,
                 recover_interval_s: float = 5.0) -> None:
        self.replica = replica
        self._make_replica = make_replica
        self._recover_interval_s = recover_interval_s
        self.read_only_reason: str | None = None
        self._archived_checkpoint = 0
        self.chain = chain
        self.mesh = mesh
        self._clock = clock
        self._last_now = 0
        self._send_events, self._events = trio.open_memory_channel[tuple[Any, ...]](EVENTS_MAX)
        self._armed: dict[str, int] = {}
        self._timers_changed = trio.Event()
        self._waiters: dict[RequestKey, list[CommitWaiter]] = {}
        self.stats: Counter[str] = Counter()
        self.on_commit_latency: Callable[[float], None] | None = None  # ms, for metrics
        # on_block(height): called after each block is durably stored (event subscribers);
        # it must not block: it runs on the consensus task.
        self.on_block: Callable[[int], None] | None = None
        self.started = trio.Event()
        self.log = structlog.get_logger("pbftd").bind(node=replica.me)

    # ------------------------------------------------------------ public

    def now_ms(self) -> int:
        self._last_now = max(self._last_now, int(self._clock() * 1000))
        return self._last_now

    async def submit(self, requests: Sequence[Request]) -> CommitWaiter:
        """Queue requests of this court's clients; returns a waiter for commit."""
        keys = {(self.replica.me, r.client, r.rid) for r in requests}
        waiter = CommitWaiter(keys)
        await self._send_events.send(("submit", tuple(requests), waiter))
        return waiter

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.mesh.run)
            nursery.start_soon(self._pump_inbox)
            nursery.start_soon(self._run_timers)
            self._start_replica()
            self.started.set()
            task_status.started()
            async for event in self._events:
                if self.read_only_reason is not None:
                    self._refuse(event)
                    continue
                try:
                    self._handle(event)
                except StoreFullError as exc:
                    self._enter_read_only(str(exc), nursery)

    def _start_replica(self) -> None:
        tip = self.chain.tip()
        records = self.chain.consensus_records()
        self._perform(self.replica.start(
            self.now_ms(), records, ExecutedTip(tip.height, tip.block_hash, tip.time_ms)))
        self.log.info("replica_started", view=self.replica.view, height=tip.height,
                      seq=self.replica.next_exec, records=len(records))

    # ------------------------------------------------------------ disk full

    def _enter_read_only(self, reason: str, nursery: trio.Nursery) -> None:
        self.read_only_reason = reason
        self.stats["read_only_entered"] += 1
        # Writes in flight may or may not commit elsewhere: not acknowledged.
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.error = f"not acknowledged, this node cannot write: {reason}"
                waiter.done.set()
        self._waiters.clear()
        self.log.error("storage_full_read_only", reason=reason, height=self.chain.tip().height,
                       view=self.replica.view, seq=self.replica.next_exec,
                       action="not acknowledging writes; reads continue; free disk space")
        nursery.start_soon(self._recover_when_space_returns)

    def _refuse(self, event: tuple[Any, ...]) -> None:
        if event[0] == "submit":
            waiter = event[2]
            waiter.error = f"this node cannot write: {self.read_only_reason}"
            waiter.accepted.set()
        elif event[0] == "recovered":
            self._resume()

    async def _recover_when_space_returns(self) -> None:
        store = self.chain.store
        while True:
            await trio.sleep(self._recover_interval_s)
            if store.space_returned() and store.try_recover_space():
                store.ensure_ballast()
                await self._send_events.send(("recovered",))
                return

    def _resume(self) -> None:
        """Rebuild the replica from disk: its memory may be ahead of it."""
        assert self._make_replica is not None, "read-only mode needs make_replica"
        self.read_only_reason = None
        self._armed.clear()
        self.chain.reload_tip()
        self.replica = self._make_replica()
        self.log.warning("storage_recovered", height=self.chain.tip().height)
        self._start_replica()

    # ------------------------------------------------------------ inputs

    async def _pump_inbox(self) -> None:
        async for peer, frame in self.mesh.inbox:
            await self._send_events.send(("msg", peer, frame))

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        now = self.now_ms()
        if kind == "msg":
            self.stats["frames_in"] += 1
            self._perform(self.replica.on_message(event[1], event[2], now))
        elif kind == "timer":
            _, name, due = event
            if self._armed.get(name, due) != due:
                return  # re-armed since this firing was scheduled
            self._arm(name, None)
            self._perform(self.replica.on_timer(name, now))
        elif kind == "submit":
            _, requests, waiter = event
            waiter.submitted_ms = now
            try:
                (_origin, waiter.sid), actions = self.replica.submit(requests, now)
            except ValueError as exc:
                waiter.error = str(exc)
                waiter.accepted.set()
                return
            for key in waiter.keys:
                self._waiters.setdefault(key, []).append(waiter)
            waiter.accepted.set()
            self._perform(actions)

    # ------------------------------------------------------------ actions

    def _perform(self, actions: list[Any]) -> None:
        todo = list(reversed(actions))
        puts: dict[str, bytes | None] = {}
        while todo:
            action = todo.pop()
            if isinstance(action, Persist):
                for name in action.deletes:
                    puts[name] = None
                for name, value in action.puts:
                    puts[name] = value
                continue
            if puts:
                self._flush(puts)
                puts = {}
            if isinstance(action, Send):
                self.mesh.send(action.to, action.frame)
            elif isinstance(action, Broadcast):
                self.mesh.broadcast(action.frame)
            elif isinstance(action, Execute):
                todo.extend(reversed(self._execute(action)))
            elif isinstance(action, SetTimer):
                self._arm(action.name, action.at_ms)
            elif isinstance(action, CancelTimer):
                self._arm(action.name, None)
            elif isinstance(action, ServeBlocks):
                blocks = self.chain.committed_blocks(action.from_seq, action.to_seq,
                                                     self.replica.wire)
                self.mesh.send(action.to, self.replica.blocks_frame(action, blocks))
            elif isinstance(action, Note):
                self._note(action)
        if puts:
            self._flush(puts)
        self._archive_checkpoint()

    def _archive_checkpoint(self) -> None:
        """Store each new stable checkpoint certificate (see ChainStore)."""
        seq, proof = self.replica.stable_seq, self.replica.stable_proof
        if seq > self._archived_checkpoint and proof and seq <= self.chain.tip().height:
            self.chain.put_checkpoint_proof(seq, [c.env.to_wire() for c in proof])
            self._archived_checkpoint = seq

    def _flush(self, puts: dict[str, bytes | None]) -> None:
        started = time.perf_counter()
        self.chain.persist([(k, v) for k, v in puts.items() if v is not None],
                           [k for k, v in puts.items() if v is None])
        self.stats["persists"] += 1
        self.stats["persist_us_total"] += int((time.perf_counter() - started) * 1e6)

    def _execute(self, action: Execute) -> list[Any]:
        block = self.chain.append(action.batch, action.commits)
        header = block.header
        if self.on_block is not None:
            self.on_block(header.height)
        now = self.now_ms()
        self.stats["blocks"] += 1
        self.stats["txs"] += len(block.fresh)
        self.log.info("block_committed", view=self.replica.view, seq=header.height,
                      height=header.height, txs=header.tx_count,
                      hash=block.block_hash.hex()[:16])
        for tx in block.txs:
            for waiter in self._waiters.pop(tx.key, ()):
                waiter.heights[tx.key] = header.height
                if waiter.keys.issubset(waiter.heights) and not waiter.done.is_set():
                    if self.on_commit_latency is not None:
                        self.on_commit_latency(now - waiter.submitted_ms)
                    waiter.done.set()
        return self.replica.on_executed(header.height, block.block_hash, header.time_ms, now)

    def _note(self, note: Note) -> None:
        self.stats["note_" + note.event] += 1
        r = self.replica
        fields = {"view": r.view, "seq": r.next_exec, "height": r.executed, **note.fields}
        if note.event == "message_rejected":
            self.log.debug(note.event, **fields)
        else:
            self.log.info(note.event, **fields)

    # ------------------------------------------------------------ timers

    def _arm(self, name: str, due: int | None) -> None:
        if due is None:
            self._armed.pop(name, None)
        else:
            self._armed[name] = due
        changed, self._timers_changed = self._timers_changed, trio.Event()
        changed.set()

    async def _run_timers(self) -> None:
        """Sleep until the earliest armed timer, then post it to the owner."""
        while True:
            changed = self._timers_changed
            if not self._armed:
                await changed.wait()
                continue
            name, due = min(self._armed.items(), key=lambda kv: kv[1])
            with trio.move_on_after(max(0.0, (due - self.now_ms()) / 1000)):
                await changed.wait()
                continue
            if self._armed.get(name) == due:
                await self._send_events.send(("timer", name, due))
                # The owner disarms it when handled (or re-arms it): until
                # then this arming must not fire twice.
                while self._armed.get(name) == due:
                    await self._timers_changed.wait()
