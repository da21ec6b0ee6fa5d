"""A SUBMIT lost on the link to the primary is pushed again by its origin
(found by the message shim, docs/RELIABILITY.md finding 9): only the origin
can send it, so otherwise the backups that got it accuse an honest primary,
or, under load, the request waits forever."""

from __future__ import annotations

from pbftd.core.actions import Send
from pbftd.core.messages import Request, Submit
from pbftd.core.replica import PUSH_SUBMISSIONS_MAX, TIMER_STATUS, Replica

from .harness import NOW, Peers, Shell


def _pushes(replica: Replica, now_ms: int) -> list[tuple[str, Submit]]:
    out = replica.on_timer(TIMER_STATUS, now_ms)
    pushed = []
    for a in out:
        if isinstance(a, Send):
            msg = replica.wire.open(a.frame)[0]
            if isinstance(msg, Submit):
                pushed.append((a.to, msg))
    return pushed


def _own_submission(replica: Replica, shell: Shell, rid: str, now_ms: int = NOW):  # type: ignore[no-untyped-def]
    key, out = replica.submit([Request("client", rid, b"payload")], now_ms)
    shell.run(out, now_ms)
    return key


def test_an_unordered_own_submission_is_pushed_to_the_primary_after_half_an_interval() -> None:
    p = Peers(4)
    origin = p.replica("n2")
    shell = Shell(origin)
    key = _own_submission(origin, shell, "r1")
    interval = p.cfg.status_interval_ms
    assert _pushes(origin, NOW + interval // 2 - 1) == [], "pushed before it could be ordered"
    pushed = _pushes(origin, NOW + interval)
    assert [(peer, m.key) for peer, m in pushed] == [("n0", key)]
    assert _pushes(origin, NOW + interval + 1) == [], "pushed again at once"
    assert [m.key for _, m in _pushes(origin, NOW + 2 * interval)] == [key]


def test_a_submission_seen_in_a_pre_prepare_is_not_pushed() -> None:
    p = Peers(4)
    origin = p.replica("n2")
    shell = Shell(origin)
    key = _own_submission(origin, shell, "r1")
    sub = origin.pending[key]
    shell.run(p.deliver_pre_prepare(origin, p.batch(1, subs=(sub,))))
    assert _pushes(origin, NOW + 10 * p.cfg.status_interval_ms) == []


def test_after_a_view_change_the_new_primary_gets_the_unordered_ones() -> None:
    p = Peers(4)
    origin = p.replica("n2")
    shell = Shell(origin)
    key = _own_submission(origin, shell, "r1")
    vcs = [p.view_change(s, 1) for s in ("n1", "n3")]
    for vc in vcs:
        shell.run(p.deliver(origin, vc))
    origin_vc = origin.vc_latest.get("n2") or p.view_change("n2", 1)
    shell.run(p.deliver(origin, p.new_view(1, [*vcs, origin_vc])))
    assert origin.view == 1 and origin.active
    assert [(peer, m.key) for peer, m in _pushes(origin, NOW + 1)] == [("n1", key)]


def test_the_primary_never_pushes_and_a_tick_pushes_a_bounded_number() -> None:
    p = Peers(4)
    primary = p.replica("n0")
    shell = Shell(primary)
    _own_submission(primary, shell, "r1")
    assert _pushes(primary, NOW + 10 * p.cfg.status_interval_ms) == []

    p2 = Peers(4, batch_requests_max=1, pending_submissions_max=1000)
    origin = p2.replica("n2")
    shell2 = Shell(origin)
    keys = [_own_submission(origin, shell2, f"r{i}", NOW + i)
            for i in range(PUSH_SUBMISSIONS_MAX + 5)]
    first = _pushes(origin, NOW + 10 * p2.cfg.status_interval_ms)
    assert [m.key for _, m in first] == keys[:PUSH_SUBMISSIONS_MAX]
    second = _pushes(origin, NOW + 10 * p2.cfg.status_interval_ms + 1)
    assert [m.key for _, m in second] == keys[PUSH_SUBMISSIONS_MAX:]
