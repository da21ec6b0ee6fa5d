"""The trio shell around the pure replica.

Exactly one task (``run``) owns the replica: every input (a peer's frames, a
timer, a client submission) arrives on one bounded channel and is handled to
completion before the next, so nothing needs a lock.  The mesh's links put
each websocket message's frames on that channel themselves
(``Mesh.run(deliver_to=...)``): no task in between, one wake-up per message.

Group commit.  The owner takes whatever inputs are already queued (up to
``GROUP_INPUTS_MAX``; a peer's message counts one per frame) and handles
them as one group: actions are performed
in order, every write goes to the WAL unsynced, and the bytes the group
would send, the waiters it would answer and the blocks it would announce are
held back.  One WAL fsync ends the group; only then are frames handed to the
mesh and clients told.  So a persist is still durable before any later send
(the ordering contract of ``pbftd.core.actions``), but a busy node pays one
fsync per group instead of one per step, and the mesh gets several frames
per peer at once to pack into one websocket message.  Client submissions
queued in the same group are merged into one SUBMIT: one signature, one
broadcast and one verification per peer for all of them.  Storage calls are
synchronous on purpose: no other task runs between a group's first write and
its fsync, so no reader sees an unsynced block.

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
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
import trio

from p2p import FRAMES
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
# Inputs handled between two fsyncs: bounds how long the first one's sends wait.
GROUP_INPUTS_MAX = 32
# Headroom under batch_bytes_max for a merged SUBMIT's envelope and CBOR heads.
_SUBMIT_OVERHEAD_BYTES = 512
# A commit certificate in a BLOCKS reply: at most n envelopes of ~200 bytes.
_CERT_BYTES_MAX = 16 * 1024


@dataclass
class CommitWaiter:
    """Lets an RPC caller wait until its requests are in a block.

    ``accepted``: refused (``error`` set, ``sid`` 0) or signed into a SUBMIT
    (``sid`` set).  ``done``: committed, refused, or not acknowledged
    (``error`` set after acceptance).  ``results`` holds each committed
    key's (height, tx_id), what ``ChainStore.request_result`` would read:
    once ``done`` is set the caller can answer without a lookup per key."""

    keys: set[RequestKey]
    submitted_ms: int = 0
    sid: int = 0
    error: str | None = None
    results: dict[RequestKey, tuple[int, bytes]] = field(default_factory=dict)
    accepted: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)

    def known(self, key: RequestKey) -> tuple[int, bytes] | None:
        """``key``'s (height, tx_id) once this waiter is done and the key
        committed; None means ask the store (a wait that timed out may race
        the commit, and its block may not be durable yet)."""
        return self.results.get(key) if self.done.is_set() else None


_Submission = tuple[tuple[Request, ...], CommitWaiter]


# A wall-clock step back larger than this rebuilds the replica (see
# NodeRuntime._follow_clock_step_back); smaller ones are absorbed by now_ms.
CLOCK_STEP_BACK_MS = 1_000
# The owner handles at least one timer of its core every tick interval (the
# replica's status timer, the observer's poll); a gap this many intervals
# long means this process was not running.
STALL_INTERVALS = 3


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
        # trio time (monotonic): a pause shows in it, a wall-clock step does not
        self._last_group_at: float | None = None
        self._send_events, self._events = trio.open_memory_channel[tuple[Any, ...]](EVENTS_MAX)
        self._armed: dict[str, int] = {}
        self._timers_changed = trio.Event()
        # What the timer task waits for: it is woken only when that must
        # change (see _arm), not on every arming, which is several per block.
        self._timer_wake_ms = float("inf")
        self._timer_posted: str | None = None
        self._waiters: dict[RequestKey, list[CommitWaiter]] = {}
        self.stats: Counter[str] = Counter()
        self.on_commit_latency: Callable[[float], None] | None = None  # ms, for metrics
        # on_block(height): called after each block is durably stored (event subscribers);
        # it must not block: it runs on the consensus task.
        self.on_block: Callable[[int], None] | None = None
        self.started = trio.Event()
        # held back until the group's fsync: frames for the mesh, waiters to
        # answer, blocks to announce
        self._outbox: list[tuple[str | None, bytes]] = []
        self._answer: list[CommitWaiter] = []
        self._announce: list[int] = []
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
            await nursery.start(partial(self.mesh.run, deliver_to=self._send_events.clone()))
            nursery.start_soon(self._run_timers)
            with self.chain.store.group_commit():
                self._start_replica()
            self._deliver()
            self.started.set()
            task_status.started()
            async for event in self._events:
                group = deque([event])
                inputs = _inputs(event)
                while inputs < GROUP_INPUTS_MAX:
                    try:
                        event = self._events.receive_nowait()
                    except trio.WouldBlock:
                        break
                    group.append(event)
                    inputs += _inputs(event)
                self._release_frames(group)
                self._handle_group(group, nursery)

    def _release_frames(self, group: deque[tuple[Any, ...]]) -> None:
        """Peers' frames out of the event queue no longer count against their
        inbox budget (p2p's per-peer byte bound covers the queue too)."""
        release = self.mesh.release
        for event in group:
            if event[0] == FRAMES:
                release(event[1], sum(map(len, event[2])))

    def _handle_group(self, group: deque[tuple[Any, ...]], nursery: trio.Nursery) -> None:
        """Handle queued inputs with one fsync (see the module doc)."""
        while group:
            if self.read_only_reason is not None:
                self._refuse(group.popleft())
                continue
            self._follow_clock_step_back()
            self._follow_stall()
            try:
                with self.chain.store.group_commit():
                    while group and self.read_only_reason is None:
                        event = group.popleft()
                        if event[0] == "submit":
                            event = ("submits", self._take_submits(event, group))
                        self._handle(event)
            except StoreFullError as exc:
                # Nothing that depends on the group's writes may leave.
                self._outbox.clear()
                self._announce.clear()
                for waiter in self._answer:
                    waiter.error = f"not acknowledged, this node cannot write: {exc}"
                    waiter.done.set()
                self._answer.clear()
                self._enter_read_only(str(exc), nursery)
                continue
            self._deliver()

    def _take_submits(self, first: tuple[Any, ...],
                      group: deque[tuple[Any, ...]]) -> list[_Submission]:
        """``first`` and the other submissions queued in ``group`` that fit one SUBMIT."""
        cfg = self.replica.cfg
        chunk = [(first[1], first[2])]
        count, size = len(first[1]), _SUBMIT_OVERHEAD_BYTES + _requests_bytes(first[1])
        rest: deque[tuple[Any, ...]] = deque()
        while group:
            event = group.popleft()
            if event[0] == "submit":
                n, b = len(event[1]), _requests_bytes(event[1])
                if count + n <= cfg.batch_requests_max and size + b <= cfg.batch_bytes_max:
                    chunk.append((event[1], event[2]))
                    count, size = count + n, size + b
                    continue
            rest.append(event)
        group.extend(rest)
        return chunk

    def _deliver(self) -> None:
        """The group is durable: send its frames, then answer and announce."""
        outbox, self._outbox = self._outbox, []
        for to, frame in outbox:
            if to is None:
                self.mesh.broadcast(frame)
            else:
                self.mesh.send(to, frame)
        answer, self._answer = self._answer, []
        for waiter in answer:
            waiter.done.set()
        announce, self._announce = self._announce, []
        if self.on_block is not None:
            for height in announce:
                self.on_block(height)

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
            _not_accepted(event[2], f"this node cannot write: {self.read_only_reason}")
        elif event[0] == "submits":
            for _requests, waiter in event[1]:
                _not_accepted(waiter, f"this node cannot write: {self.read_only_reason}")
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
        assert self._make_replica is not None, "read-only mode needs make_replica"
        self.read_only_reason = None
        self.log.warning("storage_recovered", height=self.chain.tip().height)
        self._rebuild_replica()

    def _rebuild_replica(self) -> None:
        """Rebuild the replica from disk, as after a crash: its memory may be
        ahead of the disk (a failed write) or of the clock (a step back)."""
        assert self._make_replica is not None
        self._armed.clear()
        self.chain.reload_tip()
        self.replica = self._make_replica()
        with self.chain.store.group_commit():
            self._start_replica()
        self._deliver()

    # ------------------------------------------------------------ clock

    def _follow_clock_step_back(self) -> None:
        """Follow the wall clock when it steps back (NTP correcting a clock
        that ran ahead, an admin fixing the date).

        ``now_ms`` never goes back, so after a step back of D it would stand
        still for D: the replica would refuse every PRE-PREPARE as too far
        from its frozen time and never see itself as stuck, sitting out
        consensus until the next stable checkpoint (fault scenarios 10, 10b).
        Every time the replica holds (timers, progress, proposals) may be
        ahead of the corrected clock, so it is rebuilt from its durable
        records, exactly as after a crash, and the clock starts again from
        the wall time; the persisted submission id and the chain's block
        times keep ids and block times from repeating or going back.
        """
        wall = int(self._clock() * 1000)
        if self._make_replica is None or wall >= self._last_now - CLOCK_STEP_BACK_MS:
            return
        r = self.replica
        self.log.warning("clock_stepped_back", by_ms=self._last_now - wall, view=r.view,
                         seq=r.next_exec, height=self.chain.tip().height,
                         action="replica rebuilt from disk, as after a restart")
        self.stats["clock_steps_back"] += 1
        self._last_now = wall
        self._rebuild_replica()

    def _follow_stall(self) -> None:
        """Tell the replica when this process was not running (SIGSTOP, a
        frozen VM, a stalled disk), before it handles what queued meanwhile:
        a request timer that ran out while we were away says nothing about
        the primary (fault scenario 3)."""
        at, self._last_group_at = self._last_group_at, trio.current_time()
        gap_ms = 0.0 if at is None else (self._last_group_at - at) * 1000
        if gap_ms < STALL_INTERVALS * self.replica.tick_interval_ms:
            return
        r = self.replica
        self.log.warning("process_stalled", for_ms=int(gap_ms), view=r.view, seq=r.next_exec,
                         height=self.chain.tip().height, action="request timers restarted")
        self.stats["stalls"] += 1
        self._perform(r.on_resumed(self.now_ms()))

    # ------------------------------------------------------------ inputs

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        now = self.now_ms()
        if kind == FRAMES:
            _, peer, frames = event
            self.stats["frames_in"] += len(frames)
            on_message = self.replica.on_message
            for frame in frames:
                self._perform(on_message(peer, frame, now))
        elif kind == "timer":
            _, name, due = event
            if self._armed.get(name, due) != due:
                return  # re-armed since this firing was scheduled
            self._arm(name, None)
            self._perform(self.replica.on_timer(name, now))
        elif kind == "submit":
            self._submit([(event[1], event[2])], now)
        elif kind == "submits":
            self._submit(event[1], now)

    def _submit(self, chunk: list[_Submission], now: int) -> None:
        """One SUBMIT for the requests of several callers (see ``_take_submits``)."""
        try:
            (_origin, sid), actions = self.replica.submit(
                [r for requests, _ in chunk for r in requests], now)
        except ValueError as exc:
            if len(chunk) > 1:  # let each caller hear about its own submission
                for item in chunk:
                    self._submit([item], now)
                return
            _not_accepted(chunk[0][1], str(exc))
            return
        for _requests, waiter in chunk:
            waiter.submitted_ms, waiter.sid = now, sid
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
                self._outbox.append((action.to, action.frame))
            elif isinstance(action, Broadcast):
                self._outbox.append((None, action.frame))
            elif isinstance(action, Execute):
                todo.extend(reversed(self._execute(action)))
            elif isinstance(action, SetTimer):
                self._arm(action.name, action.at_ms)
            elif isinstance(action, CancelTimer):
                self._arm(action.name, None)
            elif isinstance(action, ServeBlocks):
                self._outbox.append((action.to, self._blocks_frame(action)))
            elif isinstance(action, Note):
                self._note(action)
        if puts:
            self._flush(puts)
        self._archive_checkpoint()

    def _blocks_frame(self, action: ServeBlocks) -> bytes:
        """The BLOCKS reply, cut to the blocks that fit one frame.

        The replica asks for up to ``blocks_per_reply_max`` blocks, but it
        cannot know their size: 64 blocks of 1000 attestations are ~9 MB,
        which the link would drop as oversize, and a wiped replica would
        never catch up.  The fetcher asks again from where a reply ends.
        """
        budget = self.replica.cfg.limits.frame_bytes_max * 3 // 4
        hi, size = action.from_seq, 0
        for height in range(action.from_seq, action.to_seq + 1):
            raw = self.chain.store.get_block(height)
            if raw is None:
                break
            size += len(raw) + _CERT_BYTES_MAX
            if size > budget and height > action.from_seq:
                break
            hi = height
        blocks = self.chain.committed_blocks(action.from_seq, hi, self.replica.wire)
        return self.replica.blocks_frame(action, blocks)

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
        self._announce.append(header.height)
        now = self.now_ms()
        self.stats["blocks"] += 1
        self.stats["txs"] += len(block.fresh)
        self.log.info("block_committed", view=self.replica.view, seq=header.height,
                      height=header.height, txs=header.tx_count,
                      hash=block.block_hash.hex()[:16])
        waiting = [tx.key for tx in block.txs if tx.key in self._waiters]
        results = block.results(waiting, self.chain.request_result) if waiting else {}
        for key in waiting:
            for waiter in self._waiters.pop(key, ()):
                if key in results:
                    waiter.results[key] = results[key]
                if waiter.keys.issubset(waiter.results) and not waiter.done.is_set():
                    if self.on_commit_latency is not None:
                        self.on_commit_latency(now - waiter.submitted_ms)
                    self._answer.append(waiter)
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
        """Arm (or with None, disarm) a timer.  The timer task is woken only
        if it must fire sooner, or it waits for this posted timer to be
        handled; a later or cancelled arming is found when it next wakes."""
        if due is None:
            self._armed.pop(name, None)
        else:
            self._armed[name] = due
        if name == self._timer_posted or (due is not None and due < self._timer_wake_ms):
            changed, self._timers_changed = self._timers_changed, trio.Event()
            changed.set()

    async def _run_timers(self) -> None:
        """Sleep until the earliest armed timer, then post it to the owner."""
        while True:
            changed = self._timers_changed
            if not self._armed:
                self._timer_wake_ms = float("inf")
                await changed.wait()
                continue
            name, due = min(self._armed.items(), key=lambda kv: kv[1])
            self._timer_wake_ms = due
            with trio.move_on_after(max(0.0, (due - self.now_ms()) / 1000)):
                await changed.wait()
                continue
            if self._armed.get(name) == due:
                self._timer_posted = name
                await self._send_events.send(("timer", name, due))
                # The owner disarms it when handled (or re-arms it): until
                # then this arming must not fire twice.
                while self._armed.get(name) == due:
                    await self._timers_changed.wait()
                self._timer_posted = None


def _inputs(event: tuple[Any, ...]) -> int:
    """How much of a group ``event`` takes: a peer's message, one per frame."""
    return len(event[2]) if event[0] == FRAMES else 1


def _not_accepted(waiter: CommitWaiter, reason: str) -> None:
    """Refuse a submission.  ``done`` is set too, so a caller waiting for the
    commit alone (one wake-up per call) also hears of the refusal."""
    waiter.error = reason
    waiter.accepted.set()
    waiter.done.set()


def _requests_bytes(requests: Sequence[Request]) -> int:
    """About what the requests add to a SUBMIT's signed bytes."""
    return sum(r.size_bytes() for r in requests)
