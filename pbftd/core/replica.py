"""The PBFT replica: a pure, synchronous state machine.

Theory of operation
-------------------
This is Castro and Liskov's PBFT (OSDI '99, TOCS '02) with batching,
checkpoints, view changes and state transfer.  The object does no I/O and
reads no clock: every entry point (``start``, ``on_message``, ``submit``,
``on_timer``, ``on_executed``) takes ``now_ms`` and returns a list of
actions (see ``actions.py``) that the shell performs in order.  A
``Persist`` is durable before any later send; that is what lets a replica
restarted from its persisted records never contradict a vote it sent.

Rules kept here, in the paper's terms:

* n validators, f = (n-1)//3, quorum q = 2f+1 (for n = 3f+1); the primary of
  view v is ``ids[v % n]``.
* Normal case: the primary assigns seq n in the window (h, h+L] to a batch and
  broadcasts PRE-PREPARE(v, n, d); a backup that accepts it persists it and
  broadcasts PREPARE; *prepared* = the pre-prepare plus q-1 matching prepares
  from distinct backups; a prepared replica persists its prepared certificate
  and broadcasts COMMIT; *committed-local* = prepared plus q matching commits.
  Batches execute strictly in seq order; the q commits are the block's commit
  certificate.
* Checkpoints every K blocks: CHECKPOINT(n, block hash); q matching make it
  stable, h moves to n, the log at or below n is dropped.
* View change: a replica holding pending requests that has seen no block
  execute for ``request_timeout_ms`` (or only blocks that pass over its oldest
  submission, see ``_request_timer_after_execution``) broadcasts
  VIEW-CHANGE(v+1, stable checkpoint proof,
  prepared certificates).  f+1 view changes for higher views pull a replica
  along.  The new primary sends NEW-VIEW with q view changes and the
  pre-prepares they imply (highest-view prepared batch per seq, null batches in
  the gaps); every backup recomputes and checks them.  Once q view changes for
  its target are seen, a replica waits ``view_change_timeout_ms * 2^k`` for
  NEW-VIEW before moving on to the next view.
* State transfer: a replica that learns of a stable checkpoint beyond what it
  executed, or hears in STATUS that a peer executed further while it made no
  progress, FETCHes blocks; each is applied only after its commit certificate
  checks out, and a block hash that contradicts a stable checkpoint is a broken
  invariant (an assertion), never silently accepted.
* STATUS every ``status_interval_ms`` doubles as retransmission: votes for
  entries stuck longer than an interval are re-sent, a replica still in a view
  change re-sends its VIEW-CHANGE, and a replica in a newer view answers a
  peer's older STATUS with its NEW-VIEW so that the peer can join.

Anything a peer sends that is malformed, forged or inconsistent is a
``ProtocolError``; it is counted in ``stats`` and dropped without touching
state.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import codec
from .actions import (
    TIMER_BATCH,
    TIMER_FETCH,
    TIMER_NEW_VIEW,
    TIMER_REQUEST,
    TIMER_STATUS,
    Action,
    Broadcast,
    CancelTimer,
    Execute,
    Note,
    Persist,
    Send,
    ServeBlocks,
    SetTimer,
)
from .certs import check_commit_cert, checkpoint_proof_hash
from .crypto import Signer, Verifier
from .messages import (
    Batch,
    Blocks,
    Checkpoint,
    Commit,
    CommittedBlock,
    Fetch,
    Limits,
    Message,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    ProtocolError,
    Request,
    Status,
    Submit,
    ViewChange,
    VoteNotNeeded,
    Wire,
)
from .sids import SID_RECORD, SidIssuer
from .validators import ValidatorSet

__all__ = ["ExecutedTip", "Replica", "ReplicaConfig", "serve_fetch"]

SubKey = tuple[str, int]

# At most this many of our own submissions are pushed again to the primary
# per status tick (see _push_own_submissions): a bound on the extra traffic
# when the primary is merely slow, not deaf.
PUSH_SUBMISSIONS_MAX = 64


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    chain_id: str
    checkpoint_interval: int = 16
    watermark_window: int = 64
    batch_requests_max: int = 1_000
    batch_bytes_max: int = 1 << 20
    batch_wait_ms: int = 5
    pipeline_depth_max: int = 8
    # A partial batch is proposed only while fewer batches than this are in
    # flight (full ones need only pipeline room): under load, requests wait
    # for the pipeline to drain and fill one larger batch, so one block's
    # fixed costs (three rounds of signed votes, an fsync, a block) are
    # shared by more requests.  Issue 6's profile: 64 clients made blocks of
    # 8 requests with partial batches pipelined 8 deep, 27 with 1.
    partial_depth_max: int = 1
    request_timeout_ms: int = 2_000
    view_change_timeout_ms: int = 4_000
    view_change_backoff_exp_max: int = 6
    status_interval_ms: int = 1_000
    fetch_timeout_ms: int = 2_000
    block_time_skew_max_ms: int = 30_000
    pending_submissions_max: int = 20_000
    future_messages_max: int = 512
    # Executed submission keys are remembered this long (and at most this
    # many), to drop late copies of a SUBMIT (the origin's push racing its
    # PRE-PREPARE, a network duplicate) without proposing them again; the
    # chain's request keys still keep every request at most once after
    # that.  Bounded by time so that memory reaches its steady state within
    # a minute at any load (issue 6: a count bound alone filled for minutes
    # and showed as RSS growth).
    recent_executed_ms: int = 60_000
    recent_executed_max: int = 100_000
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        k, window = self.checkpoint_interval, self.watermark_window
        if k < 1 or window < 2 * k or window % k:
            raise ValueError("watermark_window must be a multiple of checkpoint_interval, >= 2x")
        for name in ("batch_requests_max", "batch_bytes_max", "pipeline_depth_max",
                     "partial_depth_max",
                     "request_timeout_ms", "view_change_timeout_ms", "status_interval_ms",
                     "fetch_timeout_ms", "pending_submissions_max", "future_messages_max",
                     "recent_executed_ms", "recent_executed_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.batch_wait_ms < 0:
            raise ValueError("batch_wait_ms must not be negative")


@dataclass(frozen=True, slots=True)
class ExecutedTip:
    """What the shell's block store says was executed last."""

    height: int
    block_hash: bytes
    time_ms: int


def serve_fetch(m: Fetch, executed: int, blocks_max: int,
                proof: tuple[Checkpoint, ...]) -> list[Action]:
    """Answer a FETCH from what we executed: at most ``blocks_max`` blocks,
    with our stable checkpoint proof so the asker can move its watermark."""
    if m.from_seq > executed:
        return []
    hi = min(m.to_seq, executed, m.from_seq + blocks_max - 1)
    return [ServeBlocks(m.sender, m.from_seq, hi, proof)]


class _Entry:
    """Everything the log holds for one sequence number."""

    __slots__ = ("batch", "commit_cert", "commits", "committed", "pp", "prepared_cert",
                 "prepares", "sent_commit", "sent_prepare", "seq", "touched_ms")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.pp: PrePrepare | None = None
        self.batch: Batch | None = None
        self.prepares: dict[str, Prepare] = {}
        self.commits: dict[str, Commit] = {}
        self.sent_prepare = False
        self.sent_commit = False
        self.prepared_cert: PreparedCert | None = None
        self.committed = False
        self.commit_cert: tuple[Commit, ...] = ()
        self.touched_ms = 0

    def reset_view(self) -> None:
        """Votes belong to one view; the prepared certificate outlives it."""
        self.pp = None
        self.prepares = {}
        self.commits = {}
        self.sent_prepare = False
        self.sent_commit = False
        if not self.committed:
            self.batch = None


class Replica:
    """One validator's consensus state.  See the module docstring."""

    def __init__(self, config: ReplicaConfig, validators: ValidatorSet, node_id: str,
                 signer: Signer, verifier: Verifier,
                 submitters: Mapping[str, bytes] | None = None) -> None:
        if node_id not in validators:
            raise ValueError(f"{node_id} is not a validator")
        if validators.key(node_id) != signer.public_key:
            raise ValueError("signer does not hold this validator's key")
        self.cfg = config
        self.vals = validators
        self.me = node_id
        self.signer = signer
        self.wire = Wire(config.chain_id, validators, verifier, config.limits, submitters)
        self.stats: Counter[str] = Counter()
        # view state
        self.view = 0
        self.active = True
        self.new_view_msg: NewView | None = None
        self.vc_latest: dict[str, ViewChange] = {}
        self.vc_attempts = 0
        self.new_view_sent = -1
        # log and checkpoints
        self.log: dict[int, _Entry] = {}
        self.stable_seq = 0
        self.stable_hash = b""
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.ckpt_votes: dict[int, dict[str, Checkpoint]] = {}
        self.own_ckpts: dict[int, bytes] = {}
        # execution
        self.executed = 0
        self.exec_time_ms = 0
        self.next_exec = 1
        self.next_seq = 1
        self.last_proposed_time_ms = 0
        self.last_progress_ms = 0
        self.batch_due = False  # a partial batch has waited batch_wait_ms (see _maybe_propose)
        # requests
        self.sids = SidIssuer()  # our own submissions' ids (see .sids)
        self.pending: OrderedDict[SubKey, Submit] = OrderedDict()
        # When each pending submission came from its origin, oldest first
        # (not those seen only inside a PRE-PREPARE): the request timer
        # watches the oldest (see _request_timer_after_execution).
        self.arrived_ms: OrderedDict[SubKey, int] = OrderedDict()
        self.unproposed: OrderedDict[SubKey, Submit] = OrderedDict()
        # Our own submissions not yet seen in a PRE-PREPARE of this view, with
        # when we last sent them: a SUBMIT lost on the way to the primary is
        # pushed again before the backups that did get it time out.
        self.own_unordered: OrderedDict[SubKey, int] = OrderedDict()
        # Pending submissions this replica saw only inside a PRE-PREPARE, never
        # from their origin: if that pre-prepare does not survive a view
        # change they are dropped (see _install_new_view).
        self.via_pre_prepare: set[SubKey] = set()
        self.recent_executed: OrderedDict[SubKey, int] = OrderedDict()  # -> executed at
        # catch-up
        self.peer_status: dict[str, Status] = {}
        self.fetch_inflight: tuple[str, int, int] | None = None
        self.fetch_target = 0
        self.future: dict[str, deque[tuple[Message, Any]]] = {}
        self.timers: dict[str, int] = {}
        self._handlers: dict[type, Callable[[Any, Any, int], list[Action]]] = {
            Submit: self._on_submit, PrePrepare: self._on_pre_prepare,
            Prepare: self._on_prepare, Commit: self._on_commit,
            Checkpoint: self._on_checkpoint, ViewChange: self._on_view_change,
            NewView: self._on_new_view, Status: self._on_status, Fetch: self._on_fetch,
            Blocks: self._on_blocks,
        }

    # ------------------------------------------------------------------ API

    @property
    def primary(self) -> str:
        return self.vals.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    def start(self, now_ms: int, records: Mapping[str, bytes] | None = None,
              tip: ExecutedTip | None = None) -> list[Action]:
        """Begin (or resume from persisted ``records`` and the block store's
        ``tip``); returns the first actions."""
        if tip is not None:
            self.executed = tip.height
            self.exec_time_ms = tip.time_ms
            self.next_exec = tip.height + 1
            self.next_seq = tip.height + 1
        if records:
            self._restore(records)
        self.last_progress_ms = now_ms
        out: list[Action] = [SetTimer(TIMER_STATUS, now_ms)]
        self.timers[TIMER_STATUS] = now_ms
        if not self.active and self.me in self.vc_latest:
            out.append(Broadcast(self.vc_latest[self.me].frame()))
        out += self._maybe_fetch(now_ms)
        return out

    def submit(self, requests: Iterable[Request], now_ms: int) -> tuple[SubKey, list[Action]]:
        """Requests from this node's own clients: sign once, send to all."""
        reqs = tuple(requests)
        if not reqs:
            raise ValueError("nothing to submit")
        sid = self.sids.peek(now_ms)
        msg = Submit.create(self.signer, self.cfg.chain_id, self.me, sid, reqs)
        if not self._fits_a_batch(msg):
            raise ValueError(f"a submission may hold at most {self.cfg.batch_requests_max} "
                             f"requests and {self.cfg.batch_bytes_max} bytes")
        out: list[Action] = [*self.sids.take(sid), Broadcast(msg.frame())]
        # its PRE-PREPARE brings it back: no need to verify our own signature then
        self.wire.remember_submit(msg)
        out += self._on_submit(msg, None, now_ms)
        if msg.key in self.pending:
            self.own_unordered[msg.key] = now_ms
        return msg.key, out

    def on_message(self, sender: str, frame: bytes, now_ms: int) -> list[Action]:
        """A frame from an authenticated link to ``sender``."""
        try:
            msg, extra = self.wire.open_from(sender, frame, self._vote_not_needed)
            return self._handlers[type(msg)](msg, extra, now_ms)
        except VoteNotNeeded:
            self.stats["votes_not_needed"] += 1
            return []
        except ProtocolError as exc:
            self.stats["rejected_" + exc.reason] += 1
            return [Note("message_rejected", {"peer": sender, "reason": str(exc)})]

    def _vote_not_needed(self, vote: Prepare | Commit) -> bool:
        """True for a vote of this view on a slot whose phase this replica has
        finished: a PREPARE once it sent its COMMIT (prepared), a COMMIT once
        the slot committed.  Its handler would only record it (certificates
        take the first quorum), so it is dropped before the signature check.
        Votes of other views and of slots not yet done are opened as before."""
        if vote.view != self.view or not self.active:
            return False
        entry = self.log.get(vote.seq)
        if entry is None:
            return False
        return entry.committed if type(vote) is Commit else entry.sent_commit

    @property
    def tick_interval_ms(self) -> int:
        """The longest the shell goes without a timer of ours to handle
        (the status timer; the runtime's stall check reads it)."""
        return self.cfg.status_interval_ms

    def on_resumed(self, now_ms: int) -> list[Action]:
        """The shell was not running for a while (SIGSTOP, a frozen VM, a
        stalled disk): the request and NEW-VIEW timers that ran out meanwhile
        measured this replica's absence, not the primary's, and it has not
        yet read what the others sent.  Restart them from now, as a restart
        would.  (Fault scenario 3: a backup resumed after 60 s accused the
        primary before reading a frame, and sat alone in the next view.)"""
        self.last_progress_ms = now_ms
        # Our own absence must not count as the primary passing them over.
        self.arrived_ms = OrderedDict((k, now_ms) for k in self.arrived_ms)
        out: list[Action] = []
        if TIMER_REQUEST in self.timers:
            out.append(self._set(TIMER_REQUEST, now_ms + self.cfg.request_timeout_ms))
        if TIMER_NEW_VIEW in self.timers:
            exp = min(self.vc_attempts, self.cfg.view_change_backoff_exp_max)
            out.append(self._set(TIMER_NEW_VIEW,
                                 now_ms + self.cfg.view_change_timeout_ms * (2 ** exp)))
        return out

    def on_timer(self, name: str, now_ms: int) -> list[Action]:
        # The shell fires only the latest arming of a timer; a name we no
        # longer hold was cancelled.  No comparison with ``now_ms``: a wall
        # clock stepped backwards must not strand a timer forever.
        if self.timers.pop(name, None) is None:
            return []
        handler = {
            TIMER_BATCH: self._on_batch_timeout, TIMER_REQUEST: self._on_request_timeout,
            TIMER_NEW_VIEW: self._on_new_view_timeout, TIMER_STATUS: self._on_status_timeout,
            TIMER_FETCH: self._on_fetch_timeout,
        }[name]
        return handler(now_ms)

    def on_executed(self, seq: int, block_hash: bytes, time_ms: int,
                    now_ms: int) -> list[Action]:
        """The shell executed block ``seq`` and stored it durably."""
        assert seq == self.executed + 1, f"executed {seq} after {self.executed}"
        self.executed = seq
        self.exec_time_ms = time_ms
        out: list[Action] = []
        if seq % self.cfg.checkpoint_interval == 0:
            ckpt = Checkpoint.create(self.signer, self.cfg.chain_id, self.me, seq, block_hash)
            self.own_ckpts[seq] = block_hash
            out.append(Persist(puts=((f"ckpt/{seq:020d}", block_hash),)))
            out.append(Broadcast(ckpt.frame()))
            if seq > self.stable_seq:
                self.ckpt_votes.setdefault(seq, {})[self.me] = ckpt
            out += self._check_stable(seq, now_ms)
        if seq == self.stable_seq and self.stable_hash:
            assert block_hash == self.stable_hash, f"block {seq} contradicts stable checkpoint"
        if self.fetch_inflight and seq >= self.fetch_inflight[2]:
            self.fetch_inflight = None
            out.append(self._cancel(TIMER_FETCH))
            out += self._maybe_fetch(now_ms)
        return out

    def blocks_frame(self, action: ServeBlocks, blocks: Iterable[CommittedBlock]) -> bytes:
        """Build the BLOCKS reply for a ServeBlocks action from stored blocks."""
        msg = Blocks.create(self.signer, self.cfg.chain_id, self.me, action.checkpoint_proof,
                            tuple(blocks))
        return msg.frame()

    # ------------------------------------------------------------ requests

    def _fits_a_batch(self, m: Submit) -> bool:
        """A submission no batch could carry must be refused at the door, or
        every primary would propose it alone and every backup refuse it."""
        return (len(m.requests) <= self.cfg.batch_requests_max
                and m.size_bytes <= self.cfg.batch_bytes_max)

    def _on_submit(self, m: Submit, _extra: Any, now_ms: int) -> list[Action]:
        key = m.key
        self.via_pre_prepare.discard(key)  # now we have it from its origin
        if key in self.pending or key in self.recent_executed:
            return []
        if not self._fits_a_batch(m):
            raise ProtocolError("submission_too_large", f"{len(m.requests)} requests")
        if len(self.pending) >= self.cfg.pending_submissions_max:
            self.stats["dropped_pending_full"] += 1
            return []
        self.pending[key] = m
        self.arrived_ms[key] = now_ms
        self.unproposed[key] = m
        out = self._arm_request_timer(now_ms)
        return out + self._maybe_propose(now_ms, force=False)

    def _arm_request_timer(self, now_ms: int) -> list[Action]:
        if self.active and self.pending and TIMER_REQUEST not in self.timers:
            return [self._set(TIMER_REQUEST, now_ms + self.cfg.request_timeout_ms)]
        return []

    def _maybe_propose(self, now_ms: int, force: bool) -> list[Action]:
        """Propose what the pipeline has room for.  ``force``: the batch timer
        fired, so a partial batch has waited ``batch_wait_ms``; if the
        pipeline is too busy for it, it goes out as soon as that changes."""
        out: list[Action] = []
        self.batch_due = self.batch_due or force
        while self.is_primary and self.active and self.unproposed:
            if self.next_seq > self.stable_seq + self.cfg.watermark_window:
                break
            in_flight = self.next_seq - self.next_exec
            if in_flight >= self.cfg.pipeline_depth_max:
                break
            subs, full = self._take_batch()
            if not full:
                waited = self.batch_due or self.cfg.batch_wait_ms == 0
                if not waited and TIMER_BATCH not in self.timers:
                    out.append(self._set(TIMER_BATCH, now_ms + self.cfg.batch_wait_ms))
                if not waited or in_flight >= self.cfg.partial_depth_max:
                    break
            for s in subs:
                del self.unproposed[s.key]
            out += self._propose(subs, now_ms)
            self.batch_due = False
        if not self.unproposed:
            self.batch_due = False
        return out

    def _take_batch(self) -> tuple[list[Submit], bool]:
        subs: list[Submit] = []
        count = size = 0
        for sub in self.unproposed.values():
            n, b = len(sub.requests), sub.size_bytes
            if subs and (count + n > self.cfg.batch_requests_max
                         or size + b > self.cfg.batch_bytes_max
                         or len(subs) >= self.cfg.limits.batch_submissions_max):
                return subs, True
            subs.append(sub)
            count += n
            size += b
        full = count >= self.cfg.batch_requests_max or size >= self.cfg.batch_bytes_max
        return subs, full

    def _propose(self, subs: list[Submit], now_ms: int) -> list[Action]:
        seq = self.next_seq
        self.next_seq += 1
        time_ms = max(now_ms, self.last_proposed_time_ms + 1, self.exec_time_ms + 1)
        self.last_proposed_time_ms = time_ms
        batch = Batch(seq, self.view, self.me, time_ms, tuple(subs))
        pp = PrePrepare.create(self.signer, self.cfg.chain_id, self.me, self.view, seq,
                               batch.digest(self.cfg.chain_id))
        entry = self._entry(seq)
        entry.pp, entry.batch, entry.touched_ms = pp, batch, now_ms
        for sub in subs:
            self.own_unordered.pop(sub.key, None)
        self.wire.forget_submits(subs)
        out: list[Action] = [self._persist_entry(entry), Broadcast(pp.frame(batch.to_wire()))]
        self.stats["proposed"] += 1
        return out + self._check_prepared(entry, now_ms)

    def _on_batch_timeout(self, now_ms: int) -> list[Action]:
        return self._maybe_propose(now_ms, force=True)

    # ---------------------------------------------------------- normal case

    def _in_window(self, seq: int) -> bool:
        return self.stable_seq < seq <= self.stable_seq + self.cfg.watermark_window

    def _entry(self, seq: int) -> _Entry:
        entry = self.log.get(seq)
        if entry is None:
            entry = self.log[seq] = _Entry(seq)
        return entry

    def _defer(self, m: Message, extra: Any) -> bool:
        """Keep votes for a view we are about to enter; drop older ones.
        Returns True when the message must not be processed now."""
        view = m.view  # type: ignore[attr-defined]
        if view == self.view and self.active:
            return False
        if view > self.view or (view == self.view and not self.active):
            if view <= self.view + 2:
                queue = self.future.setdefault(m.sender, deque(maxlen=self.cfg.future_messages_max))
                queue.append((m, extra))
            else:
                self.stats["dropped_far_future"] += 1
        else:
            self.stats["dropped_old_view"] += 1
        return True

    def _on_pre_prepare(self, m: PrePrepare, extra: Any, now_ms: int) -> list[Action]:
        future = m.view > self.view or (m.view == self.view and not self.active)
        if future and not self._check_future_pre_prepare(m, extra):
            self.stats["dropped_future_full"] += 1
            return []
        if self._defer(m, extra):
            return []
        if m.sender != self.primary:
            raise ProtocolError("not_primary", f"pre-prepare from backup {m.sender}")
        if not self._in_window(m.seq):
            self.stats["dropped_out_of_window"] += 1
            return []
        entry = self._entry(m.seq)
        if entry.pp is not None:
            if entry.pp.digest != m.digest:
                self.stats["equivocation_pre_prepare"] += 1
            return []
        if extra is None:
            raise ProtocolError("missing_batch", "pre-prepare without its batch")
        batch = Batch.parse(extra, self.wire)
        self._check_fresh_batch(m, batch, now_ms)
        entry.pp, entry.batch, entry.touched_ms = m, batch, now_ms
        for sub in batch.subs:
            self.own_unordered.pop(sub.key, None)
            known = sub.key in self.recent_executed or sub.key in self.pending
            if not known and len(self.pending) < self.cfg.pending_submissions_max:
                self.pending[sub.key] = sub
                self.via_pre_prepare.add(sub.key)
        return self._accept_pre_prepare(entry, now_ms)

    def _check_future_pre_prepare(self, m: PrePrepare, extra: Any) -> bool:
        """A pre-prepare buffered for a later view keeps its batch, which is
        unsigned and may fill a whole frame.  So only that view's primary may
        have one buffered, with a batch that parses and fits the batch limits,
        and at most ``watermark_window`` of them (the most its window holds;
        False beyond): the buffer then stays within a few batches' worth of
        bytes per peer instead of ``future_messages_max`` frames of garbage."""
        if m.view > self.view + 2:
            return True  # dropped as far future by _defer
        if m.sender != self.vals.primary(m.view):
            raise ProtocolError("not_primary", f"pre-prepare from backup {m.sender}")
        if extra is None:
            raise ProtocolError("missing_batch", "pre-prepare without its batch")
        batch = Batch.parse(extra, self.wire)  # a null batch re-sent after a NEW-VIEW is fine
        count = batch.request_count()
        if count > self.cfg.batch_requests_max or \
                sum(s.size_bytes for s in batch.subs) > self.cfg.batch_bytes_max:
            raise ProtocolError("bad_batch_size", f"{count} requests")
        queued = self.future.get(m.sender, ())
        return sum(isinstance(q, PrePrepare) for q, _ in queued) < self.cfg.watermark_window

    def _check_fresh_batch(self, m: PrePrepare, batch: Batch, now_ms: int) -> None:
        if batch.seq != m.seq or batch.view != m.view or batch.proposer != m.sender:
            raise ProtocolError("batch_mismatch", "batch seq/view/proposer differ")
        if batch.digest(self.cfg.chain_id) != m.digest:
            raise ProtocolError("bad_digest", "batch does not hash to the digest")
        if abs(batch.time_ms - now_ms) > self.cfg.block_time_skew_max_ms:
            raise ProtocolError("bad_time", "batch time too far from our clock")
        prev = self.log.get(m.seq - 1)
        if prev is not None and prev.batch is not None and prev.pp is not None:
            prev_time = prev.batch.time_ms
        elif m.seq - 1 == self.executed:
            prev_time = self.exec_time_ms
        else:
            prev_time = -1
        if batch.time_ms <= prev_time:
            raise ProtocolError("bad_time", "batch time not after the previous block's")
        count = batch.request_count()
        if count == 0 or count > self.cfg.batch_requests_max:
            raise ProtocolError("bad_batch_size", f"{count} requests")
        if sum(s.size_bytes for s in batch.subs) > self.cfg.batch_bytes_max:
            raise ProtocolError("bad_batch_size", "batch bytes over the limit")

    def _accept_pre_prepare(self, entry: _Entry, now_ms: int) -> list[Action]:
        """Persist the accepted pre-prepare, then vote PREPARE (backups)."""
        out: list[Action] = []
        if not self.is_primary:
            assert entry.pp is not None
            prep = Prepare.create(self.signer, self.cfg.chain_id, self.me, self.view,
                                  entry.seq, entry.pp.digest)
            entry.prepares[self.me] = prep
            entry.sent_prepare = True
            out += [self._persist_entry(entry), Broadcast(prep.frame())]
        else:
            out.append(self._persist_entry(entry))
        out += self._arm_request_timer(now_ms)
        return out + self._check_prepared(entry, now_ms)

    def _on_prepare(self, m: Prepare, extra: Any, now_ms: int) -> list[Action]:
        if self._defer(m, extra):
            return []
        if m.sender == self.primary:
            raise ProtocolError("primary_prepare", "the primary does not send PREPARE")
        if not self._in_window(m.seq):
            self.stats["dropped_out_of_window"] += 1
            return []
        entry = self._entry(m.seq)
        old = entry.prepares.get(m.sender)
        if old is not None:
            if old.digest != m.digest:
                self.stats["equivocation_prepare"] += 1
            return []
        entry.prepares[m.sender] = m
        return self._check_prepared(entry, now_ms)

    def _check_prepared(self, entry: _Entry, now_ms: int) -> list[Action]:
        if entry.pp is None or entry.sent_commit:
            return []
        digest = entry.pp.digest
        matching = [p for p in entry.prepares.values() if p.digest == digest]
        if len(matching) < self.vals.quorum - 1:
            return []
        assert entry.batch is not None
        entry.prepared_cert = PreparedCert(entry.pp, entry.batch,
                                           tuple(matching[: self.vals.quorum - 1]))
        commit = Commit.create(self.signer, self.cfg.chain_id, self.me, self.view, entry.seq,
                               digest)
        entry.commits[self.me] = commit
        entry.sent_commit = True
        entry.touched_ms = now_ms
        out: list[Action] = [self._persist_entry(entry), Broadcast(commit.frame())]
        return out + self._check_committed(entry, now_ms)

    def _on_commit(self, m: Commit, extra: Any, now_ms: int) -> list[Action]:
        if self._defer(m, extra):
            return []
        if not self._in_window(m.seq):
            self.stats["dropped_out_of_window"] += 1
            return []
        entry = self._entry(m.seq)
        old = entry.commits.get(m.sender)
        if old is not None:
            if old.digest != m.digest:
                self.stats["equivocation_commit"] += 1
            return []
        entry.commits[m.sender] = m
        return self._check_committed(entry, now_ms)

    def _check_committed(self, entry: _Entry, now_ms: int) -> list[Action]:
        if entry.committed or not entry.sent_commit or entry.pp is None:
            return []
        digest = entry.pp.digest
        matching = [c for c in entry.commits.values() if c.digest == digest]
        if len(matching) < self.vals.quorum:
            return []
        entry.committed = True
        entry.commit_cert = tuple(matching[: self.vals.quorum])
        return self._execute_ready(now_ms)

    def _execute_ready(self, now_ms: int) -> list[Action]:
        out: list[Action] = []
        while True:
            entry = self.log.get(self.next_exec)
            if entry is None or not entry.committed or entry.batch is None:
                break
            out += self._dispatch(entry.batch, entry.commit_cert, now_ms)
        return out

    def _dispatch(self, batch: Batch, cert: tuple[Commit, ...], now_ms: int,
                  fetched: bool = False) -> list[Action]:
        """Hand the next block to the shell and settle request bookkeeping;
        ``fetched``: a block from state transfer, not one we saw ordered."""
        assert batch.seq == self.next_exec
        self.next_exec += 1
        self.next_seq = max(self.next_seq, self.next_exec)
        self.last_progress_ms = now_ms
        if batch.subs:
            self.vc_attempts = 0
        watched = next(iter(self.arrived_ms.items()), None)
        arrivals: list[int] = []
        for sub in batch.subs:
            self.pending.pop(sub.key, None)
            arrived = self.arrived_ms.pop(sub.key, None)
            if arrived is not None:
                arrivals.append(arrived)
            self.unproposed.pop(sub.key, None)
            self.via_pre_prepare.discard(sub.key)
            self.own_unordered.pop(sub.key, None)
            self.recent_executed[sub.key] = now_ms
        self._forget_executed(now_ms)
        out: list[Action] = [Execute(batch, cert)]
        out += self._request_timer_after_execution(watched, arrivals, now_ms, fetched)
        return out + self._maybe_propose(now_ms, force=False)

    def _request_timer_after_execution(self, watched: tuple[SubKey, int] | None,
                                       arrivals: list[int], now_ms: int,
                                       fetched: bool) -> list[Action]:
        """Restart the request timer after a block, unless the block shows the
        primary passing over our oldest pending submission.

        PBFT restarts the timer whenever a request it waits for executes.
        Restarting it on *any* execution, as this replica first did, let a
        primary delay one submission for ever by ordering others.  An honest
        primary orders in arrival order, so what executes while our oldest
        submission waits came to us at about the same time.  The timer is
        restarted when the oldest executed (a new oldest gets a full
        timeout) or when the block executed a submission that reached us at
        most ``request_timeout_ms`` after it; a block holding only later
        ones, or only ones we never got from their origin (a primary can
        make those itself, any number), leaves the timer running.  So a
        primary that passes a submission over is suspected about one
        timeout after the submissions of its time run out; queueing under
        load (first in, first out) does not count against it.

        A block fetched from a peer always restarts it: we are catching up,
        and the old blocks hold submissions we never saw, which says nothing
        of the primary (fault scenario 3 found a backup resumed after 60 s
        accusing an honest primary in the middle of its catch-up).  A
        primary that keeps one backup behind, so that it only fetches, is
        still judged by the others, which see its blocks ordered.
        """
        oldest = next(iter(self.arrived_ms.items()), None)
        restart = (fetched or oldest is None or oldest != watched
                   or any(t <= oldest[1] + self.cfg.request_timeout_ms for t in arrivals))
        if restart or TIMER_REQUEST not in self.timers:
            return [self._cancel(TIMER_REQUEST), *self._arm_request_timer(now_ms)]
        self.stats["request_timer_kept"] += 1
        return []

    def _forget_executed(self, now_ms: int) -> None:
        recent, oldest_ms = self.recent_executed, now_ms - self.cfg.recent_executed_ms
        while recent and (len(recent) > self.cfg.recent_executed_max
                          or next(iter(recent.values())) < oldest_ms):
            recent.popitem(last=False)

    # ---------------------------------------------------------- checkpoints

    def _on_checkpoint(self, m: Checkpoint, _extra: Any, now_ms: int) -> list[Action]:
        if m.seq % self.cfg.checkpoint_interval:
            raise ProtocolError("bad_checkpoint", "seq is not a checkpoint boundary")
        if m.seq <= self.stable_seq:
            return []
        if m.seq > self.stable_seq + 4 * self.cfg.watermark_window:
            self.stats["dropped_far_checkpoint"] += 1
            return []
        votes = self.ckpt_votes.setdefault(m.seq, {})
        if m.sender in votes:
            return []
        votes[m.sender] = m
        return self._check_stable(m.seq, now_ms)

    def _check_stable(self, seq: int, now_ms: int) -> list[Action]:
        by_hash: dict[bytes, list[Checkpoint]] = {}
        for c in self.ckpt_votes.get(seq, {}).values():
            by_hash.setdefault(c.block_hash, []).append(c)
        for block_hash, votes in by_hash.items():
            if len(votes) >= self.vals.quorum:
                return self._set_stable(seq, block_hash, tuple(votes[: self.vals.quorum]),
                                        now_ms)
        return []

    def _checkpoint_proof_hash(self, seq: int, proof: tuple[Checkpoint, ...]) -> bytes:
        return checkpoint_proof_hash(self.vals, self.cfg.checkpoint_interval, seq, proof)

    def _set_stable(self, seq: int, block_hash: bytes, proof: tuple[Checkpoint, ...],
                    now_ms: int) -> list[Action]:
        if seq <= self.stable_seq:
            return []
        if seq <= self.executed:
            mine = self.own_ckpts.get(seq)
            assert mine is None or mine == block_hash, f"our block {seq} differs from a quorum"
        self.stable_seq, self.stable_hash, self.stable_proof = seq, block_hash, proof
        deletes = [f"entry/{s:020d}" for s in self.log if s <= seq]
        deletes += [f"ckpt/{s:020d}" for s in self.own_ckpts if s < seq]
        self.log = {s: e for s, e in self.log.items() if s > seq}
        self.ckpt_votes = {s: v for s, v in self.ckpt_votes.items() if s > seq}
        self.own_ckpts = {s: h for s, h in self.own_ckpts.items() if s >= seq}
        self.next_seq = max(self.next_seq, seq + 1)
        record = codec.encode([seq, block_hash, [c.env.to_wire() for c in proof]])
        out: list[Action] = [Persist(puts=(("stable", record),), deletes=tuple(deletes)),
                             Note("checkpoint_stable", {"seq": seq})]
        out += self._maybe_fetch(now_ms)
        return out + self._maybe_propose(now_ms, force=False)

    # ------------------------------------------------------------ view change

    def _on_request_timeout(self, now_ms: int) -> list[Action]:
        if not self.active or not self.pending:
            return []
        if self._peer_ahead(now_ms) is not None:
            # We are the one behind, not the primary: catch up before accusing.
            self.stats["request_timeout_lagging"] += 1
            out = self._maybe_fetch(now_ms, force=True)
            return [*out, self._set(TIMER_REQUEST, now_ms + self.cfg.request_timeout_ms)]
        return self._start_view_change(self.view + 1, now_ms)

    def _on_new_view_timeout(self, now_ms: int) -> list[Action]:
        if self.active:
            return []
        self.vc_attempts += 1
        return self._start_view_change(self.view + 1, now_ms)

    def _start_view_change(self, new_view: int, now_ms: int) -> list[Action]:
        assert new_view > self.view or (new_view == self.view and self.active)
        self.view, self.active, self.new_view_msg = new_view, False, None
        for entry in self.log.values():
            entry.reset_view()
        prepared = tuple(e.prepared_cert for e in sorted(self.log.values(), key=lambda e: e.seq)
                         if e.prepared_cert is not None and e.seq > self.stable_seq)
        vc = ViewChange.create(self.signer, self.cfg.chain_id, self.me, new_view,
                               self.stable_seq, self.stable_proof, prepared)
        self.vc_latest[self.me] = vc
        self.stats["view_changes_started"] += 1
        out: list[Action] = [self._cancel(TIMER_REQUEST), self._cancel(TIMER_BATCH),
                             self._cancel(TIMER_NEW_VIEW),
                             Persist(puts=(("view", codec.encode([new_view, False])),)),
                             Broadcast(vc.frame()),
                             Note("view_change_started", {"view": new_view})]
        return out + self._check_view_change_quorum(now_ms)

    def _on_view_change(self, m: ViewChange, _extra: Any, now_ms: int) -> list[Action]:
        if m.new_view <= self.view and self.active:
            return self._help_laggard(m.sender, m.new_view)
        prev = self.vc_latest.get(m.sender)
        if prev is not None and prev.new_view >= m.new_view:
            return []
        self._validate_view_change(m)
        self.vc_latest[m.sender] = m
        higher = sorted((v.new_view for s, v in self.vc_latest.items()
                         if s != self.me and v.new_view > self.view), reverse=True)
        out: list[Action] = []
        if len(higher) >= self.vals.weak_quorum:
            target = higher[self.vals.weak_quorum - 1]
            if target > self.view:
                out += self._start_view_change(target, now_ms)
        if not self.active and m.new_view >= self.view:
            out += self._check_view_change_quorum(now_ms)
        return out

    def _help_laggard(self, peer: str, their_view: int) -> list[Action]:
        if self.new_view_msg is not None and their_view <= self.view:
            return [Send(peer, self.new_view_msg.frame())]
        return []

    def _validate_view_change(self, m: ViewChange) -> None:
        self._checkpoint_proof_hash(m.stable_seq, m.checkpoint_proof)
        seen: set[int] = set()
        for cert in m.prepared:
            pp = cert.pre_prepare
            if pp.view >= m.new_view or pp.seq in seen:
                raise ProtocolError("bad_view_change", "prepared cert view or seq")
            if not m.stable_seq < pp.seq <= m.stable_seq + self.cfg.watermark_window:
                raise ProtocolError("bad_view_change", "prepared cert outside the window")
            seen.add(pp.seq)
            self._validate_prepared_cert(cert)

    def _validate_prepared_cert(self, cert: PreparedCert) -> None:
        pp = cert.pre_prepare
        if pp.sender != self.vals.primary(pp.view):
            raise ProtocolError("bad_prepared_cert", "pre-prepare not from that view's primary")
        if cert.batch.seq != pp.seq or cert.batch.digest(self.cfg.chain_id) != pp.digest:
            raise ProtocolError("bad_prepared_cert", "batch does not match the pre-prepare")
        senders = {p.sender for p in cert.prepares}
        if len(senders) != len(cert.prepares) or len(senders) < self.vals.quorum - 1:
            raise ProtocolError("bad_prepared_cert", "too few or repeated prepares")
        if pp.sender in senders:
            raise ProtocolError("bad_prepared_cert", "the primary cannot prepare")
        for p in cert.prepares:
            if (p.view, p.seq, p.digest) != (pp.view, pp.seq, pp.digest):
                raise ProtocolError("bad_prepared_cert", "prepares do not match")

    def _check_view_change_quorum(self, now_ms: int) -> list[Action]:
        """Start the NEW-VIEW timer once q replicas have left the old view.

        Replicas whose latest VIEW-CHANGE is for a *higher* view count too:
        counting only exact matches deadlocks when one replica has already
        moved on (q-1 wait for a view nobody else will time out of).  The
        NEW-VIEW itself still needs q view changes for exactly this view.
        """
        if self.active:
            return []
        moved_on = [v for v in self.vc_latest.values() if v.new_view >= self.view]
        if len(moved_on) < self.vals.quorum:
            return []
        vcs = [v for v in moved_on if v.new_view == self.view]
        out: list[Action] = []
        if TIMER_NEW_VIEW not in self.timers:
            exp = min(self.vc_attempts, self.cfg.view_change_backoff_exp_max)
            wait_ms = self.cfg.view_change_timeout_ms * (2 ** exp)
            # The note makes the exponential backoff observable in the log:
            # when the next primary also fails, its timer shows the doubling.
            out += [self._set(TIMER_NEW_VIEW, now_ms + wait_ms),
                    Note("new_view_timer_set", {"view": self.view, "timeout_ms": wait_ms})]
        if self.is_primary and self.new_view_sent < self.view and len(vcs) >= self.vals.quorum:
            out += self._send_new_view(vcs, now_ms)
        return out

    def _send_new_view(self, vcs: list[ViewChange], now_ms: int) -> list[Action]:
        chosen = sorted(vcs, key=lambda v: (v.sender != self.me, v.sender))[: self.vals.quorum]
        plan = self._plan_new_view(self.view, chosen)
        pps = tuple(PrePrepare.create(self.signer, self.cfg.chain_id, self.me, self.view, seq,
                                      batch.digest(self.cfg.chain_id))
                    for seq, batch in plan.batches)
        nv = NewView.create(self.signer, self.cfg.chain_id, self.me, self.view, tuple(chosen),
                            pps)
        self.new_view_sent = self.view
        persist, rest = self._install_new_view(nv, plan, now_ms)
        return [persist, Broadcast(nv.frame()), *rest]

    def _on_new_view(self, m: NewView, _extra: Any, now_ms: int) -> list[Action]:
        if m.view < self.view or (m.view == self.view and self.active):
            return []
        if m.sender != self.vals.primary(m.view):
            raise ProtocolError("bad_new_view", "not from the new view's primary")
        senders = {v.sender for v in m.view_changes}
        if len(senders) != len(m.view_changes) or len(senders) < self.vals.quorum:
            raise ProtocolError("bad_new_view", "too few or repeated view changes")
        for vc in m.view_changes:
            if vc.new_view != m.view:
                raise ProtocolError("bad_new_view", "view change for another view")
            self._validate_view_change(vc)
        plan = self._plan_new_view(m.view, list(m.view_changes))
        expected = [(seq, b.digest(self.cfg.chain_id)) for seq, b in plan.batches]
        got = [(pp.seq, pp.digest) for pp in m.pre_prepares]
        if got != expected or any(pp.view != m.view or pp.sender != m.sender
                                  for pp in m.pre_prepares):
            raise ProtocolError("bad_new_view", "pre-prepares differ from the view changes")
        if m.view > self.view:
            for entry in self.log.values():
                entry.reset_view()
        persist, rest = self._install_new_view(m, plan, now_ms)
        return [persist, *rest]

    @dataclass(frozen=True, slots=True)
    class _Plan:
        min_s: int
        min_hash: bytes
        proof: tuple[Checkpoint, ...]
        batches: tuple[tuple[int, Batch], ...]

    def _plan_new_view(self, view: int, vcs: list[ViewChange]) -> Replica._Plan:
        """The paper's O: from q view changes, the batches the new view re-issues."""
        base = max(vcs, key=lambda v: v.stable_seq)
        min_s = base.stable_seq
        min_hash = self._checkpoint_proof_hash(min_s, base.checkpoint_proof)
        best: dict[int, PreparedCert] = {}
        for vc in vcs:
            for cert in vc.prepared:
                seq = cert.pre_prepare.seq
                cur = best.get(seq)
                key = (cert.pre_prepare.view, cert.pre_prepare.digest)
                if seq > min_s and (cur is None or key > (cur.pre_prepare.view,
                                                          cur.pre_prepare.digest)):
                    best[seq] = cert
        max_s = max(best, default=min_s)
        primary = self.vals.primary(view)
        batches = tuple(
            (seq, best[seq].batch if seq in best else Batch.null(seq, view, primary))
            for seq in range(min_s + 1, max_s + 1))
        return Replica._Plan(min_s, min_hash, base.checkpoint_proof, batches)

    def _install_new_view(self, nv: NewView, plan: Replica._Plan,
                          now_ms: int) -> tuple[Persist, list[Action]]:
        self.view, self.active, self.new_view_msg = nv.view, True, nv
        self.stats["new_views_installed"] += 1
        rest: list[Action] = [self._cancel(TIMER_NEW_VIEW),
                              Note("new_view_installed", {"view": nv.view})]
        # Sequence numbers the new view re-issues must be claimed before
        # anything below can propose, or the primary would reuse one.
        last = plan.batches[-1][0] if plan.batches else plan.min_s
        self.next_seq = max(last, self.stable_seq, plan.min_s, self.next_exec - 1) + 1
        # Backups require each batch's time to follow the previous batch's, and
        # a re-issued batch may carry an old primary's (future-dated) time.
        self.last_proposed_time_ms = max([self.last_proposed_time_ms,
                                          *(b.time_ms for _, b in plan.batches)])
        in_plan = {s.key for _, batch in plan.batches for s in batch.subs}
        # A submission known only from a pre-prepare the new view dropped is
        # not ours to push: the new primary may never have seen it (a
        # Byzantine primary can plant one per backup), so keeping it pending
        # would accuse an honest primary.  Its origin still holds it and
        # keeps pushing it; submissions we got from their origin stay.
        for key in self.via_pre_prepare - in_plan:
            self.pending.pop(key, None)
        self.via_pre_prepare &= in_plan
        # A new primary is judged from now on, not by what its predecessor did.
        self.arrived_ms = OrderedDict((k, now_ms) for k in self.arrived_ms)
        self.unproposed = OrderedDict((k, s) for k, s in self.pending.items()
                                      if k not in in_plan)
        # The new primary may have missed our own: push them in one tick.
        self.own_unordered = OrderedDict(
            (k, now_ms - self.cfg.status_interval_ms) for k in self.unproposed if k[0] == self.me)
        puts: list[tuple[str, bytes]] = [("view", codec.encode([nv.view, True]))]
        votes: list[Action] = []
        for pp, (seq, batch) in zip(nv.pre_prepares, plan.batches, strict=True):
            if seq <= max(self.stable_seq, plan.min_s):
                continue
            entry = self._entry(seq)
            entry.pp, entry.batch, entry.touched_ms = pp, batch, now_ms
            if not self.is_primary:
                prep = Prepare.create(self.signer, self.cfg.chain_id, self.me, self.view, seq,
                                      pp.digest)
                entry.prepares[self.me] = prep
                entry.sent_prepare = True
                votes.append(Broadcast(prep.frame()))
            puts.append(self._entry_record(entry))
        rest = votes + rest
        if plan.min_s > self.stable_seq:
            rest += self._set_stable(plan.min_s, plan.min_hash, plan.proof, now_ms)
        for entry in list(self.log.values()):
            rest += self._check_prepared(entry, now_ms)
        rest += self._replay_future(now_ms)
        rest += self._arm_request_timer(now_ms)
        rest += self._maybe_propose(now_ms, force=False)
        return Persist(puts=tuple(puts)), rest

    def _replay_future(self, now_ms: int) -> list[Action]:
        queued, self.future = self.future, {}
        out: list[Action] = []
        for queue in queued.values():
            for m, extra in queue:
                if m.view < self.view:  # type: ignore[attr-defined]
                    continue
                try:
                    out += self._handlers[type(m)](m, extra, now_ms)
                except ProtocolError as exc:
                    self.stats["rejected_" + exc.reason] += 1
        return out

    # --------------------------------------------- status, catch-up, fetch

    def _on_status_timeout(self, now_ms: int) -> list[Action]:
        status = Status.create(self.signer, self.cfg.chain_id, self.me, self.view, self.active,
                               self.executed, self.stable_seq)
        out: list[Action] = [Broadcast(status.frame())]
        if not self.active:
            if self.me in self.vc_latest:
                out.append(Broadcast(self.vc_latest[self.me].frame()))
        else:
            out += self._retransmit(now_ms)
        out.append(self._set(TIMER_STATUS, now_ms + self.cfg.status_interval_ms))
        return out + self._maybe_fetch(now_ms)

    def _retransmit(self, now_ms: int) -> list[Action]:
        """Re-send our votes for entries stuck longer than a status interval."""
        out: list[Action] = []
        stale = now_ms - self.cfg.status_interval_ms
        for seq in range(self.next_exec, self.next_exec + self.cfg.pipeline_depth_max):
            entry = self.log.get(seq)
            if entry is None or entry.pp is None or entry.touched_ms > stale:
                continue
            if self.is_primary and entry.batch is not None and entry.pp.sender == self.me:
                out.append(Broadcast(entry.pp.frame(entry.batch.to_wire())))
            mine = entry.prepares.get(self.me)
            if mine is not None:
                out.append(Broadcast(mine.frame()))
            commit = entry.commits.get(self.me)
            if commit is not None:
                out.append(Broadcast(commit.frame()))
            entry.touched_ms = now_ms
        return out + self._push_own_submissions(now_ms)

    def _push_own_submissions(self, now_ms: int) -> list[Action]:
        """Send the primary again our own submissions it has not ordered.

        Only a submission's origin may send it (the signature is the
        origin's and links check the sender), so when the one copy to the
        primary is lost, nobody else can repair it: the backups that got
        it would time out and accuse an honest primary, and under load,
        where every execution re-arms their timer, the request would wait
        forever.  Pushed once it has waited half a status interval (so
        before the backups' ``request_timeout_ms``), at most
        ``PUSH_SUBMISSIONS_MAX`` a tick; a primary that has it drops the copy.
        """
        if self.is_primary or not self.own_unordered:
            return []
        primary = self.vals.primary(self.view)
        due = now_ms - self.cfg.status_interval_ms // 2
        out: list[Action] = []
        for key, sent_ms in list(self.own_unordered.items()):
            sub = self.pending.get(key)
            if sub is None:
                del self.own_unordered[key]
                continue
            if sent_ms > due:
                continue
            out.append(Send(primary, sub.frame()))
            self.own_unordered[key] = now_ms
            if len(out) >= PUSH_SUBMISSIONS_MAX:
                break
        self.stats["submissions_pushed"] += len(out)
        return out

    def _on_status(self, m: Status, _extra: Any, now_ms: int) -> list[Action]:
        self.peer_status[m.sender] = m
        out: list[Action] = []
        if self.active and (m.view < self.view or (m.view == self.view and not m.active)):
            out += self._help_laggard(m.sender, m.view)
        return out + self._maybe_fetch(now_ms)

    def _peer_ahead(self, now_ms: int) -> str | None:
        """A peer that executed more than us, when we are stuck or out of window."""
        stuck = now_ms - self.last_progress_ms >= self.cfg.status_interval_ms
        best: tuple[int, str] | None = None
        for peer, st in self.peer_status.items():
            far = st.stable_seq >= self.stable_seq + self.cfg.watermark_window
            ahead = st.executed >= self.next_exec and (stuck or far)
            if ahead and (best is None or st.executed > best[0]):
                best = (st.executed, peer)
        return best[1] if best else None

    def _maybe_fetch(self, now_ms: int, force: bool = False) -> list[Action]:
        if self.fetch_inflight is not None:
            return []
        if self.next_exec <= self.stable_seq:
            peer = self._fetch_peer_for(self.stable_seq)
            target = self.stable_seq
        else:
            peer = self._peer_ahead(now_ms) if not force else self._best_peer()
            target = self.peer_status[peer].executed if peer else 0
        if peer is None or target < self.next_exec:
            return []
        hi = min(target, self.next_exec + self.cfg.limits.blocks_per_reply_max - 1)
        self.fetch_inflight = (peer, self.next_exec, hi)
        msg = Fetch.create(self.signer, self.cfg.chain_id, self.me, self.next_exec, hi)
        self.stats["fetches_sent"] += 1
        return [Send(peer, msg.frame()), self._set(TIMER_FETCH, now_ms + self.cfg.fetch_timeout_ms),
                Note("fetch", {"peer": peer, "from": self.next_exec, "to": hi})]

    def _best_peer(self) -> str | None:
        ahead = [(st.executed, p) for p, st in self.peer_status.items()
                 if st.executed >= self.next_exec]
        return max(ahead)[1] if ahead else None

    def _fetch_peer_for(self, seq: int) -> str | None:
        """Prefer a peer reporting it executed ``seq``, else a proof signer."""
        for peer, st in sorted(self.peer_status.items()):
            if st.executed >= seq and peer != self.me:
                return peer
        signers = sorted(c.sender for c in self.stable_proof if c.sender != self.me)
        if not signers:
            return None
        return signers[(self.stats["fetches_sent"] + seq) % len(signers)]

    def _on_fetch_timeout(self, now_ms: int) -> list[Action]:
        if self.fetch_inflight is not None:
            self.peer_status.pop(self.fetch_inflight[0], None)
            self.stats["fetch_timeouts"] += 1
        self.fetch_inflight = None
        return self._maybe_fetch(now_ms)

    def _on_fetch(self, m: Fetch, _extra: Any, _now_ms: int) -> list[Action]:
        return serve_fetch(m, self.executed, self.cfg.limits.blocks_per_reply_max,
                           self.stable_proof)

    def _on_blocks(self, m: Blocks, extra: Any, now_ms: int) -> list[Action]:
        msg = m.with_extra(extra, self.wire)
        out: list[Action] = []
        if msg.checkpoint_proof:
            seq = msg.checkpoint_proof[0].seq
            block_hash = self._checkpoint_proof_hash(seq, msg.checkpoint_proof)
            if seq > self.stable_seq:
                out += self._set_stable(seq, block_hash, msg.checkpoint_proof, now_ms)
        # Check first, then apply: a bad certificate late in the reply must not
        # leave earlier blocks half-applied (next_exec moved, Execute lost).
        valid, expected = [], self.next_exec
        for block in msg.blocks:
            if block.batch.seq != expected:
                continue
            try:
                self._check_commit_cert(block)
            except ProtocolError as exc:
                self.stats["rejected_" + exc.reason] += 1
                break
            valid.append(block)
            expected += 1
        for block in valid:
            out += self._dispatch(block.batch, block.commits, now_ms, fetched=True)
        inflight = self.fetch_inflight
        if inflight is not None and inflight[0] == m.sender:
            if self.next_exec <= inflight[1]:
                self.peer_status.pop(m.sender, None)  # it had nothing for us
            self.fetch_inflight = None
            out.append(self._cancel(TIMER_FETCH))
            out += self._maybe_fetch(now_ms)
        return out

    def _check_commit_cert(self, block: CommittedBlock) -> None:
        check_commit_cert(self.vals, self.cfg.chain_id, block)

    # ------------------------------------------------------------ persistence

    def _entry_record(self, entry: _Entry) -> tuple[str, bytes]:
        """The entry as one record.  A prepared certificate for this record's
        own pre-prepare and batch is stored as ``[None, None, prepares]``:
        the batch, by far the largest part, is written once, not twice."""
        cert = entry.prepared_cert
        if cert is None:
            prepared = None
        elif entry.pp is not None and cert.pre_prepare is entry.pp and cert.batch is entry.batch:
            prepared = [None, None, [p.env.to_wire() for p in cert.prepares]]
        else:
            prepared = cert.to_wire()
        value = {
            "pp": entry.pp.env.to_wire() if entry.pp else None,
            "batch": entry.batch.to_wire() if entry.batch and entry.pp else None,
            "prepared": prepared,
            "sp": entry.sent_prepare,
            "sc": entry.sent_commit,
        }
        return (f"entry/{entry.seq:020d}", codec.encode(value))

    def _persist_entry(self, entry: _Entry) -> Persist:
        return Persist(puts=(self._entry_record(entry),))

    def _restore(self, records: Mapping[str, bytes]) -> None:
        """Rebuild from our own persisted records (trusted, but re-parsed)."""
        size = self.cfg.limits.frame_bytes_max * 4
        if "view" in records:
            self.view, self.active = codec.decode(records["view"], size_max=size)
        if SID_RECORD in records:
            self.sids.restore(records[SID_RECORD], size)
        if "stable" in records:
            seq, block_hash, proof = codec.decode(records["stable"], size_max=size)
            self.stable_seq, self.stable_hash = seq, block_hash
            self.stable_proof = tuple(self.wire.open_envelope(e, Checkpoint) for e in proof)  # type: ignore[misc]
            self.next_seq = max(self.next_seq, seq + 1)
        for key, value in records.items():
            if key.startswith("ckpt/"):
                self.own_ckpts[int(key[5:])] = value
            elif key.startswith("entry/"):
                self._restore_entry(int(key[6:]), codec.decode(value, size_max=size))
        if not self.active:
            prepared = tuple(e.prepared_cert for _, e in sorted(self.log.items())
                             if e.prepared_cert is not None)
            self.vc_latest[self.me] = ViewChange.create(
                self.signer, self.cfg.chain_id, self.me, self.view, self.stable_seq,
                self.stable_proof, prepared)

    def _restore_entry(self, seq: int, rec: dict[str, Any]) -> None:
        if seq <= self.stable_seq:
            return
        entry = self._entry(seq)
        pp: PrePrepare | None = None
        batch: Batch | None = None
        if rec["pp"] is not None:
            pp = self.wire.open_envelope(rec["pp"], PrePrepare)  # type: ignore[assignment]
            assert isinstance(pp, PrePrepare)
            batch = Batch.parse(rec["batch"], self.wire)
        if rec["prepared"] is not None:
            pp_raw, batch_raw, preps = rec["prepared"]
            if pp_raw is None:  # this record's own pre-prepare and batch (_entry_record)
                assert pp is not None and batch is not None
                cert_pp, cert_batch = pp, batch
            else:
                cert_pp = self.wire.open_envelope(pp_raw, PrePrepare)  # type: ignore[assignment]
                cert_batch = Batch.parse(batch_raw, self.wire)
            entry.prepared_cert = PreparedCert(
                cert_pp, cert_batch,
                tuple(self.wire.open_envelope(p, Prepare) for p in preps))  # type: ignore[misc]
        if pp is None or batch is None or pp.view != self.view:
            return
        entry.pp, entry.batch = pp, batch
        if pp.sender == self.me:
            self.next_seq = max(self.next_seq, seq + 1)
            self.last_proposed_time_ms = max(self.last_proposed_time_ms, entry.batch.time_ms)
        if rec["sp"]:
            entry.sent_prepare = True
            entry.prepares[self.me] = Prepare.create(self.signer, self.cfg.chain_id, self.me,
                                                     pp.view, seq, pp.digest)
        if rec["sc"]:
            entry.sent_commit = True
            entry.commits[self.me] = Commit.create(self.signer, self.cfg.chain_id, self.me,
                                                   pp.view, seq, pp.digest)

    # ------------------------------------------------------------ timers

    def _set(self, name: str, at_ms: int) -> SetTimer:
        self.timers[name] = at_ms
        return SetTimer(name, at_ms)

    def _cancel(self, name: str) -> CancelTimer:
        self.timers.pop(name, None)
        return CancelTimer(name)
