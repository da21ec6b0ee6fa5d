"""Byzantine behaviour for simulated nodes that hold a real validator key.

``CensoringReplica`` is an otherwise correct replica that never takes a
submission of one origin (the victim): as primary it keeps ordering everyone
else's, so the backups must notice that the victim's wait is not queueing
(the request timer rule of docs/CONSENSUS.md section 9.1).  ``forge`` turns
one outgoing frame into a near-valid malformed or forged one (ByzzFuzz-style
small-scope mutations); ``bogus_messages`` builds validly signed messages
whose *proofs* are wrong: view changes with prepared certificates made of
repeated or non-backup signers, checkpoint proofs with too few or repeated
signers, NEW-VIEWs from non-primaries, views at 2^63-1.  Every one of them
must be rejected by honest replicas without effect.
"""

from __future__ import annotations

import random
from typing import Any

import cbor2

from ..core import codec
from ..core.crypto import Signer
from ..core.messages import (
    DOMAIN,
    Batch,
    Blocks,
    Checkpoint,
    Commit,
    CommittedBlock,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    ViewChange,
)
from ..core.replica import Replica

HUGE = codec.INT_MAX


class CensoringReplica(Replica):
    """Drops every SUBMIT from ``victim`` (the origin's pushes included), so
    as primary it never proposes them; it votes and executes like any other."""

    def __init__(self, *args: Any, victim: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.victim = victim

    def _on_submit(self, m: Any, extra: Any, now_ms: int) -> list[Any]:
        if m.key[0] == self.victim:
            self.stats["censored"] += 1
            return []
        return super()._on_submit(m, extra, now_ms)


def _resign(signer: Signer, head: list[Any], canonical: bool = True) -> list[bytes]:
    signed = cbor2.dumps(head, canonical=canonical)
    return [signed, signer.sign(signed)]


def forge(rng: random.Random, frame: bytes, signer: Signer, others: list[str]) -> bytes:
    """A mutated copy of ``frame`` (one of the node's own messages)."""
    choice = rng.randrange(10)
    if choice == 0:
        return rng.randbytes(rng.randint(0, 64))
    if choice == 1:
        return frame[: rng.randrange(max(1, len(frame)))]
    if choice == 2:
        return frame + b"\xff\xff"
    if choice == 3:
        i = rng.randrange(len(frame))
        return frame[:i] + bytes([frame[i] ^ (1 << rng.randrange(8))]) + frame[i + 1:]
    signed, _sig, extra = cbor2.loads(frame)
    head = cbor2.loads(signed)
    body = head[4]
    if choice == 4 and isinstance(body, dict) and body:
        key = rng.choice(sorted(body))
        body[key] = rng.choice([HUGE, -1, True, b"\x00" * 31, "x", None, [1], 2**64 - 1])
    elif choice == 5:
        head[3] = rng.choice(others)          # claim to be someone else
    elif choice == 6:
        head[1] = "another-chain"
    elif choice == 7 and isinstance(body, dict):
        # validly signed, but the map keys are not in canonical order
        head[4] = dict(reversed(list(body.items())))
        env = _resign(signer, head, canonical=False)
        return cbor2.dumps([env[0], env[1], extra])
    elif choice == 8 and isinstance(body, dict):
        body["zz"] = 1
    else:
        head[0] = "pbftd/0"
    env = _resign(signer, head)
    return cbor2.dumps([env[0], env[1], extra], canonical=True)


def bogus_messages(rng: random.Random, replica: Replica) -> list[bytes]:
    """Validly signed messages carrying invalid proofs."""
    cfg, me, signer = replica.cfg, replica.me, replica.signer
    chain, q = cfg.chain_id, replica.vals.quorum
    k = cfg.checkpoint_interval
    seq = (replica.stable_seq // k + rng.randint(1, 3)) * k
    fake_hash = rng.randbytes(32)
    my_ckpt = Checkpoint.create(signer, chain, me, seq, fake_hash)
    view = rng.choice([replica.view + 1, replica.view + 2, HUGE])
    n = replica.stable_seq + 1
    batch = Batch(n, replica.view, replica.vals.primary(replica.view), 1, ())
    digest = batch.digest(chain)
    pp = PrePrepare.create(signer, chain, me, replica.view, n, digest)
    preps = tuple(Prepare.create(signer, chain, me, replica.view, n, digest) for _ in range(q))
    commits = tuple(Commit.create(signer, chain, me, replica.view, n, digest) for _ in range(q))
    out = [
        my_ckpt.frame(),
        ViewChange.create(signer, chain, me, view, seq, (my_ckpt,) * q, ()).frame(),
        ViewChange.create(signer, chain, me, view, replica.stable_seq, replica.stable_proof,
                          (PreparedCert(pp, batch, preps[: q - 1]),)).frame(),
        NewView.create(signer, chain, me, view, (), (pp,)).frame(),
        Blocks.create(signer, chain, me, (my_ckpt,) * q,
                      (CommittedBlock(batch, commits),)).frame(),
        codec.encode([codec.encode([DOMAIN, chain, "pre-prepare", me,
                                    {"v": view, "n": HUGE, "d": digest}]), b"\x00" * 64, None]),
    ]
    return [rng.choice(out)]
