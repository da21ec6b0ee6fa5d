"""A submission a backup saw only inside a PRE-PREPARE that a view change
dropped must not make it accuse the next primary (found by fault scenario 14:
an equivocating primary planted one of its own submissions per backup, and
each planted backup later forced a view change against an honest primary).
A submission received from its origin stays pending across the view change.
"""

from __future__ import annotations

from pbftd.core.actions import Broadcast
from pbftd.core.messages import ViewChange
from pbftd.core.replica import TIMER_REQUEST

from .harness import Peers, Shell


def _view_change_to_1(p: Peers, shell: Shell) -> None:
    replica = shell.replica
    vcs = [p.view_change(s, 1) for s in ("n1", "n2")]
    for vc in vcs:
        shell.run(p.deliver(replica, vc))
    shell.run(p.deliver(replica, p.new_view(1, [*vcs, replica.vc_latest["n3"]])))
    assert replica.view == 1 and replica.active


def _accuses(replica, out) -> bool:  # type: ignore[no-untyped-def]
    return any(isinstance(a, Broadcast) and isinstance(replica.wire.open(a.frame)[0], ViewChange)
               for a in out)


def test_a_planted_submission_is_dropped_with_its_pre_prepare() -> None:
    p = Peers(4)
    replica = p.replica("n3")
    shell = Shell(replica)
    planted = p.submit("n0", b"planted")
    shell.run(p.deliver_pre_prepare(replica, p.batch(1, subs=(planted,))))
    assert planted.key in replica.pending
    _view_change_to_1(p, shell)
    assert planted.key not in replica.pending
    due = replica.timers.get(TIMER_REQUEST)
    out = replica.on_timer(TIMER_REQUEST, due) if due is not None else []
    assert not _accuses(replica, out) and replica.view == 1, \
        "n3 started a view change against n1 for a submission n1 never saw"


def test_a_submission_from_its_origin_survives_the_view_change_and_is_pushed() -> None:
    p = Peers(4)
    replica = p.replica("n3")
    shell = Shell(replica)
    direct = p.submit("n2", b"direct")
    shell.run(p.deliver(replica, direct))
    shell.run(p.deliver_pre_prepare(replica, p.batch(1, subs=(direct,))))
    _view_change_to_1(p, shell)
    assert direct.key in replica.pending
    due = replica.timers[TIMER_REQUEST]
    out = replica.on_timer(TIMER_REQUEST, due)
    assert _accuses(replica, out) and replica.view == 2, \
        "a primary that never proposes a submission its origin sent must be accused"


def test_a_resumed_replica_restarts_its_request_timer_instead_of_accusing() -> None:
    """Paused (SIGSTOP) past its request timer, it has not read what the
    others sent meanwhile (fault scenario 3: a backup resumed after 60 s
    accused at once and sat alone in the next view)."""
    p = Peers(4)
    replica = p.replica("n3")
    shell = Shell(replica)
    direct = p.submit("n2", b"direct")
    shell.run(p.deliver(replica, direct))
    resumed = replica.timers[TIMER_REQUEST] + 60_000
    out = shell.run(replica.on_resumed(resumed), resumed)
    assert not _accuses(replica, out) and replica.view == 0
    assert replica.timers[TIMER_REQUEST] == resumed + p.cfg.request_timeout_ms
    # A primary that still does not propose it is accused one timeout later.
    out = replica.on_timer(TIMER_REQUEST, replica.timers[TIMER_REQUEST])
    assert _accuses(replica, out) and replica.view == 1
