"""A Byzantine validator for the fault suite (issue 7, scenario 14).

Test-only: it lives under tests/ and is never installed with the daemon.  It
takes one court's seat in a testnet written by ``Cluster.create``: it loads
that court's config, genesis and *real* key, listens and dials with the
daemon's own p2p ``Mesh`` (so TLS, the handshake and framing are exactly the
production code), and builds and signs messages with ``pbftd.core.messages``.
Nothing of the wire protocol is copied here; only the lies are new.

What it does, each ``tick``:

* **equivocates** when it is the primary of the view the honest nodes are in
  (view 0 with genesis order, since the primary is ``ids[v mod n]``): each
  honest peer gets its own validly signed PRE-PREPARE for the same seq, with
  a different batch;
* sends PREPAREs, COMMITs and PRE-PREPAREs whose **view or seq is off by
  one**, and a PRE-PREPARE while not the primary;
* **replays old certificates**: COMMIT and BLOCKS frames captured from honest
  peers (under their signatures, on its own link), old blocks with their
  genuine commit certificates re-wrapped as its own BLOCKS, and a BLOCKS
  reply whose "certificate" is captured COMMITs for another block;
* **forges signatures**: its own messages with a flipped or zero signature,
  and messages claiming to be from an honest validator;
* sends seqs **beyond the high watermark** (h+L+1, far, 2^63-1) and
  checkpoints far ahead;
* sends VIEW-CHANGE for view 2^63-1 (encodable, validly signed) and for
  2^63 and 2^64-1 (not encodable by the codec: built with cbor2 directly);
* floods future-view PREPAREs, which honest nodes may buffer only up to
  ``future_messages_max`` per sender, and future-view PRE-PREPAREs whose
  unsigned batch is 1 MiB of junk, which they must not buffer at all.

It reads what honest peers send (STATUS tells it their view and height) and
counts what it sent by kind in ``sent``.  ``run_in_thread`` runs it in its
own trio loop beside a test's blocking RPC calls.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import cbor2
import trio

from config import load_genesis, load_private_key, load_settings
from config.settings import listen_addresses
from p2p import Mesh
from pbftd.core import codec
from pbftd.core.crypto import Signer, Verifier, sha256
from pbftd.core.messages import (
    DOMAIN,
    SEQ_MAX,
    VIEW_MAX,
    Batch,
    Blocks,
    Checkpoint,
    Commit,
    CommittedBlock,
    Fetch,
    Prepare,
    PrePrepare,
    ProtocolError,
    Request,
    Status,
    Submit,
    ViewChange,
    Wire,
)
from pbftd.core.validators import ValidatorSet
from pbftd.daemon import mesh_config

__all__ = ["Adversary"]

TICK_S = 0.25
CAPTURED_MAX = 64
FUTURE_FLOOD_FRAMES = 1_000
JUNK_EXTRA_BYTES = 1 << 20
JUNK_FRAMES = 8
HUGE_VIEWS = (2**63, 2**64 - 1)  # outside the codec's int range


class Adversary:
    """One validator seat in the hands of an attacker (see module doc)."""

    def __init__(self, testnet_dir: Path, court_id: str) -> None:
        settings = load_settings(testnet_dir / court_id / "config.toml")
        genesis = load_genesis(settings.genesis_file)
        key = load_private_key(settings.key_file)
        self.me = court_id
        self.chain = genesis.chain_id
        self.signer = Signer(key)
        self.vals = ValidatorSet.of([(c.id, bytes.fromhex(c.public_key))
                                     for c in genesis.validators()])
        assert self.signer.public_key == self.vals.key(court_id), "not this court's key"
        self.honest = [i for i in self.vals.ids if i != court_id]
        self.window = genesis.consensus.watermark_window_blocks
        self.interval = genesis.consensus.checkpoint_interval_blocks
        self.wire = Wire(self.chain, self.vals, Verifier())
        p2p_listen, _rpc = listen_addresses(settings, genesis)
        self.mesh = Mesh(mesh_config(settings, genesis, key, p2p_listen))
        self.sid = time.time_ns() // 1000
        self.status: dict[str, Status] = {}
        self.captured_commits: deque[tuple[str, bytes, Commit]] = deque(maxlen=CAPTURED_MAX)
        self.captured_blocks: deque[tuple[str, bytes, Blocks]] = deque(maxlen=4)
        self.received: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.equivocated_views: set[int] = set()
        self.ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.flood_future = True

    # ------------------------------------------------------------ running

    def run_in_thread(self) -> Adversary:
        self._thread = threading.Thread(target=self._thread_main, name="adversary", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), "adversary thread did not stop"
        if self.error is not None:
            raise AssertionError(f"the adversary itself failed: {self.error!r}") from self.error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.mesh.run)
            nursery.start_soon(self._read_inbox)
            nursery.start_soon(self._attack_loop)
            while not self._stop.is_set():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    async def _read_inbox(self) -> None:
        async for _tag, peer, frames in self.mesh.inbox:
            self.mesh.release(peer, sum(map(len, frames)))
            for frame in frames:
                self._take(peer, frame)

    def _take(self, peer: str, frame: bytes) -> None:
        try:
            msg, extra = self.wire.open_from(peer, frame)
        except ProtocolError:
            self.received["invalid"] += 1
            return
        self.received[msg.TYPE] += 1
        if isinstance(msg, Status):
            self.status[peer] = msg
        elif isinstance(msg, Commit):
            self.captured_commits.append((peer, frame, msg))
        elif isinstance(msg, Blocks):
            try:
                self.captured_blocks.append((peer, frame, msg.with_extra(extra, self.wire)))
            except ProtocolError:
                self.received["invalid_blocks"] += 1

    async def _attack_loop(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            if len(self.mesh.connected_peers()) == 0:
                continue
            self.tick()

    # ------------------------------------------------------------ view of the world

    def honest_view(self) -> tuple[int, bool]:
        """The view most honest peers report, and whether they are active in it."""
        if not self.status:
            return 0, True
        views = Counter((s.view, s.active) for s in self.status.values())
        return views.most_common(1)[0][0]

    def executed(self, peer: str | None = None) -> int:
        if peer is not None:
            st = self.status.get(peer)
            return st.executed if st else 0
        return max((s.executed for s in self.status.values()), default=0)

    def stable(self) -> int:
        return max((s.stable_seq for s in self.status.values()), default=0)

    def _send(self, peer: str, kind: str, frame: bytes) -> None:
        self.mesh.send(peer, frame)
        self.sent[kind] += 1

    def _to_all(self, kind: str, frame: bytes) -> None:
        for peer in self.honest:
            self._send(peer, kind, frame)

    def _submit(self, tag: str) -> Submit:
        self.sid += 1
        payload = f"adversary {tag} {self.sid}".encode()
        return Submit.create(self.signer, self.chain, self.me, self.sid,
                             (Request("mallory", f"{tag}-{self.sid}", payload),))

    # ------------------------------------------------------------ the attacks

    def tick(self) -> None:
        self.ticks += 1
        view, _active = self.honest_view()
        if self.vals.primary(view) == self.me:
            self.equivocate(view)
        self.off_by_one(view)
        self.beyond_watermark(view)
        self.forge_signatures(view)
        self.huge_view_changes()
        self.replay_certificates(view)
        if self.ticks % 8 == 1:
            self.fetch_for_capture()
        if self.flood_future and self.ticks % 20 == 5:
            self.future_flood(view)
        if self.flood_future and self.ticks % 20 == 15:
            self.future_junk_batches(view)

    def equivocate(self, view: int) -> None:
        """A different, validly signed PRE-PREPARE for one seq to each peer."""
        seq = self.executed() + 1
        now = int(time.time() * 1000)
        for k, peer in enumerate(self.honest):
            batch = Batch(seq, view, self.me, now + k, (self._submit(f"equiv-{peer}"),))
            pp = PrePrepare.create(self.signer, self.chain, self.me, view, seq,
                                   batch.digest(self.chain))
            self._send(peer, "equivocating_pre_prepare", pp.frame(batch.to_wire()))
        self.equivocated_views.add(view)

    def off_by_one(self, view: int) -> None:
        seq = self.executed() + 1
        digest = sha256(os.urandom(16))
        for v, n in ((view + 1, seq), (max(view - 1, 0), seq), (view, seq + 1),
                     (view, max(seq - 1, 1))):
            self._to_all("off_by_one_prepare",
                         Prepare.create(self.signer, self.chain, self.me, v, n, digest).frame())
            self._to_all("off_by_one_commit",
                         Commit.create(self.signer, self.chain, self.me, v, n, digest).frame())
        if self.vals.primary(view) != self.me:  # a pre-prepare from a backup
            batch = Batch(seq, view, self.me, int(time.time() * 1000),
                          (self._submit("not-primary"),))
            pp = PrePrepare.create(self.signer, self.chain, self.me, view, seq,
                                   batch.digest(self.chain))
            self._to_all("pre_prepare_not_primary", pp.frame(batch.to_wire()))

    def beyond_watermark(self, view: int) -> None:
        high = self.stable() + self.window
        digest = sha256(os.urandom(16))
        for seq in (high + 1, high + 1000, SEQ_MAX):
            self._to_all("beyond_watermark",
                         Prepare.create(self.signer, self.chain, self.me, view, seq,
                                        digest).frame())
            self._to_all("beyond_watermark",
                         Commit.create(self.signer, self.chain, self.me, view, seq,
                                       digest).frame())
        far = (self.stable() // self.interval + 4 * self.window) * self.interval
        for seq in (far, SEQ_MAX - SEQ_MAX % self.interval):
            self._to_all("far_checkpoint", Checkpoint.create(
                self.signer, self.chain, self.me, seq, sha256(os.urandom(8))).frame())

    def forge_signatures(self, view: int) -> None:
        seq = self.executed() + 1
        msg = Commit.create(self.signer, self.chain, self.me, view, seq, sha256(b"forged"))
        flipped = bytearray(msg.env.sig)
        flipped[0] ^= 1
        self._to_all("bad_signature",
                     codec.encode([msg.env.signed, bytes(flipped), None]))
        self._to_all("bad_signature", codec.encode([msg.env.signed, bytes(64), None]))
        victim = self.honest[self.ticks % len(self.honest)]
        signed = codec.encode([DOMAIN, self.chain, "commit", victim,
                               {"v": view, "n": seq, "d": sha256(b"impersonated")}])
        self._to_all("impersonation", codec.encode([signed, self.signer.sign(signed), None]))
        other = Signer.from_seed(os.urandom(32))  # a key nobody listed
        signed = codec.encode([DOMAIN, self.chain, "status", self.me,
                               {"v": view, "active": True, "exec": 0, "stable": 0}])
        self._to_all("unknown_key", codec.encode([signed, other.sign(signed), None]))

    def huge_view_changes(self) -> None:
        vc = ViewChange.create(self.signer, self.chain, self.me, VIEW_MAX, 0, (), ())
        self._to_all("view_change_2^63-1", vc.frame())
        for view in HUGE_VIEWS:
            # The codec refuses to encode these, so call cbor2 without it.
            signed = cbor2.dumps([DOMAIN, self.chain, "view-change", self.me,
                                  {"v": view, "h": 0, "ckpt": [], "prepared": []}],
                                 canonical=True)
            frame = cbor2.dumps([signed, self.signer.sign(signed), None], canonical=True)
            self._to_all(f"view_change_{'2^63' if view == 2**63 else '2^64-1'}", frame)
        status = Status.create(self.signer, self.chain, self.me, VIEW_MAX, True, 0, 0)
        self._to_all("status_view_2^63-1", status.frame())

    def fetch_for_capture(self) -> None:
        peer = self.honest[self.ticks % len(self.honest)]
        executed = self.executed(peer)
        if executed >= 1:
            fetch = Fetch.create(self.signer, self.chain, self.me, 1, min(executed, 8))
            self._send(peer, "fetch", fetch.frame())

    def replay_certificates(self, view: int) -> None:
        for _owner, frame, _msg in list(self.captured_commits)[-4:]:
            for peer in self.honest:  # an honest peer's COMMIT, replayed on our link
                self._send(peer, "replayed_commit", frame)
        if not self.captured_blocks:
            return
        _owner, frame, blocks = self.captured_blocks[-1]
        self._to_all("replayed_blocks_frame", frame)
        old = Blocks.create(self.signer, self.chain, self.me, (), blocks.blocks)
        self._to_all("replayed_old_blocks", old.frame())
        if blocks.blocks:
            # A new block "certified" by genuine COMMITs of an old one.
            for peer in self.honest:
                seq = self.executed(peer) + 1
                batch = Batch(seq, view, self.me, int(time.time() * 1000),
                              (self._submit("stale-cert"),))
                fake = CommittedBlock(batch, blocks.blocks[0].commits)
                msg = Blocks.create(self.signer, self.chain, self.me, (), (fake,))
                self._send(peer, "stale_commit_certificate", msg.frame())

    def future_flood(self, view: int) -> None:
        """Many future-view PREPAREs: an honest node may buffer only a bounded
        number per sender (future_messages_max), whatever arrives."""
        base = self.executed() + 1
        for k in range(FUTURE_FLOOD_FRAMES):
            msg = Prepare.create(self.signer, self.chain, self.me, view + 1 + k % 2,
                                 base + k % self.window, sha256(k.to_bytes(4, "big")))
            self._to_all("future_view_flood", msg.frame())

    def future_junk_batches(self, view: int) -> None:
        """Future-view PRE-PREPAREs whose unsigned extra is 1 MiB of junk:
        buffered unchecked, these once let any validator park about 2 GiB
        in every honest replica (see tests/fuzz/test_peer_messages.py)."""
        junk = os.urandom(JUNK_EXTRA_BYTES)
        seq = self.executed() + 1
        for k in range(JUNK_FRAMES):
            pp = PrePrepare.create(self.signer, self.chain, self.me, view + 1 + k % 2, seq + k,
                                   sha256(k.to_bytes(4, "big")))
            self._to_all("future_junk_batch", pp.frame([junk, k]))

    def summary(self) -> dict[str, Any]:
        return {"sent": dict(self.sent), "received": dict(self.received),
                "equivocated_views": sorted(self.equivocated_views),
                "mesh": {k: v for k, v in self.mesh.stats.items()
                         if k in ("frames_sent", "frames_dropped_queue_full",
                                  "links_established")}}
