"""An observer court's node: follows the chain, never votes.

Theory of operation
-------------------
Observers hold a key listed in genesis with role ``observer``.  They execute
exactly the blocks the validators committed, and trust nothing they are
handed: every block is applied only after its commit certificate (q
validators' COMMITs for its digest) checks out, and every checkpoint proof
(q validators' signed block hashes) is compared with the hash the observer
computed itself.

Blocks are pulled, not pushed: every ``poll_interval_ms`` the follower sends
FETCH to the next peer in a fixed rotation of validators and a bounded ring
of neighbouring observers (``peers``), and keeps fetching while replies come
back full.  Observers answer each other's FETCH from their own store, so a
province with a hundred observer courts costs each validator a few fetches
per interval, not a hundred uploads per block.

Writes from the observer's own clients become a SUBMIT signed by the
observer and sent to every validator, as a validator's own would be.

The object has the same shell interface as ``Replica`` (start, submit,
on_message, on_timer, on_executed, blocks_frame), so the daemon's runtime and
RPC drive either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .actions import Action, Execute, Note, Send, ServeBlocks, SetTimer
from .certs import check_commit_cert, checkpoint_proof_hash
from .crypto import Signer, Verifier
from .messages import (
    Blocks,
    Checkpoint,
    CommittedBlock,
    Fetch,
    Limits,
    ProtocolError,
    Request,
    Submit,
    Wire,
)
from .replica import ExecutedTip, serve_fetch
from .sids import SID_RECORD, SidIssuer
from .validators import ValidatorSet

__all__ = ["Follower", "FollowerConfig"]

TIMER_POLL = "poll"
TIMER_FETCH = "fetch"


@dataclass(frozen=True, slots=True)
class FollowerConfig:
    chain_id: str
    checkpoint_interval: int = 16
    poll_interval_ms: int = 500
    fetch_timeout_ms: int = 2_000
    batch_requests_max: int = 1_000
    batch_bytes_max: int = 1 << 20
    limits: Limits = field(default_factory=Limits)


class Follower:
    def __init__(self, config: FollowerConfig, validators: ValidatorSet, node_id: str,
                 signer: Signer, verifier: Verifier, submitters: Mapping[str, bytes],
                 peers: Sequence[str]) -> None:
        if node_id in validators or node_id not in submitters:
            raise ValueError(f"{node_id} is not an observer of this chain")
        if not any(p in validators for p in peers):
            raise ValueError("an observer needs at least one validator among its peers")
        self.cfg = config
        self.vals = validators
        self.me = node_id
        self.signer = signer
        self.peers = [p for p in peers if p != node_id]
        self.wire = Wire(config.chain_id, validators, verifier, config.limits, submitters)
        self.stats: Counter[str] = Counter()
        self.view = 0
        self.active = True
        self.pending: dict[Any, Any] = {}
        self.executed = 0
        self.next_exec = 1
        self.sids = SidIssuer()  # our own submissions' ids (see .sids)
        self.stable_seq = 0
        self.stable_hash = b""
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.own_hashes: dict[int, bytes] = {}
        self.fetch_inflight: tuple[str, int, int] | None = None
        self._turn = sum(node_id.encode()) % max(1, len(self.peers))
        self.timers: dict[str, int] = {}

    @property
    def primary(self) -> str:
        return self.vals.primary(self.view)

    # ------------------------------------------------------------ shell API

    def start(self, now_ms: int, records: Mapping[str, bytes] | None = None,
              tip: ExecutedTip | None = None) -> list[Action]:
        if tip is not None:
            self.executed, self.next_exec = tip.height, tip.height + 1
        if records and SID_RECORD in records:
            self.sids.restore(records[SID_RECORD], 64)
        return [self._set(TIMER_POLL, now_ms)]

    def submit(self, requests: Iterable[Request], now_ms: int) -> tuple[tuple[str, int],
                                                                        list[Action]]:
        reqs = tuple(requests)
        if not reqs:
            raise ValueError("nothing to submit")
        sid = self.sids.peek(now_ms)
        msg = Submit.create(self.signer, self.cfg.chain_id, self.me, sid, reqs)
        if len(reqs) > self.cfg.batch_requests_max or msg.size_bytes > self.cfg.batch_bytes_max:
            raise ValueError(f"a submission may hold at most {self.cfg.batch_requests_max} "
                             f"requests and {self.cfg.batch_bytes_max} bytes")
        frame = msg.frame()
        out: list[Action] = self.sids.take(sid)
        out += [Send(v, frame) for v in self.vals.ids]
        return msg.key, out

    def on_message(self, sender: str, frame: bytes, now_ms: int) -> list[Action]:
        try:
            msg, extra = self.wire.open_from(sender, frame)
            if isinstance(msg, Blocks):
                return self._on_blocks(msg.with_extra(extra, self.wire), now_ms)
            if isinstance(msg, Fetch):
                return self._on_fetch(msg)
            self.stats["ignored_" + msg.TYPE] += 1
            return []
        except ProtocolError as exc:
            self.stats["rejected_" + exc.reason] += 1
            return [Note("message_rejected", {"peer": sender, "reason": str(exc)})]

    @property
    def tick_interval_ms(self) -> int:
        """The longest the shell goes without a timer of ours to handle
        (the runtime's stall check, ``NodeRuntime._follow_stall``)."""
        return self.cfg.poll_interval_ms

    def on_resumed(self, now_ms: int) -> list[Action]:
        """The shell was not running for a while.  An observer holds no timer
        that accuses anyone, and its fetch timer simply fires: nothing to do."""
        return []

    def on_timer(self, name: str, now_ms: int) -> list[Action]:
        if self.timers.pop(name, None) is None:
            return []
        if name == TIMER_FETCH and self.fetch_inflight is not None:
            self.stats["fetch_timeouts"] += 1
            self.fetch_inflight = None
            self._turn += 1
        return self._fetch(now_ms)

    def on_executed(self, seq: int, block_hash: bytes, time_ms: int,
                    now_ms: int) -> list[Action]:
        assert seq == self.executed + 1, f"executed {seq} after {self.executed}"
        self.executed = seq
        if seq % self.cfg.checkpoint_interval == 0:
            self.own_hashes = {seq: block_hash}
        if seq == self.stable_seq and self.stable_hash:
            assert block_hash == self.stable_hash, f"block {seq} contradicts the validators"
        return []

    def blocks_frame(self, action: ServeBlocks, blocks: Iterable[CommittedBlock]) -> bytes:
        return Blocks.create(self.signer, self.cfg.chain_id, self.me, action.checkpoint_proof,
                             tuple(blocks)).frame()

    # ------------------------------------------------------------ handlers

    def _on_fetch(self, m: Fetch) -> list[Action]:
        return serve_fetch(m, self.executed, self.cfg.limits.blocks_per_reply_max,
                           self.stable_proof)

    def _on_blocks(self, m: Blocks, now_ms: int) -> list[Action]:
        if m.checkpoint_proof:
            seq = m.checkpoint_proof[0].seq
            block_hash = checkpoint_proof_hash(self.vals, self.cfg.checkpoint_interval, seq,
                                               m.checkpoint_proof)
            if seq > self.stable_seq:
                mine = self.own_hashes.get(seq)
                assert mine is None or mine == block_hash, f"block {seq} contradicts a quorum"
                self.stable_seq, self.stable_hash = seq, block_hash
                self.stable_proof = m.checkpoint_proof
        out: list[Action] = []
        expected = self.next_exec
        for block in m.blocks:
            if block.batch.seq != expected:
                continue
            try:
                check_commit_cert(self.vals, self.cfg.chain_id, block)
            except ProtocolError as exc:
                self.stats["rejected_" + exc.reason] += 1
                break
            out.append(Execute(block.batch, block.commits))
            self.view = max(self.view, block.commits[0].view)
            expected += 1
        got = expected - self.next_exec
        self.next_exec = expected
        inflight = self.fetch_inflight
        if inflight is None or inflight[0] != m.sender:
            return out
        self.fetch_inflight = None
        self.timers.pop(TIMER_FETCH, None)
        if got and got >= inflight[2] - inflight[1] + 1:
            return out + self._fetch(now_ms)          # a full reply: more may be waiting
        self._turn += 1
        return [*out, self._set(TIMER_POLL, now_ms + self.cfg.poll_interval_ms)]

    def _fetch(self, now_ms: int) -> list[Action]:
        if self.fetch_inflight is not None or not self.peers:
            return []
        peer = self.peers[self._turn % len(self.peers)]
        hi = self.next_exec + self.cfg.limits.blocks_per_reply_max - 1
        self.fetch_inflight = (peer, self.next_exec, hi)
        msg = Fetch.create(self.signer, self.cfg.chain_id, self.me, self.next_exec, hi)
        return [Send(peer, msg.frame()),
                self._set(TIMER_FETCH, now_ms + self.cfg.fetch_timeout_ms)]

    def _set(self, name: str, at_ms: int) -> SetTimer:
        self.timers[name] = at_ms
        return SetTimer(name, at_ms)
