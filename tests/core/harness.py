"""Helpers for stepping one Replica by hand, as etcd raft's raft_paper_test.go.

A ``Peers`` object holds a validator set with deterministic keys and can forge
any message from any member (they are all "us" in a test).  A test builds one
replica, feeds it forged messages and asserts on the actions it returns.
``Shell`` is the minimal shell of actions.py: it applies persists to a dict
of records and executes blocks with ``chain.execute_batch``, reporting back
with ``on_executed``; it is what crash-recovery and checkpoint tests need.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pbftd.core.actions import (
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
from pbftd.core.chain import ChainTip, ExecutedBlock, RequestKey, execute_batch
from pbftd.core.crypto import Signer, Verifier, sha256
from pbftd.core.messages import (
    Batch,
    Blocks,
    Checkpoint,
    Commit,
    CommittedBlock,
    Fetch,
    Message,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    Request,
    Status,
    Submit,
    ViewChange,
)
from pbftd.core.replica import ExecutedTip, Replica, ReplicaConfig
from pbftd.core.validators import ValidatorSet

__all__ = [
    "CHAIN_ID",
    "GENESIS_HASH",
    "GENESIS_TIME_MS",
    "NOW",
    "CountingVerifier",
    "Peers",
    "Shell",
    "actions_of",
    "check_invariants",
    "decode_broadcasts",
    "first_index",
    "make_config",
    "sends_anything",
    "signer_for",
]

CHAIN_ID = "pbftd-test"
GENESIS_HASH = sha256(b"pbftd-test genesis")
GENESIS_TIME_MS = 1_000
NOW = 1_000_000  # the clock every test starts at, in ms

A = TypeVar("A")

STATE_CHANGING = (Send, Broadcast, Persist, Execute, ServeBlocks, SetTimer, CancelTimer)


class CountingVerifier(Verifier):
    """A Verifier that counts its Ed25519 verifies (tests of what is not checked twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
        self.calls += 1
        return super().verify(public_key, data, signature)


def signer_for(i: int) -> Signer:
    return Signer.from_seed(sha256(f"test-{i}".encode()))


def make_config(**overrides: Any) -> ReplicaConfig:
    """Small numbers so a handful of messages reach checkpoints and windows."""
    values: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "checkpoint_interval": 4,
        "watermark_window": 8,
        "batch_wait_ms": 0,
        "pipeline_depth_max": 4,
        "partial_depth_max": 4,  # most rule tests pipeline partial batches
        "request_timeout_ms": 1_000,
        "view_change_timeout_ms": 2_000,
        "status_interval_ms": 500,
        "fetch_timeout_ms": 1_000,
        "block_time_skew_max_ms": 10_000,
    }
    values.update(overrides)
    return ReplicaConfig(**values)


# --------------------------------------------------------------------------
# actions


def actions_of(actions: Iterable[Action], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def first_index(actions: Sequence[Action], kind: type, start: int = 0) -> int:
    for i in range(start, len(actions)):
        if isinstance(actions[i], kind):
            return i
    raise AssertionError(f"no {kind.__name__} in {[type(a).__name__ for a in actions]}")


def sends_anything(actions: Iterable[Action]) -> bool:
    return any(isinstance(a, STATE_CHANGING) for a in actions)


def decode_broadcasts(replica: Replica, actions: Iterable[Action],
                      kind: type[A] | None = None) -> list[A]:
    """Open every Broadcast frame with the replica's own wire (checks it, too)."""
    out = []
    for a in actions:
        if isinstance(a, Broadcast):
            msg, _extra = replica.wire.open(a.frame)
            if kind is None or isinstance(msg, kind):
                out.append(msg)
    return out


def opened_broadcasts(replica: Replica, actions: Iterable[Action],
                      kind: type[A]) -> list[tuple[A, Any]]:
    """Like decode_broadcasts, with each frame's unsigned ``extra`` (a batch)."""
    out = []
    for a in actions:
        if isinstance(a, Broadcast):
            msg, extra = replica.wire.open(a.frame)
            if isinstance(msg, kind):
                out.append((msg, extra))
    return out


def decode_sends(replica: Replica, actions: Iterable[Action],
                 kind: type[A] | None = None) -> list[tuple[str, A]]:
    out = []
    for a in actions:
        if isinstance(a, Send):
            msg, _extra = replica.wire.open(a.frame)
            if kind is None or isinstance(msg, kind):
                out.append((a.to, msg))
    return out


def notes(actions: Iterable[Action], event: str) -> list[Note]:
    return [a for a in actions if isinstance(a, Note) and a.event == event]


def rejected(replica: Replica) -> int:
    return sum(v for k, v in replica.stats.items() if k.startswith("rejected_"))


def check_invariants(r: Replica) -> None:
    """What must hold after every step, whatever peers sent (raft checks these
    after each Step; TigerBeetle asserts them)."""
    window = r.cfg.watermark_window
    assert all(r.stable_seq < s <= r.stable_seq + window for s in r.log), (
        f"log {sorted(r.log)} outside ({r.stable_seq}, {r.stable_seq + window}]")
    assert r.executed <= r.next_exec - 1, (r.executed, r.next_exec)
    assert r.next_seq >= r.next_exec, (r.next_seq, r.next_exec)
    for seq, e in r.log.items():
        if e.sent_commit or e.committed:
            assert e.prepared_cert is not None, f"seq {seq} committed without a prepared cert"
        if e.pp is not None and r.active:
            assert e.pp.view == r.view, f"seq {seq} holds a pre-prepare of view {e.pp.view}"
        if e.pp is not None and e.batch is not None:
            assert e.batch.digest(r.cfg.chain_id) == e.pp.digest, f"seq {seq} batch/digest"
    if not r.active:
        assert r.vc_latest[r.me].new_view == r.view, "in a view change without our VIEW-CHANGE"
    assert r.arrived_ms.keys() <= r.pending.keys(), "arrival kept for a submission not pending"


# --------------------------------------------------------------------------
# a validator set whose every member we can impersonate


class Peers:
    """n validators n0..n{n-1}; forges any member's messages."""

    def __init__(self, n: int = 4, **config: Any) -> None:
        self.n = n
        self.ids = [f"n{i}" for i in range(n)]
        self.signers = {f"n{i}": signer_for(i) for i in range(n)}
        self.vals = ValidatorSet.of([(i, self.signers[i].public_key) for i in self.ids])
        self.cfg = make_config(**config)
        self.chain = self.cfg.chain_id
        self._sid: dict[str, int] = {}

    @property
    def f(self) -> int:
        return self.vals.f

    @property
    def q(self) -> int:
        return self.vals.quorum

    def primary(self, view: int) -> str:
        return self.vals.primary(view)

    def backups(self, view: int, *, exclude: Iterable[str] = ()) -> list[str]:
        skip = {self.primary(view), *exclude}
        return [i for i in self.ids if i not in skip]

    def replica(self, node: str, now_ms: int = NOW,
                records: dict[str, bytes] | None = None,
                tip: ExecutedTip | None = None) -> Replica:
        r = Replica(self.cfg, self.vals, node, self.signers[node], Verifier())
        r.start(now_ms, records, tip)
        return r

    # ------------------------------------------------------------ requests

    def submit(self, origin: str, *payloads: bytes, sid: int | None = None,
               client: str = "client") -> Submit:
        if sid is None:
            sid = self._sid.get(origin, 0) + 1
        self._sid[origin] = max(self._sid.get(origin, 0), sid)
        reqs = tuple(Request(client, f"{origin}-{sid}-{k}", p)
                     for k, p in enumerate(payloads or (b"x",)))
        return Submit.create(self.signers[origin], self.chain, origin, sid, reqs)

    def batch(self, seq: int, view: int = 0, subs: Sequence[Submit] | None = None,
              time_ms: int | None = None, proposer: str | None = None) -> Batch:
        if subs is None:
            subs = (self.submit(self.ids[2]),)
        return Batch(seq, view, proposer or self.primary(view),
                     NOW + seq if time_ms is None else time_ms, tuple(subs))

    def digest(self, batch: Batch) -> bytes:
        return batch.digest(self.chain)

    # ------------------------------------------------------------ votes

    def pre_prepare(self, batch: Batch, view: int | None = None, sender: str | None = None,
                    seq: int | None = None, digest: bytes | None = None) -> PrePrepare:
        view = batch.view if view is None else view
        sender = sender or self.primary(view)
        return PrePrepare.create(self.signers[sender], self.chain, sender, view,
                                 batch.seq if seq is None else seq,
                                 self.digest(batch) if digest is None else digest)

    def prepare(self, sender: str, view: int, seq: int, digest: bytes) -> Prepare:
        return Prepare.create(self.signers[sender], self.chain, sender, view, seq, digest)

    def commit(self, sender: str, view: int, seq: int, digest: bytes) -> Commit:
        return Commit.create(self.signers[sender], self.chain, sender, view, seq, digest)

    def checkpoint(self, sender: str, seq: int, block_hash: bytes) -> Checkpoint:
        return Checkpoint.create(self.signers[sender], self.chain, sender, seq, block_hash)

    def checkpoint_proof(self, seq: int, block_hash: bytes,
                         signers: Sequence[str] | None = None) -> tuple[Checkpoint, ...]:
        signers = signers if signers is not None else self.ids[: self.q]
        return tuple(self.checkpoint(s, seq, block_hash) for s in signers)

    def prepared_cert(self, batch: Batch, view: int | None = None,
                      preparers: Sequence[str] | None = None) -> PreparedCert:
        view = batch.view if view is None else view
        pp = self.pre_prepare(batch, view=view)
        digest = self.digest(batch)
        preparers = preparers if preparers is not None else self.backups(view)[: self.q - 1]
        return PreparedCert(pp, batch, tuple(self.prepare(s, view, batch.seq, digest)
                                             for s in preparers))

    def commit_cert(self, batch: Batch, view: int | None = None,
                    senders: Sequence[str] | None = None) -> tuple[Commit, ...]:
        view = batch.view if view is None else view
        senders = senders if senders is not None else self.ids[: self.q]
        return tuple(self.commit(s, view, batch.seq, self.digest(batch)) for s in senders)

    # ------------------------------------------------------------ view change

    def view_change(self, sender: str, new_view: int, stable_seq: int = 0,
                    proof: tuple[Checkpoint, ...] = (),
                    prepared: Sequence[PreparedCert] = ()) -> ViewChange:
        return ViewChange.create(self.signers[sender], self.chain, sender, new_view,
                                 stable_seq, proof, tuple(prepared))

    def new_view(self, view: int, vcs: Sequence[ViewChange],
                 batches: Sequence[Batch] = (), sender: str | None = None) -> NewView:
        """NEW-VIEW whose pre-prepares re-issue ``batches`` in ``view``."""
        sender = sender or self.primary(view)
        pps = tuple(PrePrepare.create(self.signers[sender], self.chain, sender, view, b.seq,
                                      self.digest(b)) for b in batches)
        return NewView.create(self.signers[sender], self.chain, sender, view, tuple(vcs), pps)

    # ------------------------------------------------------------ the rest

    def status(self, sender: str, view: int = 0, active: bool = True, executed: int = 0,
               stable_seq: int = 0) -> Status:
        return Status.create(self.signers[sender], self.chain, sender, view, active, executed,
                             stable_seq)

    def fetch(self, sender: str, lo: int, hi: int) -> Fetch:
        return Fetch.create(self.signers[sender], self.chain, sender, lo, hi)

    def blocks(self, sender: str, proof: tuple[Checkpoint, ...],
               blocks: Sequence[CommittedBlock]) -> Blocks:
        return Blocks.create(self.signers[sender], self.chain, sender, proof, tuple(blocks))

    # ------------------------------------------------------------ delivery

    @staticmethod
    def deliver(replica: Replica, msg: Message, extra: Any = None, now_ms: int = NOW,
                via: str | None = None) -> list[Action]:
        """Hand ``msg`` to ``replica`` as if it arrived on the link from its sender."""
        frame = msg.frame(extra)
        out = replica.on_message(via or msg.sender, frame, now_ms)
        check_invariants(replica)
        return out

    def deliver_pre_prepare(self, replica: Replica, batch: Batch, view: int | None = None,
                            now_ms: int = NOW) -> list[Action]:
        pp = self.pre_prepare(batch, view=view)
        return self.deliver(replica, pp, batch.to_wire(), now_ms)

    def prepare_at(self, replica: Replica, batch: Batch, view: int | None = None,
                   now_ms: int = NOW) -> list[Action]:
        """Deliver the pre-prepare and enough PREPAREs from other backups to prepare."""
        view = batch.view if view is None else view
        out = []
        if replica.me != self.primary(view):
            out += self.deliver_pre_prepare(replica, batch, view, now_ms)
        own = 0 if replica.me == self.primary(view) else 1
        for s in self.backups(view, exclude=[replica.me])[: self.q - 1 - own]:
            out += self.deliver(replica, self.prepare(s, view, batch.seq, self.digest(batch)),
                                now_ms=now_ms)
        return out

    def commit_at(self, replica: Replica, batch: Batch, view: int | None = None,
                  now_ms: int = NOW) -> list[Action]:
        """Prepare, then deliver COMMITs from q-1 others: committed-local."""
        view = batch.view if view is None else view
        out = self.prepare_at(replica, batch, view, now_ms)
        others = [i for i in self.ids if i != replica.me][: self.q - 1]
        for s in others:
            out += self.deliver(replica, self.commit(s, view, batch.seq, self.digest(batch)),
                                now_ms=now_ms)
        return out


# --------------------------------------------------------------------------
# a minimal shell


@dataclass
class Shell:
    """Performs a replica's actions as the daemon would, minus the network."""

    replica: Replica
    records: dict[str, bytes] = field(default_factory=dict)
    tip: ChainTip = field(default_factory=lambda: ChainTip.genesis(GENESIS_HASH,
                                                                   GENESIS_TIME_MS))
    executed_keys: set[RequestKey] = field(default_factory=set)
    blocks: list[tuple[ExecutedBlock, Batch, tuple[Commit, ...]]] = field(default_factory=list)
    log: list[Action] = field(default_factory=list)

    def run(self, actions: list[Action], now_ms: int = NOW) -> list[Action]:
        """Perform ``actions`` in order (executing blocks); returns all actions seen."""
        seen: list[Action] = []
        todo = list(actions)
        while todo:
            action = todo.pop(0)
            seen.append(action)
            if isinstance(action, Persist):
                for key, value in action.puts:
                    self.records[key] = value
                for key in action.deletes:
                    self.records.pop(key, None)
            elif isinstance(action, Execute):
                todo[:0] = self._execute(action, now_ms)
        self.log += seen
        check_invariants(self.replica)
        return seen

    def _execute(self, action: Execute, now_ms: int) -> list[Action]:
        block = execute_batch(self.replica.cfg.chain_id, self.tip, action.batch,
                              self.executed_keys.__contains__)
        self.blocks.append((block, action.batch, action.commits))
        self.executed_keys.update(tx.key for tx in block.fresh)
        self.tip = block.tip
        return self.replica.on_executed(block.header.height, block.block_hash,
                                        block.header.time_ms, now_ms)

    def executed_tip(self) -> ExecutedTip:
        return ExecutedTip(self.tip.height, self.tip.block_hash, self.tip.time_ms)

    def block_hash(self, height: int) -> bytes:
        return self.blocks[height - 1][0].block_hash

    def committed_blocks(self, lo: int, hi: int) -> list[CommittedBlock]:
        return [CommittedBlock(b, c) for _, b, c in self.blocks[lo - 1: hi]]


def reference_chain(chain_id: str, batches: Sequence[Batch]) -> list[ExecutedBlock]:
    """The blocks an honest replica builds from ``batches`` (from genesis)."""
    tip = ChainTip.genesis(GENESIS_HASH, GENESIS_TIME_MS)
    keys: set[RequestKey] = set()
    out = []
    for batch in batches:
        block = execute_batch(chain_id, tip, batch, keys.__contains__)
        keys.update(tx.key for tx in block.fresh)
        tip = block.tip
        out.append(block)
    return out
