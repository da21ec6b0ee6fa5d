"""How the primary cuts batches under load (ReplicaConfig.partial_depth_max).

Not a rule of the paper but of its batching: a full batch goes out whenever
the pipeline has room; a partial one only after ``batch_wait_ms`` and only
while fewer than ``partial_depth_max`` batches are in flight.  Requests that
arrive meanwhile wait and fill one larger batch.  Each test steps the primary
by hand and checks the PRE-PREPAREs it broadcasts.
"""

from __future__ import annotations

from pbftd.core.actions import TIMER_BATCH, SetTimer
from pbftd.core.messages import Batch, PrePrepare, Submit
from tests.core.harness import NOW, Peers, Shell, actions_of, opened_broadcasts


def _proposed(peers: Peers, shell: Shell, out: list) -> list[Batch]:
    return [Batch.parse(extra, shell.replica.wire)
            for _pp, extra in opened_broadcasts(shell.replica, out, PrePrepare)]


def _execute(peers: Peers, shell: Shell, batch: Batch, now_ms: int = NOW) -> list:
    return shell.run(peers.commit_at(shell.replica, batch, now_ms=now_ms), now_ms)


def _keys(batch: Batch) -> list[tuple[str, int]]:
    return [s.key for s in batch.subs]


def test_a_partial_batch_waits_while_one_is_in_flight_and_then_takes_all_that_came() -> None:
    peers = Peers(4, partial_depth_max=1, batch_wait_ms=0)
    shell = Shell(peers.replica("n0"))
    first = peers.submit("n1")
    (b1,) = _proposed(peers, shell, shell.run(peers.deliver(shell.replica, first)))
    later: list[Submit] = [peers.submit(f"n{1 + i % 3}") for i in range(5)]
    for sub in later:
        assert not _proposed(peers, shell, shell.run(peers.deliver(shell.replica, sub)))
    (b2,) = _proposed(peers, shell, _execute(peers, shell, b1))
    assert b2.seq == 2 and _keys(b2) == [s.key for s in later]


def test_full_batches_still_fill_the_pipeline() -> None:
    peers = Peers(4, partial_depth_max=1, pipeline_depth_max=3, batch_requests_max=1,
                  batch_wait_ms=0)
    shell = Shell(peers.replica("n0"))
    proposed = []
    for i in range(5):
        out = shell.run(peers.deliver(shell.replica, peers.submit(f"n{1 + i % 3}")))
        proposed += _proposed(peers, shell, out)
    assert [b.seq for b in proposed] == [1, 2, 3]  # full batches, up to the pipeline depth


def test_a_partial_batch_first_waits_batch_wait_ms() -> None:
    peers = Peers(4, partial_depth_max=1, batch_wait_ms=5)
    shell = Shell(peers.replica("n0"))
    out = shell.run(peers.deliver(shell.replica, peers.submit("n1")))
    assert not _proposed(peers, shell, out)
    (timer,) = [a for a in actions_of(out, SetTimer) if a.name == TIMER_BATCH]
    assert timer.at_ms == NOW + 5
    assert len(_proposed(peers, shell, shell.run(shell.replica.on_timer(TIMER_BATCH, NOW + 5),
                                                  NOW + 5))) == 1


def test_a_batch_that_waited_goes_out_as_soon_as_the_pipeline_drains() -> None:
    peers = Peers(4, partial_depth_max=1, batch_wait_ms=5)
    shell = Shell(peers.replica("n0"))
    shell.run(peers.deliver(shell.replica, peers.submit("n1")))
    (b1,) = _proposed(peers, shell, shell.run(shell.replica.on_timer(TIMER_BATCH, NOW + 5)))
    waiting = peers.submit("n2")
    out = shell.run(peers.deliver(shell.replica, waiting, now_ms=NOW + 6), NOW + 6)
    assert not _proposed(peers, shell, out)
    # Its wait ends while b1 is still in flight: nothing may go out yet ...
    assert not _proposed(peers, shell, shell.run(shell.replica.on_timer(TIMER_BATCH, NOW + 11),
                                                 NOW + 11))
    # ... and it goes out when b1 executes, without waiting again.
    (b2,) = _proposed(peers, shell, _execute(peers, shell, b1, now_ms=NOW + 12))
    assert _keys(b2) == [waiting.key]


def test_with_a_deeper_partial_pipeline_partial_batches_overlap() -> None:
    peers = Peers(4, partial_depth_max=2, batch_wait_ms=0)
    shell = Shell(peers.replica("n0"))
    proposed = []
    for i in range(4):
        out = shell.run(peers.deliver(shell.replica, peers.submit(f"n{1 + i % 3}")))
        proposed += _proposed(peers, shell, out)
    assert [b.seq for b in proposed] == [1, 2]
