"""Regression tests for bugs found in review; each names what went wrong."""

import pytest

from pbftd.core import (
    Batch,
    Execute,
    Replica,
    ReplicaConfig,
    Request,
    Signer,
    ValidatorSet,
    Verifier,
    sha256,
)
from pbftd.core.actions import Broadcast
from pbftd.core.messages import Blocks, Commit, CommittedBlock, Submit

IDS = ["n0", "n1", "n2", "n3"]
SIGNERS = {i: Signer.from_seed(sha256(f"regression-{i}".encode())) for i in IDS}
VALS = ValidatorSet.of([(i, SIGNERS[i].public_key) for i in IDS])
CHAIN = "regress"


def _replica(node: str, **cfg: int) -> Replica:
    config = ReplicaConfig(chain_id=CHAIN, checkpoint_interval=4, watermark_window=8,
                           batch_wait_ms=0, **cfg)
    r = Replica(config, VALS, node, SIGNERS[node], Verifier())
    r.start(1_000)
    return r


def _committed(seq: int, prev_time: int, signers: list[str]) -> CommittedBlock:
    sub = Submit.create(SIGNERS["n2"], CHAIN, "n2", seq, (Request("c", f"r{seq}", b"x"),))
    batch = Batch(seq, 0, "n0", prev_time + 1, (sub,))
    digest = batch.digest(CHAIN)
    commits = tuple(Commit.create(SIGNERS[s], CHAIN, s, 0, seq, digest) for s in signers)
    return CommittedBlock(batch, commits)


def test_a_submission_no_batch_can_carry_is_refused_not_proposed_forever() -> None:
    """An oversized SUBMIT used to be proposed alone by every primary and
    refused by every backup: endless view changes."""
    primary = _replica("n0", batch_requests_max=2)
    big = Submit.create(SIGNERS["n1"], CHAIN, "n1", 1,
                        tuple(Request("c", f"r{i}", b"") for i in range(3)))
    actions = primary.on_message("n1", big.frame(), 1_010)
    assert not [a for a in actions if isinstance(a, Broadcast)]
    assert primary.stats["rejected_submission_too_large"] == 1
    assert not primary.pending
    with pytest.raises(ValueError):
        primary.submit([Request("c", f"r{i}", b"") for i in range(3)], 1_020)


def test_a_bad_certificate_late_in_blocks_does_not_lose_the_good_blocks_before_it() -> None:
    """_on_blocks used to raise after dispatching earlier blocks, moving
    next_exec while the Execute actions were thrown away."""
    r = _replica("n1")
    good = _committed(1, 1_000, ["n0", "n1", "n2"])
    bad = _committed(2, 1_001, ["n0", "n0", "n0"])
    reply = Blocks.create(SIGNERS["n2"], CHAIN, "n2", (), (good, bad))
    actions = r.on_message("n2", reply.frame(), 1_050)
    executes = [a for a in actions if isinstance(a, Execute)]
    assert [a.batch.seq for a in executes] == [1]
    assert r.next_exec == 2
    assert r.stats["rejected_bad_commit_cert"] == 1


def test_a_wiped_node_never_reuses_a_submission_id() -> None:
    """sid restarted at 0 after a wipe, so peers ignored the node's new
    submissions as already executed."""
    before = _replica("n2")
    (_, old_sid), _ = before.submit([Request("c", "r1", b"")], 5_000)
    wiped = _replica("n2")
    (_, new_sid), _ = wiped.submit([Request("c", "r2", b"")], 6_000)
    assert new_sid > old_sid
