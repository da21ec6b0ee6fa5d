"""Votes that arrive after their phase is over are dropped before their
signature is checked (``Wire.open_from``'s ``not_needed``,
``Replica._vote_not_needed``).

Why it matters: with four validators a quorum needs two of the three other
replicas' COMMITs (and one other backup's PREPARE), so one PREPARE and one
COMMIT per block reach each node after it has moved on.  Checking their
Ed25519 signatures was a third of each node's verifies per block.  These
tests count the verifies and check that such a vote, even a forged one,
changes nothing, while every vote that could still matter is verified.
"""

from __future__ import annotations

import pytest

from pbftd.core import codec
from pbftd.core.messages import Message, PrePrepare
from pbftd.core.replica import Replica
from tests.core.harness import NOW, CountingVerifier, Peers, opened_broadcasts, rejected


def _replica(peers: Peers, node: str) -> tuple[Replica, CountingVerifier]:
    verifier = CountingVerifier()
    replica = Replica(peers.cfg, peers.vals, node, peers.signers[node], verifier)
    replica.start(NOW, None, None)
    return replica, verifier


def _forged(msg: Message) -> bytes:
    """``msg``'s frame with a signature of zeros."""
    return codec.encode([msg.env.signed, bytes(64), None])


def _snapshot(replica: Replica, seq: int) -> tuple[object, ...]:
    entry = replica.log[seq]
    return (dict(entry.prepares), dict(entry.commits), entry.prepared_cert,
            entry.commit_cert, entry.committed, replica.next_exec)


@pytest.mark.parametrize("phase", ["prepare", "commit"])
def test_a_vote_after_its_phase_is_dropped_unverified_and_changes_nothing(phase: str) -> None:
    """A PREPARE once the backup prepared, a COMMIT once the slot committed:
    the vote, the same vote with a forged signature, and one for another
    digest all cost no verify and leave the slot as it was."""
    peers = Peers(4)
    replica, verifier = _replica(peers, "n1")  # a backup of view 0
    batch = peers.batch(1)
    if phase == "prepare":
        peers.prepare_at(replica, batch)  # the pre-prepare and n2's PREPARE
        assert replica.log[1].sent_commit and not replica.log[1].committed
        vote = peers.prepare
    else:
        peers.commit_at(replica, batch)  # COMMITs of n0 and n2 with our own
        assert replica.log[1].committed and replica.next_exec == 2
        vote = peers.commit
    before, calls = _snapshot(replica, 1), verifier.calls
    late = vote("n3", 0, 1, peers.digest(batch))
    assert peers.deliver(replica, late) == []
    assert replica.on_message("n3", _forged(late), NOW) == []
    assert peers.deliver(replica, vote("n3", 0, 1, b"\x07" * 32)) == []
    assert verifier.calls == calls
    assert _snapshot(replica, 1) == before
    assert replica.stats["votes_not_needed"] == 3 and rejected(replica) == 0


def test_votes_that_can_still_matter_are_verified_and_forgeries_refused() -> None:
    peers = Peers(4)
    replica, verifier = _replica(peers, "n1")
    batch = peers.batch(1)
    digest = peers.digest(batch)
    peers.deliver_pre_prepare(replica, batch)
    # Not yet prepared: a forged PREPARE is checked, refused and not counted.
    calls = verifier.calls
    assert replica.on_message("n2", _forged(peers.prepare("n2", 0, 1, digest)), NOW)
    assert verifier.calls == calls + 1 and replica.stats["rejected_bad_signature"] == 1
    assert "n2" not in replica.log[1].prepares and not replica.log[1].sent_commit
    # Prepared, not committed: a forged COMMIT is refused too.
    peers.deliver(replica, peers.prepare("n2", 0, 1, digest))
    assert replica.log[1].sent_commit
    assert replica.on_message("n0", _forged(peers.commit("n0", 0, 1, digest)), NOW)
    assert replica.stats["rejected_bad_signature"] == 2 and "n0" not in replica.log[1].commits
    # A vote of a later view for a finished slot is opened (it may be kept
    # for that view), and one relayed in another's name is still refused.
    calls = verifier.calls
    peers.deliver(replica, peers.prepare("n3", 1, 1, digest))
    assert verifier.calls == calls + 1
    out = peers.deliver(replica, peers.prepare("n3", 0, 1, digest), via="n2")
    assert out and replica.stats["rejected_sender_mismatch"] == 1
    assert replica.stats["votes_not_needed"] == 0


def _votes(peers: Peers, digest: bytes, skip: str) -> list[Message]:
    """Every other validator's PREPARE (backups only) and COMMIT for slot 1, in that order."""
    prepares = [peers.prepare(s, 0, 1, digest) for s in ("n1", "n2", "n3") if s != skip]
    return [*prepares, *(peers.commit(s, 0, 1, digest) for s in peers.ids if s != skip)]


def test_per_block_each_node_verifies_only_the_votes_its_quorums_need() -> None:
    """With four validators the primary needs two of three PREPAREs and two
    of three COMMITs, a backup one other PREPARE and two COMMITs: 4 and 3
    verifies of votes per block, where every vote used to cost one (6 and 5)."""
    peers = Peers(4)
    primary, verifier = _replica(peers, "n0")
    sub = peers.submit("n0")  # its own client's submission: nothing to verify
    ((pp, extra),) = opened_broadcasts(primary, primary.submit(sub.requests, NOW)[1], PrePrepare)
    counts = {}
    calls = verifier.calls
    for vote in _votes(peers, pp.digest, "n0"):
        peers.deliver(primary, vote)
    counts["n0"] = verifier.calls - calls, primary.next_exec, primary.stats["votes_not_needed"]
    for node in ("n1", "n2", "n3"):
        replica, verifier = _replica(peers, node)
        peers.deliver(replica, pp, extra)
        calls = verifier.calls
        for vote in _votes(peers, pp.digest, node):
            peers.deliver(replica, vote)
        counts[node] = verifier.calls - calls, replica.next_exec, replica.stats["votes_not_needed"]
    assert counts == {"n0": (4, 2, 2), "n1": (3, 2, 2), "n2": (3, 2, 2), "n3": (3, 2, 2)}
