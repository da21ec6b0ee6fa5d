"""The observer's Follower: it applies only certified blocks, in order, and
checks the validators' checkpoint proofs against its own block hashes."""

import pytest

from pbftd.core import Batch, Execute, Request, Signer, ValidatorSet, Verifier, sha256
from pbftd.core.actions import Persist, Send, ServeBlocks
from pbftd.core.follower import Follower, FollowerConfig
from pbftd.core.messages import Blocks, Checkpoint, Commit, CommittedBlock, Fetch, Submit

IDS = ["v0", "v1", "v2", "v3"]
KEYS = {i: Signer.from_seed(sha256(f"follower-{i}".encode())) for i in [*IDS, "obs", "obs2"]}
VALS = ValidatorSet.of([(i, KEYS[i].public_key) for i in IDS])
SUBMITTERS = {i: k.public_key for i, k in KEYS.items()}
CHAIN = "follow"


def _follower() -> Follower:
    f = Follower(FollowerConfig(chain_id=CHAIN, checkpoint_interval=2), VALS, "obs", KEYS["obs"],
                 Verifier(), SUBMITTERS, ["v0", "v1", "obs2"])
    f.start(1_000)
    return f


def _block(seq: int, signers: list[str], view: int = 0) -> CommittedBlock:
    sub = Submit.create(KEYS["v1"], CHAIN, "v1", seq, (Request("c", f"r{seq}", b"p"),))
    batch = Batch(seq, view, "v0", 1_000 + seq, (sub,))
    d = batch.digest(CHAIN)
    return CommittedBlock(batch, tuple(Commit.create(KEYS[s], CHAIN, s, view, seq, d)
                                       for s in signers))


def _blocks(sender: str, *blocks: CommittedBlock, proof=()) -> bytes:
    return Blocks.create(KEYS[sender], CHAIN, sender, tuple(proof), blocks).frame()


def test_applies_certified_blocks_in_order_and_stops_at_a_bad_certificate() -> None:
    f = _follower()
    out = f.on_message("v0", _blocks("v0", _block(1, ["v0", "v1", "v2"]),
                                     _block(2, ["v0", "v0", "v0"]),
                                     _block(3, ["v1", "v2", "v3"])), 1_100)
    assert [a.batch.seq for a in out if isinstance(a, Execute)] == [1]
    assert f.stats["rejected_bad_commit_cert"] == 1 and f.next_exec == 2


def test_a_block_out_of_order_is_not_applied() -> None:
    f = _follower()
    out = f.on_message("v0", _blocks("v0", _block(2, ["v0", "v1", "v2"])), 1_100)
    assert not [a for a in out if isinstance(a, Execute)]


def test_checkpoint_proof_with_repeated_signers_is_refused() -> None:
    f = _follower()
    ckpt = Checkpoint.create(KEYS["v0"], CHAIN, "v0", 2, b"\x01" * 32)
    f.on_message("v0", _blocks("v0", proof=(ckpt, ckpt, ckpt)), 1_100)
    assert f.stable_seq == 0 and f.stats["rejected_bad_checkpoint_proof"] == 1


def test_a_quorum_contradicting_our_own_block_hash_is_an_assertion() -> None:
    f = _follower()
    f.on_message("v0", _blocks("v0", _block(1, ["v0", "v1", "v2"]), _block(2, IDS[:3])), 1_100)
    f.on_executed(1, b"\x0a" * 32, 1_001, 1_101)
    f.on_executed(2, b"\x0b" * 32, 1_002, 1_102)
    proof = tuple(Checkpoint.create(KEYS[v], CHAIN, v, 2, b"\x0c" * 32) for v in IDS[:3])
    with pytest.raises(AssertionError):
        f.on_message("v1", _blocks("v1", proof=proof), 1_200)


def test_polls_peers_in_rotation_and_serves_other_observers() -> None:
    f = _follower()
    first = f.on_timer("poll", 1_000)
    peer = next(a.to for a in first if isinstance(a, Send))
    f.on_message(peer, _blocks(peer), 1_050)            # nothing new there
    f.on_timer("poll", 1_600)
    assert f.fetch_inflight is not None and f.fetch_inflight[0] != peer
    f.on_message("v0", _blocks("v0", _block(1, ["v0", "v1", "v2"])), 1_700)
    f.on_executed(1, b"\x01" * 32, 1_001, 1_701)
    ask = Fetch.create(KEYS["obs2"], CHAIN, "obs2", 1, 10)
    served = f.on_message("obs2", ask.frame(), 1_800)
    assert served == [ServeBlocks("obs2", 1, 1, ())]


def test_submissions_go_to_every_validator_signed_by_the_observer() -> None:
    f = _follower()
    (origin, _sid), out = f.submit([Request("bank", "q1", b"x")], 2_000)
    assert origin == "obs"
    assert sorted(a.to for a in out if isinstance(a, Send)) == IDS


def test_votes_from_an_observer_key_are_refused() -> None:
    f = _follower()
    fake = Commit.create(KEYS["obs2"], CHAIN, "obs2", 0, 1, b"\x00" * 32)
    f.on_message("obs2", fake.frame(), 1_100)
    assert f.stats["rejected_unknown_sender"] == 1


def test_an_observer_persists_a_reservation_of_ids_not_every_id() -> None:
    """Like a validator (issue 6): one write a minute, not an fsync before every SUBMIT."""
    f = _follower()
    outs = [f.submit([Request("bank", f"q{i}", b"x")], 2_000 + i)[1] for i in range(3)]
    assert [sum(isinstance(a, Persist) for a in out) for out in outs] == [1, 0, 0]
    (persist,) = [a for a in outs[0] if isinstance(a, Persist)]
    assert outs[0].index(persist) < min(i for i, a in enumerate(outs[0]) if isinstance(a, Send))


def test_a_restarted_observer_never_reuses_an_id_even_if_its_clock_went_back() -> None:
    f = _follower()
    records: dict[str, bytes] = {}
    sent = []
    for i in range(3):
        (_origin, sid), out = f.submit([Request("bank", f"q{i}", b"x")], 2_000)
        records.update(p for a in out if isinstance(a, Persist) for p in a.puts)
        sent.append(sid)
    restarted = Follower(FollowerConfig(chain_id=CHAIN, checkpoint_interval=2), VALS, "obs",
                         KEYS["obs"], Verifier(), SUBMITTERS, ["v0", "v1"])
    restarted.start(1_000, records=records)
    (_origin, again), _ = restarted.submit([Request("bank", "after", b"y")], 1_000)
    assert again > max(sent)
