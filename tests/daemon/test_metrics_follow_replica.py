"""/metrics reads the runtime's current replica, not the one it started with.

The runtime rebuilds its replica from disk when storage recovers or the
clock steps back (pbftd/runtime.py ``_rebuild_replica``).  /metrics used to
capture the first replica, so after a rebuild ``pbftd_view`` and the
replica's counts stood still for the life of the process.
"""

from collections import Counter
from types import SimpleNamespace

from pbftd.daemon import Node
from pbftd.rpcservice import _metrics
from tests.rpc.test_metrics import parse


def _replica(view: int, votes_not_needed: int) -> SimpleNamespace:
    return SimpleNamespace(view=view, stable_seq=view * 10, pending=[None] * view,
                           stats=Counter(votes_not_needed=votes_not_needed,
                                         view_changes_started=view, rejected_bad_sig=1))


def _node() -> Node:
    """A real Node (so ``node.replica`` is its own property) holding only
    what _metrics reads."""
    node = Node.__new__(Node)
    node.runtime = SimpleNamespace(  # type: ignore[assignment]
        replica=_replica(0, 7), stats=Counter(txs=5),
        mesh=SimpleNamespace(connected_peers=lambda: ["a"], stats={}))
    node.chain = SimpleNamespace(tip=lambda: SimpleNamespace(height=12))  # type: ignore[assignment]
    node.store = SimpleNamespace(memory_bytes=lambda: {"memtables": 1})  # type: ignore[assignment]
    return node


def _values(text: str) -> dict[str, float]:
    return {sample: value for family in parse(text).values()
            for sample, labels, value in family if not labels}


def test_metrics_follow_a_rebuilt_replica_and_type_counts_as_counters() -> None:
    node = _node()
    registry = _metrics(node)
    before = _values(registry.render())
    assert before["pbftd_view"] == 0 and before["pbftd_votes_not_needed_total"] == 7

    node.runtime.replica = _replica(3, 2)  # what _rebuild_replica does
    text = registry.render()
    after = _values(text)
    assert after["pbftd_view"] == 3
    assert after["pbftd_stable_checkpoint"] == 30
    assert after["pbftd_pending_submissions"] == 3
    assert after["pbftd_view_changes_total"] == 3
    assert after["pbftd_votes_not_needed_total"] == 2
    assert "# TYPE pbftd_view_changes_total counter" in text
    assert "# TYPE pbftd_transactions_total counter" in text
