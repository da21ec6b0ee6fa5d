"""One test per rule of Castro and Liskov's PBFT (OSDI '99, TOCS '02).

As etcd raft's raft_paper_test.go: each test names the sentence of the paper
it checks, builds one replica, feeds it messages forged from the other
validators (init), steps it (act), and asserts on the ordered actions it
returns and on the little state the rule is about (check).
"""

from __future__ import annotations

import pytest

from pbftd.core import codec
from pbftd.core.actions import (
    TIMER_NEW_VIEW,
    TIMER_REQUEST,
    Broadcast,
    Execute,
    Persist,
    Send,
    SetTimer,
)
from pbftd.core.crypto import Signer, sha256
from pbftd.core.messages import (
    Batch,
    Checkpoint,
    Commit,
    CommittedBlock,
    Fetch,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    ViewChange,
)
from pbftd.core.validators import ValidatorSet
from tests.core.harness import (
    NOW,
    Peers,
    Shell,
    actions_of,
    decode_broadcasts,
    decode_sends,
    first_index,
    opened_broadcasts,
    reference_chain,
    rejected,
    sends_anything,
)

# ==========================================================================
# the validator set


def test_primary_of_view_v_is_replica_v_mod_n():
    peers = Peers(4)
    assert [peers.vals.primary(v) for v in range(9)] == [
        "n0", "n1", "n2", "n3", "n0", "n1", "n2", "n3", "n0"]
    assert peers.vals.primary(2**63 - 1) == peers.ids[(2**63 - 1) % 4]


@pytest.mark.parametrize(("n", "f", "q"), [(4, 1, 3), (7, 2, 5), (10, 3, 7), (31, 10, 21)])
def test_quorum_is_2f_plus_1_when_n_is_3f_plus_1(n, f, q):
    peers = Peers(n)
    assert (peers.vals.f, peers.vals.quorum, peers.vals.weak_quorum) == (f, q, f + 1)


@pytest.mark.parametrize("n", range(1, 41))
def test_any_two_quorums_share_an_honest_replica_and_a_quorum_survives_f_faults(n):
    vals = ValidatorSet(tuple(f"v{i}" for i in range(n)), tuple(bytes([i]) * 32
                                                               for i in range(n)))
    f, q = vals.f, vals.quorum
    assert 3 * f + 1 <= n
    assert 2 * q - n >= f + 1, "two quorums must intersect in at least f+1 replicas"
    assert q <= n - f, "the honest replicas alone must form a quorum"


# ==========================================================================
# normal case: pre-prepare


def test_primary_assigns_consecutive_sequence_numbers_and_broadcasts_pre_prepare_with_batch():
    peers = Peers(4)
    primary = peers.replica("n0")
    subs = [peers.submit("n3") for _ in range(3)]
    proposed = []
    for sub in subs:
        out = peers.deliver(primary, sub)
        proposed += opened_broadcasts(primary, out, PrePrepare)
    assert [pp.seq for pp, _ in proposed] == [1, 2, 3]
    for (pp, extra), sub in zip(proposed, subs, strict=True):
        batch = Batch.parse(extra, primary.wire)
        assert (pp.view, pp.sender) == (0, "n0")
        assert (batch.seq, batch.view, batch.proposer) == (pp.seq, 0, "n0")
        assert [s.key for s in batch.subs] == [sub.key]
        assert batch.digest(peers.chain) == pp.digest


def test_primary_persists_pre_prepare_before_broadcasting_it():
    peers = Peers(4)
    primary = peers.replica("n0")
    out = peers.deliver(primary, peers.submit("n3"))
    i_broadcast = first_index(out, Broadcast)
    assert decode_broadcasts(primary, out[i_broadcast:i_broadcast + 1], PrePrepare)
    persists = [a for a in out[:i_broadcast] if isinstance(a, Persist)]
    assert any(key == "entry/" + "1".zfill(20) for p in persists for key, _ in p.puts)
    record = codec.decode(dict(persists[-1].puts)["entry/" + "1".zfill(20)], size_max=1 << 20)
    assert record["pp"] is not None and record["batch"] is not None


@pytest.mark.parametrize("n", [4, 7])
def test_backup_accepts_valid_pre_prepare_persists_then_broadcasts_prepare(n):
    peers = Peers(n)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    out = peers.deliver_pre_prepare(backup, batch)
    i_persist, i_broadcast = first_index(out, Persist), first_index(out, Broadcast)
    assert i_persist < i_broadcast
    prepares = decode_broadcasts(backup, out, Prepare)
    assert [(p.sender, p.view, p.seq, p.digest) for p in prepares] == [
        ("n1", 0, 1, peers.digest(batch))]


def _no_prepare(peers, replica, out):
    assert decode_broadcasts(replica, out, Prepare) == []
    assert not actions_of(out, Persist)


def test_backup_rejects_pre_prepare_from_a_non_primary():
    peers = Peers(4)
    backup = peers.replica("n3")
    batch = peers.batch(1, proposer="n1")
    pp = peers.pre_prepare(batch, sender="n1")
    out = peers.deliver(backup, pp, batch.to_wire())
    _no_prepare(peers, backup, out)
    assert backup.stats["rejected_not_primary"] == 1


def _install_view(peers, replica, view):
    vcs = [peers.view_change(s, view) for s in peers.ids if s != replica.me][: peers.q]
    peers.deliver(replica, peers.new_view(view, vcs))
    assert (replica.view, replica.active) == (view, True)


def test_backup_drops_pre_prepare_of_an_older_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    _install_view(peers, backup, 1)
    out = peers.deliver_pre_prepare(backup, peers.batch(1, view=0))
    _no_prepare(peers, backup, out)
    assert backup.stats["dropped_old_view"] == 1


def test_backup_does_not_prepare_pre_prepare_of_a_newer_view_before_new_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    out = peers.deliver_pre_prepare(backup, peers.batch(1, view=1))
    _no_prepare(peers, backup, out)
    assert backup.log.get(1) is None or backup.log[1].pp is None


def test_backup_drops_pre_prepare_above_high_watermark():
    peers = Peers(4)
    backup = peers.replica("n3")
    window = peers.cfg.watermark_window
    out = peers.deliver_pre_prepare(backup, peers.batch(window + 1))
    _no_prepare(peers, backup, out)
    assert backup.stats["dropped_out_of_window"] == 1
    # the last seq inside (h, h+L] is accepted
    out = peers.deliver_pre_prepare(backup, peers.batch(window))
    assert [p.seq for p in decode_broadcasts(backup, out, Prepare)] == [window]


def test_backup_rejects_pre_prepare_whose_digest_does_not_match_the_batch():
    peers = Peers(4)
    backup = peers.replica("n3")
    batch, other = peers.batch(1), peers.batch(1)
    pp = peers.pre_prepare(other)
    out = peers.deliver(backup, pp, batch.to_wire())
    _no_prepare(peers, backup, out)
    assert backup.stats["rejected_bad_digest"] == 1


def test_backup_rejects_pre_prepare_without_its_batch():
    peers = Peers(4)
    backup = peers.replica("n3")
    out = peers.deliver(backup, peers.pre_prepare(peers.batch(1)), None)
    _no_prepare(peers, backup, out)
    assert backup.stats["rejected_missing_batch"] == 1


def test_backup_accepts_only_one_pre_prepare_per_view_and_sequence_number():
    peers = Peers(4)
    backup = peers.replica("n3")
    first, second = peers.batch(1), peers.batch(1)
    assert peers.digest(first) != peers.digest(second)
    out = peers.deliver_pre_prepare(backup, first)
    assert len(decode_broadcasts(backup, out, Prepare)) == 1
    out = peers.deliver_pre_prepare(backup, second)
    _no_prepare(peers, backup, out)
    assert backup.log[1].pp.digest == peers.digest(first)
    assert backup.stats["equivocation_pre_prepare"] == 1


@pytest.mark.parametrize("offset_ms", [10_001, -10_001])
def test_backup_rejects_batch_time_too_far_from_its_clock(offset_ms):
    peers = Peers(4)
    backup = peers.replica("n3")
    out = peers.deliver_pre_prepare(backup, peers.batch(1, time_ms=NOW + offset_ms))
    _no_prepare(peers, backup, out)
    assert backup.stats["rejected_bad_time"] == 1


@pytest.mark.parametrize("delta_ms", [0, -1])
def test_backup_rejects_batch_time_not_after_previous_batch(delta_ms):
    peers = Peers(4)
    backup = peers.replica("n3")
    peers.deliver_pre_prepare(backup, peers.batch(1, time_ms=NOW + 5))
    out = peers.deliver_pre_prepare(backup, peers.batch(2, time_ms=NOW + 5 + delta_ms))
    _no_prepare(peers, backup, out)
    assert backup.stats["rejected_bad_time"] == 1
    out = peers.deliver_pre_prepare(backup, peers.batch(2, time_ms=NOW + 6))
    assert [p.seq for p in decode_broadcasts(backup, out, Prepare)] == [2]


def test_backup_rejects_batch_time_not_after_last_executed_block():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    _execute_up_to(peers, backup, shell, 4)
    for s in ("n0", "n1"):
        shell.run(peers.deliver(backup, peers.checkpoint(s, 4, shell.block_hash(4))))
    assert backup.stable_seq == 4 and backup.log == {}  # only the executed tip is left
    t4 = shell.tip.time_ms
    out = peers.deliver_pre_prepare(backup, peers.batch(5, time_ms=t4))
    _no_prepare(peers, backup, out)
    assert backup.stats["rejected_bad_time"] == 1
    out = peers.deliver_pre_prepare(backup, peers.batch(5, time_ms=t4 + 1))
    assert [p.seq for p in decode_broadcasts(backup, out, Prepare)] == [5]


# ==========================================================================
# normal case: prepare


def test_primary_never_sends_prepare():
    peers = Peers(4)
    primary = peers.replica("n0")
    out = peers.deliver(primary, peers.submit("n3"))
    (pp,) = decode_broadcasts(primary, out, PrePrepare)
    for sender in ("n1", "n2"):
        out += peers.deliver(primary, peers.prepare(sender, 0, 1, pp.digest))
    assert decode_broadcasts(primary, out, Prepare) == []
    assert len(decode_broadcasts(primary, out, Commit)) == 1


def test_prepare_claimed_from_the_primary_is_rejected():
    peers = Peers(4)
    backup = peers.replica("n3")
    batch = peers.batch(1)
    peers.deliver_pre_prepare(backup, batch)
    out = peers.deliver(backup, peers.prepare("n0", 0, 1, peers.digest(batch)))
    assert not sends_anything(out)
    assert backup.stats["rejected_primary_prepare"] == 1
    assert "n0" not in backup.log[1].prepares


@pytest.mark.parametrize("n", [4, 7])
def test_not_prepared_with_2f_minus_1_matching_prepares(n):
    peers = Peers(n)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    out = peers.deliver_pre_prepare(backup, batch)  # its own PREPARE is the first
    for s in peers.backups(0, exclude=["n1"])[: 2 * peers.f - 2]:
        out += peers.deliver(backup, peers.prepare(s, 0, 1, peers.digest(batch)))
    assert decode_broadcasts(backup, out, Commit) == []
    assert backup.log[1].prepared_cert is None


@pytest.mark.parametrize("n", [4, 7])
def test_duplicate_prepare_from_the_same_backup_counts_once(n):
    peers = Peers(n)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    peers.deliver_pre_prepare(backup, batch)
    others = peers.backups(0, exclude=["n1"])[: 2 * peers.f - 2]
    repeat = peers.backups(0, exclude=["n1", *others])[0]
    out = []
    for s in others:
        out += peers.deliver(backup, peers.prepare(s, 0, 1, peers.digest(batch)))
    prep = peers.prepare(repeat, 0, 1, peers.digest(batch))
    out += peers.deliver(backup, prep)
    assert len(decode_broadcasts(backup, out, Commit)) == 1  # sanity: 2f reached once
    backup2 = peers.replica("n1")
    peers.deliver_pre_prepare(backup2, batch)
    out2 = []
    for s in others:
        out2 += peers.deliver(backup2, peers.prepare(s, 0, 1, peers.digest(batch)))
    if others:
        out2 += peers.deliver(backup2, peers.prepare(others[0], 0, 1, peers.digest(batch)))
    out2 += peers.deliver(backup2, peers.prepare("n1", 0, 1, peers.digest(batch)),
                          via="n1")  # our own vote replayed back to us
    assert decode_broadcasts(backup2, out2, Commit) == []


@pytest.mark.parametrize("n", [4, 7])
def test_prepare_for_another_digest_does_not_count(n):
    peers = Peers(n)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    peers.deliver_pre_prepare(backup, batch)
    wrong = sha256(b"another batch")
    out = []
    for s in peers.backups(0, exclude=["n1"])[: 2 * peers.f - 1]:
        out += peers.deliver(backup, peers.prepare(s, 0, 1, wrong))
    assert decode_broadcasts(backup, out, Commit) == []
    assert backup.log[1].prepared_cert is None


@pytest.mark.parametrize("n", [4, 7])
def test_prepared_at_2f_prepares_persists_certificate_then_broadcasts_commit(n):
    peers = Peers(n)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    peers.deliver_pre_prepare(backup, batch)
    others = peers.backups(0, exclude=["n1"])[: 2 * peers.f - 1]
    out = []
    for s in others:
        out += peers.deliver(backup, peers.prepare(s, 0, 1, peers.digest(batch)))
    i_commit = first_index(out, Broadcast)
    i_persist = max(i for i, a in enumerate(out[:i_commit]) if isinstance(a, Persist))
    record = codec.decode(dict(out[i_persist].puts)["entry/" + "1".zfill(20)], size_max=1 << 20)
    assert record["prepared"] is not None and record["sc"] is True
    (commit,) = decode_broadcasts(backup, out, Commit)
    assert (commit.sender, commit.view, commit.seq, commit.digest) == (
        "n1", 0, 1, peers.digest(batch))
    cert = backup.log[1].prepared_cert
    assert len(cert.prepares) == 2 * peers.f
    assert len({p.sender for p in cert.prepares}) == 2 * peers.f
    assert "n0" not in {p.sender for p in cert.prepares}


def test_prepares_received_before_the_pre_prepare_count_once_it_arrives():
    peers = Peers(4)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    out = peers.deliver(backup, peers.prepare("n2", 0, 1, peers.digest(batch)))
    assert not sends_anything(out)
    out = peers.deliver_pre_prepare(backup, batch)
    assert len(decode_broadcasts(backup, out, Prepare)) == 1
    assert len(decode_broadcasts(backup, out, Commit)) == 1


# ==========================================================================
# normal case: commit and execution


@pytest.mark.parametrize("n", [4, 7])
def test_not_committed_with_2f_matching_commits(n):
    peers = Peers(n)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    out = peers.prepare_at(backup, batch)
    assert len(decode_broadcasts(backup, out, Commit)) == 1  # our own: 1 of 2f+1
    others = [i for i in peers.ids if i != "n1"][: 2 * peers.f - 1]
    for s in others:
        out += peers.deliver(backup, peers.commit(s, 0, 1, peers.digest(batch)))
    assert actions_of(out, Execute) == []


@pytest.mark.parametrize("n", [4, 7])
def test_committed_local_at_2f_plus_1_commits_executes_with_certificate(n):
    peers = Peers(n)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    out = peers.commit_at(backup, batch)
    (execute,) = actions_of(out, Execute)
    assert execute.batch == batch
    cert = execute.commits
    assert len(cert) == peers.q
    assert len({c.sender for c in cert}) == peers.q
    assert {(c.view, c.seq, c.digest) for c in cert} == {(0, 1, peers.digest(batch))}


def test_commits_for_another_digest_do_not_count():
    peers = Peers(4)
    backup = peers.replica("n1")
    batch = peers.batch(1)
    out = peers.prepare_at(backup, batch)
    for s in ("n0", "n2", "n3"):
        out += peers.deliver(backup, peers.commit(s, 0, 1, sha256(b"other")))
    assert actions_of(out, Execute) == []


def test_committed_local_requires_prepared_first():
    peers = Peers(4)
    backup = peers.replica("n3")
    batch = peers.batch(1)
    out = peers.deliver_pre_prepare(backup, batch)
    for s in ("n0", "n1", "n2"):
        out += peers.deliver(backup, peers.commit(s, 0, 1, peers.digest(batch)))
    assert actions_of(out, Execute) == []
    out = peers.deliver(backup, peers.prepare("n1", 0, 1, peers.digest(batch)))
    assert [e.batch.seq for e in actions_of(out, Execute)] == [1]


def test_batches_execute_in_sequence_order():
    peers = Peers(4)
    backup = peers.replica("n3")
    b1, b2, b3 = peers.batch(1), peers.batch(2), peers.batch(3)
    out = peers.commit_at(backup, b2) + peers.commit_at(backup, b3)
    assert actions_of(out, Execute) == []
    assert backup.log[2].committed and backup.log[3].committed
    out = peers.commit_at(backup, b1)
    assert [e.batch.seq for e in actions_of(out, Execute)] == [1, 2, 3]


def test_submission_already_executed_is_not_proposed_again():
    peers = Peers(4)
    primary = peers.replica("n0")
    shell = Shell(primary)
    sub = peers.submit("n3")
    out = shell.run(peers.deliver(primary, sub))
    (pp,) = decode_broadcasts(primary, out, PrePrepare)
    # while it is pending
    assert decode_broadcasts(primary, peers.deliver(primary, sub), PrePrepare) == []
    for s in ("n1", "n2"):
        out += shell.run(peers.deliver(primary, peers.prepare(s, 0, 1, pp.digest)))
    for s in ("n1", "n2"):
        out += shell.run(peers.deliver(primary, peers.commit(s, 0, 1, pp.digest)))
    assert primary.executed == 1
    # after it executed
    again = shell.run(peers.deliver(primary, sub))
    assert decode_broadcasts(primary, again, PrePrepare) == []
    assert primary.next_seq == 2


# ==========================================================================
# checkpoints and watermarks


def _execute_up_to(peers, replica, shell, last, first=1):
    for seq in range(first, last + 1):
        shell.run(peers.commit_at(replica, peers.batch(seq)))
    assert replica.executed == last


def test_replica_persists_then_broadcasts_checkpoint_every_k_blocks():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    k = peers.cfg.checkpoint_interval
    _execute_up_to(peers, backup, shell, k - 1)
    assert decode_broadcasts(backup, shell.log, Checkpoint) == []
    shell.log.clear()
    _execute_up_to(peers, backup, shell, k, first=k)
    (ckpt,) = decode_broadcasts(backup, shell.log, Checkpoint)
    assert (ckpt.seq, ckpt.block_hash) == (k, shell.block_hash(k))
    i_ckpt = next(i for i, a in enumerate(shell.log)
                  if isinstance(a, Broadcast) and a.frame == ckpt.frame())
    assert any(isinstance(a, Persist) and dict(a.puts).get(f"ckpt/{k:020d}") == ckpt.block_hash
               for a in shell.log[:i_ckpt])


def test_checkpoint_becomes_stable_with_2f_plus_1_matching_and_log_is_truncated():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    _execute_up_to(peers, backup, shell, 4)
    shell.run(peers.prepare_at(backup, peers.batch(5)))  # a live entry above it
    h4 = shell.block_hash(4)
    shell.run(peers.deliver(backup, peers.checkpoint("n0", 4, h4)))
    assert backup.stable_seq == 0
    out = shell.run(peers.deliver(backup, peers.checkpoint("n1", 4, h4)))
    assert (backup.stable_seq, backup.stable_hash) == (4, h4)
    assert len(backup.stable_proof) == 3
    (persist,) = [a for a in out if isinstance(a, Persist) and a.deletes]
    assert set(persist.deletes) >= {f"entry/{s:020d}" for s in range(1, 5)}
    assert f"entry/{5:020d}" not in persist.deletes
    assert "stable" in dict(persist.puts)
    assert sorted(backup.log) == [5]
    assert not any(k.startswith("entry/") and int(k[6:]) <= 4 for k in shell.records)


def test_checkpoint_not_stable_with_2f_or_with_another_hash():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    _execute_up_to(peers, backup, shell, 4)
    h4 = shell.block_hash(4)
    shell.run(peers.deliver(backup, peers.checkpoint("n0", 4, h4)))
    shell.run(peers.deliver(backup, peers.checkpoint("n1", 4, sha256(b"fork"))))
    shell.run(peers.deliver(backup, peers.checkpoint("n0", 4, h4)))  # repeated
    assert backup.stable_seq == 0
    assert sorted(backup.log) == [1, 2, 3, 4]


def test_checkpoint_off_the_interval_is_rejected():
    peers = Peers(4)
    backup = peers.replica("n3")
    out = peers.deliver(backup, peers.checkpoint("n0", 3, sha256(b"x")))
    assert not sends_anything(out)
    assert backup.stats["rejected_bad_checkpoint"] == 1


def test_primary_proposes_up_to_high_watermark_and_resumes_when_checkpoint_is_stable():
    peers = Peers(4, pipeline_depth_max=64, batch_requests_max=1)
    primary = peers.replica("n0")
    shell = Shell(primary)
    window = peers.cfg.watermark_window
    k = peers.cfg.checkpoint_interval
    out = []
    for _ in range(window + k + 1):
        out += shell.run(peers.deliver(primary, peers.submit("n3")))
    pps = decode_broadcasts(primary, out, PrePrepare)
    assert [pp.seq for pp in pps] == list(range(1, window + 1))
    for pp in pps[:k]:
        for s in ("n1", "n2"):
            shell.run(peers.deliver(primary, peers.prepare(s, 0, pp.seq, pp.digest)))
        for s in ("n1", "n2"):
            shell.run(peers.deliver(primary, peers.commit(s, 0, pp.seq, pp.digest)))
    assert primary.executed == k
    assert decode_broadcasts(primary, shell.log[-3:], PrePrepare) == []
    shell.log.clear()
    for s in ("n1", "n2"):
        shell.run(peers.deliver(primary, peers.checkpoint(s, k, shell.block_hash(k))))
    assert primary.stable_seq == k
    more = decode_broadcasts(primary, shell.log, PrePrepare)
    assert [pp.seq for pp in more] == list(range(window + 1, window + k + 1))


# ==========================================================================
# view change


def _backup_with_stable_checkpoint_and_prepared_entry():
    """n3 executed 1..4 (stable), prepared 5 in view 0, holds its request."""
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    _execute_up_to(peers, backup, shell, 4)
    h4 = shell.block_hash(4)
    for s in ("n0", "n1"):
        shell.run(peers.deliver(backup, peers.checkpoint(s, 4, h4)))
    assert backup.stable_seq == 4
    b5 = peers.batch(5)
    shell.run(peers.prepare_at(backup, b5))
    assert backup.log[5].prepared_cert is not None
    return peers, backup, shell, b5


def test_request_timer_expiry_starts_view_change_with_checkpoint_proof_and_prepared_certs():
    peers, backup, shell, b5 = _backup_with_stable_checkpoint_and_prepared_entry()
    (due,) = [a.at_ms for a in shell.log if isinstance(a, SetTimer)
              and a.name == TIMER_REQUEST][-1:]
    out = shell.run(backup.on_timer(TIMER_REQUEST, due))
    (vc,) = decode_broadcasts(backup, out, ViewChange)
    assert (vc.sender, vc.new_view, vc.stable_seq) == ("n3", 1, 4)
    assert {c.sender for c in vc.checkpoint_proof} >= {"n0", "n1"}
    assert {(c.seq, c.block_hash) for c in vc.checkpoint_proof} == {(4, shell.block_hash(4))}
    assert [(c.pre_prepare.seq, c.batch.digest(peers.chain)) for c in vc.prepared] == [
        (5, peers.digest(b5))]
    assert len(vc.prepared[0].prepares) == 2
    assert (backup.view, backup.active) == (1, False)


def test_request_timer_restarts_when_a_block_executes_and_stops_when_nothing_waits():
    peers = Peers(4)
    backup = peers.replica("n3")
    timeout = peers.cfg.request_timeout_ms
    s1, s2 = peers.submit("n2"), peers.submit("n2")
    out = peers.deliver(backup, s1) + peers.deliver(backup, s2)
    assert [a for a in out if isinstance(a, SetTimer)] == [SetTimer(TIMER_REQUEST,
                                                                    NOW + timeout)]
    t1 = NOW + 500
    out = peers.commit_at(backup, peers.batch(1, subs=[s1], time_ms=t1), now_ms=t1)
    assert actions_of(out, Execute)
    timers = [a for a in out if getattr(a, "name", None) == TIMER_REQUEST]
    assert [type(a).__name__ for a in timers] == ["CancelTimer", "SetTimer"]
    assert timers[-1].at_ms == t1 + timeout
    t2 = NOW + 600
    out = peers.commit_at(backup, peers.batch(2, subs=[s2], time_ms=t2), now_ms=t2)
    timers = [a for a in out if getattr(a, "name", None) == TIMER_REQUEST]
    assert [type(a).__name__ for a in timers] == ["CancelTimer"]
    assert TIMER_REQUEST not in backup.timers


def test_view_change_persists_new_view_number_before_broadcasting():
    peers = Peers(4)
    backup = peers.replica("n3")
    peers.deliver(backup, peers.submit("n2"))
    out = backup.on_timer(TIMER_REQUEST, NOW + peers.cfg.request_timeout_ms)
    i_vc = first_index(out, Broadcast)
    persists = [a for a in out[:i_vc] if isinstance(a, Persist)]
    assert any(codec.decode(v, size_max=100) == [1, False]
               for p in persists for k, v in p.puts if k == "view")


def test_request_timer_without_pending_request_does_nothing():
    peers = Peers(4)
    backup = peers.replica("n3")
    assert backup.on_timer(TIMER_REQUEST, NOW + 10**6) == []
    assert (backup.view, backup.active) == (0, True)


def test_backup_in_view_change_ignores_normal_case_messages_of_the_old_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    peers.deliver(backup, peers.submit("n2"))
    backup.on_timer(TIMER_REQUEST, NOW + peers.cfg.request_timeout_ms)
    out = peers.deliver_pre_prepare(backup, peers.batch(1))
    assert decode_broadcasts(backup, out, Prepare) == []


def test_f_plus_1_view_changes_for_higher_views_make_replica_join_the_smallest():
    peers = Peers(4)
    backup = peers.replica("n3")
    out = peers.deliver(backup, peers.view_change("n1", 3))
    assert decode_broadcasts(backup, out, ViewChange) == []  # f alone cannot pull it
    out = peers.deliver(backup, peers.view_change("n2", 2))
    (vc,) = decode_broadcasts(backup, out, ViewChange)
    assert (vc.sender, vc.new_view) == ("n3", 2)
    assert (backup.view, backup.active) == (2, False)


def test_f_plus_1_view_changes_join_also_in_a_7_node_cluster():
    peers = Peers(7)
    backup = peers.replica("n6")
    out = []
    for s, v in (("n1", 4), ("n2", 3)):
        out += peers.deliver(backup, peers.view_change(s, v))
    assert decode_broadcasts(backup, out, ViewChange) == []
    out = peers.deliver(backup, peers.view_change("n3", 5))
    (vc,) = decode_broadcasts(backup, out, ViewChange)
    assert vc.new_view == 3


def _prepared_scenario(peers):
    """b1 prepared at seq 1 and b3 at seq 3 in view 0; nothing at seq 2."""
    b1, b3 = peers.batch(1), peers.batch(3)
    return b1, b3, peers.prepared_cert(b1), peers.prepared_cert(b3)


def test_new_primary_sends_new_view_after_2f_plus_1_view_changes():
    peers = Peers(4)
    new_primary = peers.replica("n1")
    b1, b3, cert1, cert3 = _prepared_scenario(peers)
    peers.prepare_at(new_primary, b1)
    out = peers.deliver(new_primary, peers.view_change("n2", 1, prepared=[cert3]))
    assert decode_broadcasts(new_primary, out, NewView) == []
    out = peers.deliver(new_primary, peers.view_change("n3", 1, prepared=[cert1]))
    (nv,) = decode_broadcasts(new_primary, out, NewView)
    assert nv.sender == "n1" and nv.view == 1
    assert len({vc.sender for vc in nv.view_changes}) == peers.q
    null2 = Batch.null(2, 1, "n1")
    assert [(pp.view, pp.seq, pp.digest) for pp in nv.pre_prepares] == [
        (1, 1, peers.digest(b1)), (1, 2, peers.digest(null2)), (1, 3, peers.digest(b3))]
    i_nv = next(i for i, a in enumerate(out) if isinstance(a, Broadcast)
                and a.frame == nv.frame())
    assert any(isinstance(a, Persist) and "view" in dict(a.puts) for a in out[:i_nv])
    assert decode_broadcasts(new_primary, out, Prepare) == []
    assert (new_primary.view, new_primary.active) == (1, True)


def test_new_primary_times_its_first_batch_after_the_batch_the_new_view_reissued():
    peers = Peers(4)
    b1 = peers.batch(1, time_ms=NOW + 5_000)  # the old primary's clock ran 5 s ahead
    cert1 = peers.prepared_cert(b1)
    new_primary = peers.replica("n1")
    out = []
    for s in ("n2", "n3"):
        out += peers.deliver(new_primary, peers.view_change(s, 1, prepared=[cert1]))
    (nv,) = decode_broadcasts(new_primary, out, NewView)
    out = peers.deliver(new_primary, peers.submit("n3"))
    ((pp, extra),) = opened_broadcasts(new_primary, out, PrePrepare)
    assert pp.seq == 2
    backup = peers.replica("n3")
    peers.deliver(backup, nv)
    assert (backup.view, backup.active) == (1, True)
    out = backup.on_message("n1", pp.frame(extra), NOW)
    assert [p.seq for p in decode_broadcasts(backup, out, Prepare)] == [2], dict(backup.stats)


def _new_view_for_backup(peers):
    b1, b3, cert1, cert3 = _prepared_scenario(peers)
    vcs = [peers.view_change("n0", 1, prepared=[cert1]),
           peers.view_change("n1", 1),
           peers.view_change("n2", 1, prepared=[cert3])]
    null2 = Batch.null(2, 1, "n1")
    return vcs, [b1, null2, b3]


def test_backup_accepts_new_view_and_prepares_its_pre_prepares():
    peers = Peers(4)
    backup = peers.replica("n3")
    vcs, batches = _new_view_for_backup(peers)
    out = peers.deliver(backup, peers.new_view(1, vcs, batches))
    assert (backup.view, backup.active) == (1, True)
    prepares = decode_broadcasts(backup, out, Prepare)
    assert [(p.view, p.seq, p.digest) for p in prepares] == [
        (1, b.seq, peers.digest(b)) for b in batches]
    assert first_index(out, Persist) < first_index(out, Broadcast)
    # and the new view goes on: prepares from the other backups prepare seq 1
    out = peers.deliver(backup, peers.prepare("n2", 1, 1, peers.digest(batches[0])))
    assert [c.seq for c in decode_broadcasts(backup, out, Commit)] == [1]


def test_new_view_moves_a_backup_to_the_latest_stable_checkpoint_it_carries():
    peers = Peers(4)
    backup = peers.replica("n3")
    batches = [peers.batch(s) for s in range(1, 5)]
    h4 = reference_chain(peers.chain, batches)[-1].block_hash
    proof = peers.checkpoint_proof(4, h4, ["n0", "n1", "n2"])
    b5 = peers.batch(5)
    vcs = [peers.view_change("n0", 1, 4, proof, [peers.prepared_cert(b5)]),
           peers.view_change("n1", 1), peers.view_change("n2", 1)]
    out = peers.deliver(backup, peers.new_view(1, vcs, [b5]))
    assert (backup.view, backup.stable_seq, backup.stable_hash) == (1, 4, h4)
    assert [(p.seq, p.digest) for p in decode_broadcasts(backup, out, Prepare)] == [
        (5, peers.digest(b5))]
    assert [(f.from_seq, f.to_seq) for _, f in decode_sends(backup, out, Fetch)] == [(1, 4)]


def test_new_view_reissues_the_batch_prepared_in_the_highest_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    old = peers.batch(1, view=0)
    newer = peers.batch(1, view=1)
    cert_old = peers.prepared_cert(old)
    cert_new = peers.prepared_cert(newer)
    vcs = [peers.view_change("n0", 2, prepared=[cert_old]),
           peers.view_change("n1", 2, prepared=[cert_new]),
           peers.view_change("n2", 2)]
    out = peers.deliver(backup, peers.new_view(2, vcs, [old]))
    assert backup.stats["rejected_bad_new_view"] == 1
    assert decode_broadcasts(backup, out, Prepare) == []
    out = peers.deliver(backup, peers.new_view(2, vcs, [newer]))
    assert [p.digest for p in decode_broadcasts(backup, out, Prepare)] == [peers.digest(newer)]


def _assert_new_view_rejected(backup, out, reason="rejected_bad_new_view"):
    assert not sends_anything(out), out
    assert (backup.view, backup.active) == (0, True)
    assert backup.stats[reason] == 1, dict(backup.stats)


def test_backup_rejects_new_view_from_the_wrong_primary():
    peers = Peers(4)
    backup = peers.replica("n3")
    vcs, batches = _new_view_for_backup(peers)
    out = peers.deliver(backup, peers.new_view(1, vcs, batches, sender="n2"))
    _assert_new_view_rejected(backup, out)


def test_backup_rejects_new_view_with_only_2f_view_changes():
    peers = Peers(4)
    backup = peers.replica("n3")
    vcs, batches = _new_view_for_backup(peers)
    out = peers.deliver(backup, peers.new_view(1, vcs[:2], [batches[0]]))
    _assert_new_view_rejected(backup, out)


def test_backup_rejects_new_view_repeating_a_view_change():
    peers = Peers(4)
    backup = peers.replica("n3")
    vcs, batches = _new_view_for_backup(peers)
    out = peers.deliver(backup, peers.new_view(1, [vcs[0], vcs[0], vcs[1]], [batches[0]]))
    _assert_new_view_rejected(backup, out)


@pytest.mark.parametrize("how", ["drop_null", "swap_order", "other_batch", "extra_seq",
                                 "none"])
def test_backup_rejects_new_view_whose_pre_prepares_differ_from_the_view_changes(how):
    peers = Peers(4)
    backup = peers.replica("n3")
    vcs, batches = _new_view_for_backup(peers)
    b1, null2, b3 = batches
    wrong = {
        "drop_null": [b1, b3],
        "swap_order": [null2, b1, b3],
        "other_batch": [peers.batch(1), null2, b3],
        "extra_seq": [b1, null2, b3, Batch.null(4, 1, "n1")],
        "none": [],
    }[how]
    out = peers.deliver(backup, peers.new_view(1, vcs, wrong))
    _assert_new_view_rejected(backup, out)


def test_backup_rejects_new_view_whose_pre_prepare_has_another_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    vcs, batches = _new_view_for_backup(peers)
    pps = [PrePrepare.create(peers.signers["n1"], peers.chain, "n1", 0, b.seq,
                             peers.digest(b)) for b in batches]
    nv = NewView.create(peers.signers["n1"], peers.chain, "n1", 1, tuple(vcs), tuple(pps))
    out = peers.deliver(backup, nv)
    _assert_new_view_rejected(backup, out)


@pytest.mark.parametrize("flaw", ["repeated_signer", "prepare_from_primary", "too_few",
                                  "other_digest", "pp_not_from_primary"])
def test_backup_rejects_new_view_holding_a_bad_prepared_certificate(flaw):
    peers = Peers(4)
    backup = peers.replica("n3")
    b1 = peers.batch(1)
    d1 = peers.digest(b1)
    pp = peers.pre_prepare(b1)
    prep = {s: peers.prepare(s, 0, 1, d1) for s in peers.ids}
    prepares = {
        "repeated_signer": (prep["n1"], prep["n1"]),
        "prepare_from_primary": (prep["n0"], prep["n1"]),
        "too_few": (prep["n1"],),
        "other_digest": (prep["n1"], peers.prepare("n2", 0, 1, sha256(b"x"))),
        "pp_not_from_primary": (prep["n1"], prep["n2"]),
    }[flaw]
    if flaw == "pp_not_from_primary":
        pp = peers.pre_prepare(b1, sender="n1")
    bad = PreparedCert(pp, b1, prepares)
    vcs = [peers.view_change("n0", 1, prepared=[bad]), peers.view_change("n1", 1),
           peers.view_change("n2", 1)]
    out = peers.deliver(backup, peers.new_view(1, vcs, [b1]))
    _assert_new_view_rejected(backup, out, "rejected_bad_prepared_cert")
    # the same view change alone is refused as well
    out = peers.deliver(backup, vcs[0])
    assert not sends_anything(out)
    assert backup.stats["rejected_bad_prepared_cert"] == 2
    assert "n0" not in backup.vc_latest


def test_backup_rejects_view_change_with_a_bad_checkpoint_proof():
    peers = Peers(4)
    backup = peers.replica("n3")
    h = sha256(b"h4")
    for proof in (peers.checkpoint_proof(4, h, ["n0", "n1"]),
                  peers.checkpoint_proof(4, h, ["n0", "n0", "n1"]),
                  (*peers.checkpoint_proof(4, h, ["n0", "n1"]), peers.checkpoint("n2", 4,
                                                                                  sha256(b"y")))):
        out = peers.deliver(backup, peers.view_change("n1", 1, 4, proof))
        assert not sends_anything(out)
    assert backup.stats["rejected_bad_checkpoint_proof"] == 3
    assert "n1" not in backup.vc_latest


def test_new_view_timer_is_set_at_2f_plus_1_view_changes_and_doubles_after_each_expiry():
    peers = Peers(4)
    backup = peers.replica("n3")
    timeout = peers.cfg.view_change_timeout_ms
    peers.deliver(backup, peers.submit("n2"))
    t = NOW + peers.cfg.request_timeout_ms
    out = backup.on_timer(TIMER_REQUEST, t)
    out += peers.deliver(backup, peers.view_change("n0", 1), now_ms=t)
    assert [a for a in out if isinstance(a, SetTimer) and a.name == TIMER_NEW_VIEW] == []
    out = peers.deliver(backup, peers.view_change("n2", 1), now_ms=t)
    assert SetTimer(TIMER_NEW_VIEW, t + timeout) in out
    # no NEW-VIEW comes: the replica moves on to v+2
    t2 = t + timeout
    out = backup.on_timer(TIMER_NEW_VIEW, t2)
    (vc,) = decode_broadcasts(backup, out, ViewChange)
    assert vc.new_view == 2 and backup.view == 2
    out = peers.deliver(backup, peers.view_change("n0", 2), now_ms=t2)
    out += peers.deliver(backup, peers.view_change("n1", 2), now_ms=t2)
    assert SetTimer(TIMER_NEW_VIEW, t2 + 2 * timeout) in out
    t3 = t2 + 2 * timeout
    backup.on_timer(TIMER_NEW_VIEW, t3)
    out = peers.deliver(backup, peers.view_change("n0", 3), now_ms=t3)
    out += peers.deliver(backup, peers.view_change("n1", 3), now_ms=t3)
    assert SetTimer(TIMER_NEW_VIEW, t3 + 4 * timeout) in out


def test_new_primary_never_sends_two_pre_prepares_for_the_same_view_and_sequence_number():
    # Regression: when the NEW-VIEW carried a stable checkpoint newer than the new
    # primary's own and it held unproposed requests, _set_stable proposed before
    # next_seq was claimed for the new view, and the primary then proposed the same
    # seq again with another digest.
    peers = Peers(4)
    new_primary = peers.replica("n1")
    shell = Shell(new_primary)
    _execute_up_to(peers, new_primary, shell, 4)  # executed 4, checkpoint not yet stable
    shell.run(peers.deliver(new_primary, peers.submit("n3")))  # a request to propose
    proof = peers.checkpoint_proof(4, shell.block_hash(4), ["n0", "n2", "n3"])
    out = []
    for s in ("n2", "n3"):
        out += shell.run(peers.deliver(new_primary, peers.view_change(s, 1, 4, proof)))
    assert decode_broadcasts(new_primary, out, NewView)
    pps = [(pp.view, pp.seq) for pp in decode_broadcasts(new_primary, out, PrePrepare)]
    assert pps, "it proposes the pending request in the new view"
    assert len(pps) == len(set(pps)), f"two PRE-PREPAREs for one (view, seq): {pps}"


# ==========================================================================
# state transfer


def _stable_beyond_execution(peers):
    batches = [peers.batch(s) for s in range(1, 5)]
    chain = reference_chain(peers.chain, batches)
    h4 = chain[-1].block_hash
    proof = peers.checkpoint_proof(4, h4, ["n0", "n1", "n2"])
    backup = peers.replica("n3")
    shell = Shell(backup)
    out = []
    for c in proof:
        out += shell.run(peers.deliver(backup, c))
    return backup, shell, batches, proof, out


def test_stable_checkpoint_beyond_execution_makes_replica_fetch_blocks():
    peers = Peers(4)
    backup = peers.replica("n3")
    h4 = sha256(b"h4")
    out = []
    for s in ("n0", "n1"):
        out += peers.deliver(backup, peers.checkpoint(s, 4, h4))
    assert decode_sends(backup, out, Fetch) == []
    backup, _shell, _batches, _proof, out = _stable_beyond_execution(peers)
    assert backup.stable_seq == 4
    ((to, fetch),) = decode_sends(backup, out, Fetch)
    assert to in {"n0", "n1", "n2"}
    assert (fetch.from_seq, fetch.to_seq) == (1, 4)


def test_valid_blocks_reply_executes_blocks_in_order():
    peers = Peers(4)
    backup, shell, batches, proof, out = _stable_beyond_execution(peers)
    ((to, _),) = decode_sends(backup, out, Fetch)
    blocks = [CommittedBlock(b, peers.commit_cert(b)) for b in batches]
    out = shell.run(peers.deliver(backup, peers.blocks(to, proof, blocks)))
    assert [e.batch.seq for e in actions_of(out, Execute)] == [1, 2, 3, 4]
    assert backup.executed == 4
    assert shell.block_hash(4) == backup.stable_hash


def _bad_cert(peers, batch, flaw):
    d = peers.digest(batch)
    good = peers.commit_cert(batch)
    return {
        "too_few": good[:-1],
        "repeated": (good[0], good[0], good[1]),
        "other_digest": (*good[:-1], peers.commit(peers.ids[3], 0, batch.seq, sha256(b"x"))),
        "other_seq": tuple(peers.commit(s, 0, batch.seq + 1, d) for s in peers.ids[:3]),
        "mixed_views": (peers.commit("n0", 0, 1, d), peers.commit("n1", 0, 1, d),
                        peers.commit("n2", 1, 1, d)),
    }[flaw]


@pytest.mark.parametrize("flaw", ["too_few", "repeated", "other_digest", "other_seq",
                                  "mixed_views"])
def test_blocks_with_a_bad_commit_certificate_are_rejected(flaw):
    peers = Peers(4)
    backup = peers.replica("n3")
    b1 = peers.batch(1)
    out = peers.deliver(backup, peers.blocks("n1", (), [CommittedBlock(b1, _bad_cert(
        peers, b1, flaw))]))
    assert actions_of(out, Execute) == []
    assert not sends_anything(out)
    assert backup.stats["rejected_bad_commit_cert"] == 1
    assert backup.next_exec == 1


def test_blocks_reply_with_one_bad_certificate_loses_no_good_block():
    # Regression: _on_blocks used to dispatch block 1 (next_exec moved on) and then
    # raise on block 2's certificate, discarding the Execute(1) it had built.
    peers = Peers(4)
    backup = peers.replica("n3")
    b1, b2 = peers.batch(1), peers.batch(2)
    blocks = [CommittedBlock(b1, peers.commit_cert(b1)),
              CommittedBlock(b2, _bad_cert(peers, b2, "too_few"))]
    out = peers.deliver(backup, peers.blocks("n1", (), blocks))
    dispatched = [e.batch.seq for e in actions_of(out, Execute)]
    assert dispatched == list(range(1, backup.next_exec)), (
        f"handed {dispatched} to the shell but next_exec is {backup.next_exec}")
    assert backup.stats["rejected_bad_commit_cert"] == 1


def test_fetch_is_answered_with_executed_blocks_only():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    _execute_up_to(peers, backup, shell, 2)
    out = peers.deliver(backup, peers.fetch("n1", 1, 10))
    (serve,) = [a for a in out if type(a).__name__ == "ServeBlocks"]
    assert (serve.to, serve.from_seq, serve.to_seq) == ("n1", 1, 2)
    assert peers.deliver(backup, peers.fetch("n1", 3, 10)) == []


# ==========================================================================
# retransmission (STATUS)


def test_status_timer_rebroadcasts_the_view_change_while_waiting_for_new_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    peers.deliver(backup, peers.submit("n2"))
    t = NOW + peers.cfg.request_timeout_ms
    backup.on_timer(TIMER_REQUEST, t)
    out = backup.on_timer("status", t)
    assert [vc.new_view for vc in decode_broadcasts(backup, out, ViewChange)] == [1]
    assert SetTimer("status", t + peers.cfg.status_interval_ms) in out


def test_status_timer_retransmits_votes_only_for_entries_stuck_an_interval():
    peers = Peers(4)
    backup = peers.replica("n3")
    batch = peers.batch(1)
    peers.deliver_pre_prepare(backup, batch)
    interval = peers.cfg.status_interval_ms
    out = backup.on_timer("status", NOW + interval - 1)
    assert decode_broadcasts(backup, out, Prepare) == []
    out = backup.on_timer("status", NOW + 2 * interval)
    assert [(p.seq, p.digest) for p in decode_broadcasts(backup, out, Prepare)] == [
        (1, peers.digest(batch))]


def test_replica_in_a_newer_view_answers_an_older_status_with_its_new_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    vcs = [peers.view_change(s, 1) for s in ("n0", "n1", "n2")]
    nv = peers.new_view(1, vcs)
    peers.deliver(backup, nv)
    out = peers.deliver(backup, peers.status("n0", view=0))
    assert [(to, m.view) for to, m in decode_sends(backup, out, NewView)] == [("n0", 1)]
    assert peers.deliver(backup, peers.status("n0", view=1)) == []


# ==========================================================================
# crash recovery


def _restart(peers, shell, node):
    replica = peers.replica(node, NOW, dict(shell.records), shell.executed_tip())
    return replica, Shell(replica, dict(shell.records), shell.tip, set(shell.executed_keys))


def test_restarted_backup_does_not_prepare_a_conflicting_pre_prepare():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    first, second = peers.batch(1), peers.batch(1)
    out = shell.run(peers.deliver_pre_prepare(backup, first))
    assert len(decode_broadcasts(backup, out, Prepare)) == 1
    restarted, shell2 = _restart(peers, shell, "n3")
    out = shell2.run(peers.deliver_pre_prepare(restarted, second))
    assert decode_broadcasts(restarted, out, Prepare) == []
    assert restarted.log[1].pp.digest == peers.digest(first)
    # it still agrees to what it prepared
    out = shell2.run(peers.deliver(restarted, peers.prepare("n1", 0, 1, peers.digest(first))))
    assert [c.digest for c in decode_broadcasts(restarted, out, Commit)] == [
        peers.digest(first)]


def test_restarted_replica_that_prepared_reports_it_in_its_view_change():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    b1 = peers.batch(1)
    shell.run(peers.prepare_at(backup, b1))
    restarted, shell2 = _restart(peers, shell, "n3")
    out = shell2.run(peers.deliver(restarted, peers.view_change("n0", 1)))
    out += shell2.run(peers.deliver(restarted, peers.view_change("n1", 1)))
    (vc,) = decode_broadcasts(restarted, out, ViewChange)
    assert [c.batch.digest(peers.chain) for c in vc.prepared] == [peers.digest(b1)]


def test_restarted_primary_does_not_reuse_a_sequence_number():
    peers = Peers(4)
    primary = peers.replica("n0")
    shell = Shell(primary)
    out = []
    for _ in range(2):
        out += shell.run(peers.deliver(primary, peers.submit("n3")))
    assert [pp.seq for pp in decode_broadcasts(primary, out, PrePrepare)] == [1, 2]
    restarted, shell2 = _restart(peers, shell, "n0")
    out = shell2.run(peers.deliver(restarted, peers.submit("n3")))
    assert [pp.seq for pp in decode_broadcasts(restarted, out, PrePrepare)] == [3]


def test_restarted_node_does_not_reuse_a_submission_id():
    peers = Peers(4)
    node = peers.replica("n2")
    shell = Shell(node)
    from pbftd.core.messages import Request
    key1, out = node.submit([Request("c", "r1", b"x")], NOW)
    shell.run(out)
    restarted, _shell2 = _restart(peers, shell, "n2")
    key2, _ = restarted.submit([Request("c", "r2", b"y")], NOW)
    assert key2[1] > key1[1]


def test_submission_ids_are_reserved_ahead_so_most_submits_persist_nothing():
    from pbftd.core.messages import Request
    peers = Peers(4)
    node = peers.replica("n2")
    outs = [node.submit([Request("c", f"r{i}", b"x")], NOW + i)[1] for i in range(3)]
    assert [len(actions_of(out, Persist)) for out in outs] == [1, 0, 0]


def test_crash_after_any_submit_is_sent_never_reuses_a_submission_id():
    """The reservation is durable before the first SUBMIT above the old one
    leaves; a crash at any later SUBMIT restarts above every id sent."""
    from pbftd.core.messages import Request
    peers = Peers(4)
    node = peers.replica("n2")
    records: dict = {}
    sent = []
    for i in range(3):
        key, out = node.submit([Request("c", f"r{i}", b"x")], NOW)
        (at,) = [j for j, a in enumerate(out) if isinstance(a, Broadcast)]
        records = _records_before(out, at, records)
        sent.append(key[1])
        restarted = peers.replica("n2", records=dict(records))
        again, _ = restarted.submit([Request("c", "after", b"y")], NOW)
        assert again[1] > max(sent)


def test_prepared_record_stores_the_batch_once_and_restores_the_certificate():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    b1 = peers.batch(1, subs=[peers.submit("n2", b"P" * 4000)])
    shell.run(peers.prepare_at(backup, b1))
    record = shell.records["entry/" + "1".zfill(20)]
    assert record.count(b"P" * 4000) == 1
    restarted, _ = _restart(peers, shell, "n3")
    cert = restarted.log[1].prepared_cert
    assert cert is not None and cert.batch.digest(peers.chain) == peers.digest(b1)
    assert len(cert.prepares) == peers.q - 1


def test_restarted_replica_keeps_its_view_during_and_after_a_view_change():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    shell.run(peers.deliver(backup, peers.submit("n2")))
    shell.run(backup.on_timer(TIMER_REQUEST, NOW + peers.cfg.request_timeout_ms))
    restarted, shell2 = _restart(peers, shell, "n3")
    assert (restarted.view, restarted.active) == (1, False)
    start = restarted.start(NOW)  # a second start re-announces, as the first did
    assert [vc.new_view for vc in decode_broadcasts(restarted, start, ViewChange)] == [1]
    vcs = [peers.view_change(s, 1) for s in ("n0", "n1", "n2")]
    shell2.run(peers.deliver(restarted, peers.new_view(1, vcs)))
    assert (restarted.view, restarted.active) == (1, True)
    again, _ = _restart(peers, shell2, "n3")
    assert (again.view, again.active) == (1, True)


def test_restart_rebroadcasts_the_view_change_in_progress():
    peers = Peers(4)
    backup = peers.replica("n3")
    shell = Shell(backup)
    shell.run(peers.deliver(backup, peers.submit("n2")))
    shell.run(backup.on_timer(TIMER_REQUEST, NOW + peers.cfg.request_timeout_ms))
    fresh = peers.replica("n3", records=None)
    out = fresh.start(NOW, dict(shell.records), shell.executed_tip())
    assert [vc.new_view for vc in decode_broadcasts(fresh, out, ViewChange)] == [1]


def _records_before(actions, index, records=None):
    """What a shell made durable before performing ``actions[index]``."""
    records = dict(records or {})
    for a in actions[:index]:
        if isinstance(a, Persist):
            records.update(a.puts)
            for key in a.deletes:
                records.pop(key, None)
    return records


def _crash_points(replica, actions, kind):
    """Indices of the Broadcasts of ``kind`` in ``actions``."""
    return [i for i, a in enumerate(actions) if isinstance(a, Broadcast)
            and isinstance(replica.wire.open(a.frame)[0], kind)]


def test_crash_right_after_a_prepare_is_sent_cannot_make_the_replica_prepare_another_digest():
    peers = Peers(4)
    backup = peers.replica("n3")
    first, second = peers.batch(1), peers.batch(1)
    out = peers.deliver_pre_prepare(backup, first)
    (i,) = _crash_points(backup, out, Prepare)
    restarted = peers.replica("n3", records=_records_before(out, i))
    again = peers.deliver_pre_prepare(restarted, second)
    assert decode_broadcasts(restarted, again, Prepare) == []


def test_crash_right_after_a_commit_is_sent_keeps_the_prepared_certificate():
    peers = Peers(4)
    backup = peers.replica("n3")
    b1 = peers.batch(1)
    out = peers.prepare_at(backup, b1)
    (i,) = _crash_points(backup, out, Commit)
    restarted = peers.replica("n3", records=_records_before(out, i))
    vcs = [peers.view_change(s, 1) for s in ("n0", "n1")]
    out = []
    for vc in vcs:
        out += peers.deliver(restarted, vc)
    (vc,) = decode_broadcasts(restarted, out, ViewChange)
    assert [c.pre_prepare.digest for c in vc.prepared] == [peers.digest(b1)]


def test_crash_right_after_a_view_change_is_sent_keeps_the_replica_out_of_the_old_view():
    peers = Peers(4)
    backup = peers.replica("n3")
    peers.deliver(backup, peers.submit("n2"))
    out = backup.on_timer(TIMER_REQUEST, NOW + peers.cfg.request_timeout_ms)
    (i,) = _crash_points(backup, out, ViewChange)
    restarted = peers.replica("n3", records=_records_before(out, i))
    assert (restarted.view, restarted.active) == (1, False)
    again = peers.deliver_pre_prepare(restarted, peers.batch(1))
    assert decode_broadcasts(restarted, again, Prepare) == []


def test_crash_right_after_a_pre_prepare_is_sent_cannot_make_the_primary_reuse_its_seq():
    peers = Peers(4)
    primary = peers.replica("n0")
    out = peers.deliver(primary, peers.submit("n3"))
    (i,) = _crash_points(primary, out, PrePrepare)
    restarted = peers.replica("n0", records=_records_before(out, i))
    again = peers.deliver(restarted, peers.submit("n3"))
    assert [pp.seq for pp in decode_broadcasts(restarted, again, PrePrepare)] == [2]


def test_crash_right_after_new_view_is_sent_cannot_make_the_new_primary_reuse_its_seqs():
    peers = Peers(4)
    new_primary = peers.replica("n1")
    _b1, _b3, cert1, cert3 = _prepared_scenario(peers)
    out = peers.deliver(new_primary, peers.view_change("n2", 1, prepared=[cert3]))
    out += peers.deliver(new_primary, peers.view_change("n3", 1, prepared=[cert1]))
    (i,) = _crash_points(new_primary, out, NewView)
    restarted = peers.replica("n1", records=_records_before(out, i))
    assert (restarted.view, restarted.active) == (1, True)
    again = peers.deliver(restarted, peers.submit("n3"))
    assert [(pp.view, pp.seq) for pp in decode_broadcasts(restarted, again, PrePrepare)] == [
        (1, 4)]


# ==========================================================================
# authentication


def _pre_prepare_frames(peers):
    batch = peers.batch(1)
    d = peers.digest(batch)
    extra = batch.to_wire()
    mallory = Signer.from_seed(sha256(b"mallory"))
    valid = peers.pre_prepare(batch)
    return {
        "non_member": ("mallory", PrePrepare.create(mallory, peers.chain, "mallory", 0, 1, d)
                       .frame(extra), "rejected_unknown_sender"),
        "bad_signature": ("n0", PrePrepare.create(peers.signers["n1"], peers.chain, "n0", 0, 1,
                                                  d).frame(extra), "rejected_bad_signature"),
        "sender_not_link_peer": ("n1", valid.frame(extra), "rejected_sender_mismatch"),
        "other_chain": ("n0", PrePrepare.create(peers.signers["n0"], "another-chain", "n0", 0,
                                                1, d).frame(extra), "rejected_wrong_domain"),
        "valid": ("n0", valid.frame(extra), None),
    }


@pytest.mark.parametrize("case", ["non_member", "bad_signature", "sender_not_link_peer",
                                  "other_chain"])
def test_unauthenticated_message_is_dropped_and_counted(case):
    peers = Peers(4)
    backup = peers.replica("n3")
    via, frame, stat = _pre_prepare_frames(peers)[case]
    out = backup.on_message(via, frame, NOW)
    assert not any(isinstance(a, (Send, Broadcast, Persist, Execute)) for a in out)
    assert backup.stats[stat] == 1
    assert rejected(backup) == 1
    assert 1 not in backup.log
    # the same pre-prepare, authentic, is accepted: the test can tell the difference
    via, frame, _ = _pre_prepare_frames(peers)["valid"]
    assert decode_broadcasts(backup, backup.on_message(via, frame, NOW), Prepare)


def test_commit_certificate_from_a_non_member_is_refused():
    peers = Peers(4)
    backup = peers.replica("n3")
    b1 = peers.batch(1)
    d = peers.digest(b1)
    mallory = Signer.from_seed(sha256(b"mallory"))
    cert = (*peers.commit_cert(b1)[:2], Commit.create(mallory, peers.chain, "mallory", 0, 1, d))
    out = peers.deliver(backup, peers.blocks("n1", (), [CommittedBlock(b1, cert)]))
    assert actions_of(out, Execute) == []
    assert backup.stats["rejected_unknown_sender"] == 1
