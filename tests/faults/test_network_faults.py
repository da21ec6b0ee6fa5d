"""Network faults between namespaced daemons (issue 7, scenarios 5-8).

Each daemon runs in its own network namespace (see netlab.py); faults are
nft rules at the bridge (partitions, one-way cuts), nft rules in a node's
namespace (random loss, duplication) and ``tc tbf`` (bandwidth).  netem is
not in this kernel, so there is no packet delay or reordering here.  Needs
root, iproute2, nftables; each test skips naming what is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import LoadLoop, backups, wait_until

from .faultlib import catch_up, log_offsets, views_started, wait_new_primary
from .invariants import Monotonic, check_all
from .netlab import NetnsCluster, netns_cluster

pytestmark = [pytest.mark.faults, pytest.mark.slow,
              pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")]

VIEW_CHANGE_S = 40
CATCH_UP_S = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NetnsCluster]:
    with netns_cluster(tmp_path / "testnet") as c:
        yield c


def _heights(cluster: NetnsCluster, ids: list[str]) -> dict[str, int]:
    return {i: cluster.status(i)["height"] for i in ids}


# ---------------------------------------------------------------- 5


def test_one_node_at_1mbit_under_load_then_idle(
        cluster: NetnsCluster, figures: dict[str, Any]) -> None:
    """5. one node limited to 1 Mbit/s, load then idle"""
    primary, others = backups(cluster.statuses())
    slow = primary  # the node every batch has to leave from
    with Monotonic(cluster, cluster.ids) as mono:
        cluster.lab.rate(cluster.index(slow), "1mbit")
        with LoadLoop(cluster, others[0]) as load_a, LoadLoop(cluster, others[1]) as load_b:
            time.sleep(30)
            figures["commits_at_1mbit_30s"] = load_a.count() + load_b.count()
        assert figures["commits_at_1mbit_30s"] > 0, "nothing committed at 1 Mbit/s"
        h = _heights(cluster, cluster.ids)
        figures["lag_blocks_at_load_end"] = max(h.values()) - h[slow]
        t0 = time.monotonic()
        cluster.wait_converged(timeout_s=CATCH_UP_S, what="the cluster to converge while idle")
        figures["idle_converge_s"] = round(time.monotonic() - t0, 2)
        cluster.lab.heal()
        figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 6


def test_partitions_primary_alone_then_two_two(
        cluster: NetnsCluster, figures: dict[str, Any]) -> None:
    """6. partitions: {primary} / {others}, then {2} / {2}, heal"""
    st = cluster.statuses()
    primary, others = backups(st)
    view0 = st[primary]["view"]
    p = cluster.index(primary)
    rest = [cluster.index(i) for i in others]
    with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, others[0]) as load:
        load.wait_commits(5, 20, "before the partition")
        t0 = time.monotonic()
        cluster.lab.partition([p], rest)
        view1, primary1 = wait_new_primary(cluster, others, view0, VIEW_CHANGE_S,
                                           not_primary=primary)
        figures["view_change_s"] = round(time.monotonic() - t0, 2)
        load.wait_commits(5, 20, f"in view {view1} without {primary}")
        cluster.lab.heal()
        figures["rejoin_s"] = catch_up(cluster, primary, others, CATCH_UP_S)
        load.wait_commits(3, 20, "after the first heal")

        # {2} | {2}: no quorum on either side.
        a = [primary1, next(i for i in cluster.ids if i != primary1)]
        b = [i for i in cluster.ids if i not in a]
        cluster.lab.partition([cluster.index(i) for i in a], [cluster.index(i) for i in b])
        time.sleep(3)  # let batches in flight at the cut finish or stall
        before = _heights(cluster, cluster.ids)
        acked_before = load.count()
        with LoadLoop(cluster, a[0]) as load_a, LoadLoop(cluster, b[0]) as load_b:
            time.sleep(20)
            split_commits = load_a.count() + load_b.count()
        after = _heights(cluster, cluster.ids)
        figures["commits_2_2"] = split_commits + load.count() - acked_before
        assert figures["commits_2_2"] == 0, f"commits without a quorum: {figures['commits_2_2']}"
        # A node that lagged (the old primary, just rejoined) may still fetch
        # blocks committed before the split from its side's partner; no node
        # may go past the highest height committed before it.
        assert max(after.values()) == max(before.values()), \
            f"new blocks committed in a 2|2 split: {before} -> {after}"
        t1 = time.monotonic()
        cluster.lab.heal()
        load.wait_commits(1, 60, "after healing the 2|2 split")
        figures["commit_after_heal_s"] = round(time.monotonic() - t1, 2)
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 7


def test_one_way_partition_60s_no_view_change_livelock(
        cluster: NetnsCluster, figures: dict[str, Any]) -> None:
    """7. one-way partition for 60 s (primary can send, not receive)"""
    st = cluster.statuses()
    primary, others = backups(st)
    view0 = st[primary]["view"]
    p = cluster.index(primary)
    offsets = log_offsets(cluster)
    with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, others[0]) as load:
        load.wait_commits(5, 20, "before the cut")
        for i in others:
            cluster.lab.oneway(cluster.index(i), p)  # nothing reaches the primary
        t0 = time.monotonic()
        view1, _ = wait_new_primary(cluster, others, view0, VIEW_CHANGE_S, not_primary=primary)
        figures["view_change_s"] = round(time.monotonic() - t0, 2)
        mid = load.count()
        time.sleep(max(0.0, 60 - (time.monotonic() - t0)))
        figures["commits_during_cut"] = load.count() - mid
        assert figures["commits_during_cut"] > 0, "the others made no progress during the cut"
        views_others = {cluster.status(i)["view"] for i in others}
        assert views_others == {view1}, \
            f"the others kept changing views during the cut: {view1} -> {views_others}"
        heal_offsets = log_offsets(cluster)
        t1 = time.monotonic()
        cluster.lab.heal()
        figures["rejoin_s"] = catch_up(cluster, primary, others, CATCH_UP_S)
        load.wait_commits(5, 20, "after the heal")
        time.sleep(10)  # a livelock would show as more view changes now
        figures["after_heal_s"] = round(time.monotonic() - t1, 2)
    during = views_started(cluster, offsets, others)
    after = views_started(cluster, heal_offsets, others)
    figures["view_changes_others"] = sum(len(v) for v in during.values())
    figures["view_changes_cut_node"] = len(views_started(cluster, offsets, [primary])[primary])
    assert not any(after.values()), f"view changes after the heal: {after}"
    final = {s["view"] for s in cluster.statuses().values()}
    assert len(final) == 1, f"views differ after the heal: {final}"
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 8


def test_loss_20_and_duplication_10_on_every_link(
        cluster: NetnsCluster, figures: dict[str, Any]) -> None:
    """8. 20% loss and 10% duplication on every link"""
    with Monotonic(cluster, cluster.ids) as mono:
        with LoadLoop(cluster, cluster.ids[1]) as load:
            load.wait_commits(5, 20, "before the faults")
            for i in range(len(cluster.ids)):
                cluster.lab.loss(i, 20)
                cluster.lab.dup(i, 10)
            start = load.count()
            time.sleep(60)
            figures["commits_60s_lossy"] = load.count() - start
            assert figures["commits_60s_lossy"] > 0, "nothing committed with 20% loss"
            t0 = time.monotonic()
            cluster.lab.heal()
            load.wait_commits(1, 10, "after the heal")
            figures["commit_after_heal_s"] = round(time.monotonic() - t0, 2)
        wait_until(lambda: len({s["view"] for s in cluster.statuses().values()}) == 1, 30,
                   "all nodes in one view")
        figures["view"] = cluster.status(cluster.ids[0])["view"]
        figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))
