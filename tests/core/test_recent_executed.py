"""Executed submission keys are remembered for ``recent_executed_ms`` (and at
most ``recent_executed_max``): a late copy inside that window is dropped, and
memory stops growing after it (issue 6's RSS target)."""

from __future__ import annotations

from .harness import NOW, Peers, Shell


def _execute(p: Peers, shell: Shell, seq: int, now_ms: int, origin: str = "n2"):  # type: ignore[no-untyped-def]
    sub = p.submit(origin, f"payload-{seq}".encode())
    batch = p.batch(seq, subs=(sub,), time_ms=now_ms)
    shell.run(p.commit_at(shell.replica, batch, now_ms=now_ms), now_ms)
    assert shell.replica.executed == seq
    return sub


def test_a_late_copy_inside_the_window_is_dropped_and_old_keys_are_forgotten() -> None:
    p = Peers(4, recent_executed_ms=60_000)
    replica = p.replica("n1")
    shell = Shell(replica)
    first = _execute(p, shell, 1, NOW)
    shell.run(p.deliver(replica, first, now_ms=NOW + 59_000), NOW + 59_000)
    assert first.key not in replica.pending, "a late copy was taken as new"
    _execute(p, shell, 2, NOW + 60_001)
    assert first.key not in replica.recent_executed
    assert len(replica.recent_executed) == 1


def test_the_count_bound_holds_inside_the_window() -> None:
    p = Peers(4, recent_executed_max=3)
    replica = p.replica("n1")
    shell = Shell(replica)
    subs = [_execute(p, shell, seq, NOW + seq) for seq in range(1, 6)]
    assert list(replica.recent_executed) == [s.key for s in subs[-3:]]
