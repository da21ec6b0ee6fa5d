"""The request timer must not let a primary pass one submission over for
ever by ordering others (found in review: the timer was restarted on every
execution), and must not accuse an honest primary working through a queue
in arrival order."""

from __future__ import annotations

from pbftd.core.actions import Broadcast
from pbftd.core.messages import CommittedBlock, Submit, ViewChange
from pbftd.core.replica import TIMER_REQUEST, Replica

from .harness import NOW, Peers, Shell

STEP_MS = 500
# a window wider than the 40 blocks a test commits, so none waits for a checkpoint
WIDE = {"checkpoint_interval": 16, "watermark_window": 64}


def _accuses(replica: Replica, out: list) -> bool:  # type: ignore[type-arg]
    return any(isinstance(a, Broadcast) and isinstance(replica.wire.open(a.frame)[0], ViewChange)
               for a in out)


def _fire_due_timer(replica: Replica, now_ms: int) -> list:  # type: ignore[type-arg]
    due = replica.timers.get(TIMER_REQUEST)
    return replica.on_timer(TIMER_REQUEST, due) if due is not None and due <= now_ms else []


def _run_blocks(p: Peers, shell: Shell, blocks: list[tuple[int, list[Submit], bool]],
                until_ms: int) -> int | None:
    """Every STEP_MS from NOW: deliver the step's submissions from their origin
    (if the flag says so), commit them as the next block, fire a due request
    timer.  Returns when the replica accused the primary, or None."""
    replica = shell.replica
    seq = 1
    for now in range(NOW, until_ms, STEP_MS):
        if accused := _fire_due_timer(replica, now):
            assert _accuses(replica, accused)
            return now
        for at_ms, subs, direct in blocks:
            if at_ms != now:
                continue
            if direct:
                for sub in subs:
                    shell.run(p.deliver(replica, sub, now_ms=now), now)
            shell.run(p.commit_at(replica, p.batch(seq, subs=subs, time_ms=now), now_ms=now), now)
            seq += 1
    return None


def test_a_primary_ordering_later_submissions_but_not_ours_is_accused() -> None:
    p = Peers(4, **WIDE)
    shell = Shell(p.replica("n3"))
    passed_over = p.submit("n2", b"passed over")
    shell.run(p.deliver(shell.replica, passed_over, now_ms=NOW), NOW)
    # Each step a new submission arrives from n1 and the primary orders it, never ours.
    blocks = [(NOW + k * STEP_MS, [p.submit("n1", b"%d" % k)], True) for k in range(1, 40)]
    accused_at = _run_blocks(p, shell, blocks, NOW + 40 * STEP_MS)
    assert accused_at is not None, "the primary held our submission for 20 s unaccused"
    # restarted while what executes came within a timeout of ours, then one more timeout
    assert accused_at <= NOW + 2 * p.cfg.request_timeout_ms + STEP_MS
    assert shell.replica.stats["request_timer_kept"] > 0


def test_blocks_of_submissions_we_never_got_from_their_origin_do_not_restart_the_timer() -> None:
    """A primary can make any number of submissions of its own and send them
    only inside its PRE-PREPAREs."""
    p = Peers(4, **WIDE)
    shell = Shell(p.replica("n3"))
    shell.run(p.deliver(shell.replica, p.submit("n2", b"passed over"), now_ms=NOW), NOW)
    blocks = [(NOW + k * STEP_MS, [p.submit("n0", b"%d" % k)], False) for k in range(1, 40)]
    accused_at = _run_blocks(p, shell, blocks, NOW + 40 * STEP_MS)
    assert accused_at == NOW + p.cfg.request_timeout_ms


def test_an_honest_primary_working_through_a_queue_in_order_is_not_accused() -> None:
    """Forty submissions arrive within 2 s; one is executed every 500 ms, in
    arrival order, so the last waits 20 s, ten request timeouts."""
    p = Peers(4, **WIDE)
    shell = Shell(p.replica("n3"))
    replica = shell.replica
    queue = [p.submit(("n1", "n2")[k % 2], b"%d" % k) for k in range(40)]
    for k, sub in enumerate(queue):
        shell.run(p.deliver(replica, sub, now_ms=NOW + k * 50), NOW + k * 50)
    blocks = [(NOW + (k + 1) * STEP_MS, [sub], False) for k, sub in enumerate(queue)]
    accused_at = _run_blocks(p, shell, blocks, NOW + 42 * STEP_MS)
    assert accused_at is None, f"an honest primary was accused at +{accused_at - NOW} ms"
    assert not replica.pending and not replica.arrived_ms
    assert replica.stats["request_timer_kept"] == 0


def test_a_new_view_gives_the_new_primary_a_full_timeout() -> None:
    p = Peers(4, **WIDE)
    shell = Shell(p.replica("n3"))
    replica = shell.replica
    old = p.submit("n2", b"old")
    shell.run(p.deliver(replica, old, now_ms=NOW), NOW)
    later = NOW + 10_000
    vcs = [p.view_change(s, 1) for s in ("n1", "n2")]
    for vc in vcs:
        shell.run(p.deliver(replica, vc, now_ms=later), later)
    shell.run(p.deliver(replica, p.new_view(1, [*vcs, replica.vc_latest["n3"]]), now_ms=later),
              later)
    assert replica.view == 1 and replica.active
    assert replica.arrived_ms[old.key] == later
    assert replica.timers[TIMER_REQUEST] == later + p.cfg.request_timeout_ms


def test_blocks_fetched_while_catching_up_restart_the_timer() -> None:
    """Fault scenario 3: a backup resumed after 60 s fetched 1,600 blocks of
    submissions it never saw and, with those not restarting its timer,
    accused the honest primary in the middle of its catch-up."""
    p = Peers(4, **WIDE)
    shell = Shell(p.replica("n3"))
    replica = shell.replica
    shell.run(p.deliver(replica, p.submit("n2", b"ours"), now_ms=NOW), NOW)
    for k in range(1, 20):
        now = NOW + k * STEP_MS
        assert not _accuses(replica, _fire_due_timer(replica, now)), f"accused at +{now - NOW}"
        batch = p.batch(k, subs=[p.submit("n1", b"%d" % k)], time_ms=now)
        commits = tuple(p.commit(s, 0, k, p.digest(batch)) for s in ("n0", "n1", "n2"))
        reply = p.blocks("n1", (), [CommittedBlock(batch, commits)])
        shell.run(p.deliver(replica, reply, now_ms=now), now)
        assert replica.next_exec == k + 1
    assert replica.timers[TIMER_REQUEST] == now + p.cfg.request_timeout_ms
