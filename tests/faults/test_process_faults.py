"""Process faults on real daemons on loopback (issue 7, scenarios 1-4, 9, 13, 15).

Each scenario starts a fresh testnet, runs load through ``LoadLoop`` while
it injects the fault with signals (SIGSTOP/SIGCONT, SIGKILL) or a wiped data
directory, reports its figures, and ends with ``check_all`` (S1-S4, L1).
Scenarios 1, 4 and a five-round scenario 13 are in the default run; the rest
are ``slow`` (see docs/RELIABILITY.md for the long command).
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import RPC_ERRORS, Cluster, LoadLoop, WaitTimeout, backups, wait_until

from .faultlib import (
    catch_up,
    events,
    fresh_cluster,
    log_offsets,
    metrics,
    seeded_rng,
    views_started,
    vm_rss_kb,
    wait_new_primary,
)
from .invariants import Monotonic, check_all

# A load thread that dies would look like a stalled cluster: make it an error.
pytestmark = [pytest.mark.faults,
              pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")]

VIEW_CHANGE_S = 40
CATCH_UP_S = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from fresh_cluster(tmp_path)


def _view(cluster: Cluster, court_id: str) -> int:
    return cluster.status(court_id)["view"]


# ---------------------------------------------------------------- 1


def test_primary_paused_10s_rejoins_without_another_view_change(
        cluster: Cluster, figures: dict[str, Any]) -> None:
    """1. primary SIGSTOP 10 s under load"""
    primary, others = backups(cluster.statuses())
    view0 = _view(cluster, primary)
    with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, others[0]) as load:
        load.wait_commits(5, 20, "before the pause")
        t0 = time.monotonic()
        cluster.pause(primary)
        new_view, _ = wait_new_primary(cluster, others, view0, VIEW_CHANGE_S,
                                       not_primary=primary)
        figures["view_change_s"] = round(time.monotonic() - t0, 2)
        load.wait_commits(3, 20, f"in view {new_view} while {primary} is paused")
        time.sleep(max(0.0, 10 - (time.monotonic() - t0)))
        offsets = log_offsets(cluster)
        cluster.resume(primary)
        t1 = time.monotonic()

        def rejoined() -> bool:
            old = cluster.status(primary)
            ref = min(cluster.status(i)["height"] for i in others)
            return old["view"] == new_view and old["view_active"] and old["height"] >= ref

        wait_until(rejoined, CATCH_UP_S, f"{primary} to rejoin view {new_view}")
        figures["rejoin_s"] = round(time.monotonic() - t1, 2)
        load.wait_commits(5, 20, f"after {primary} rejoined")
    started = views_started(cluster, offsets)
    assert not any(started[i] for i in others), \
        f"the others started a view change after {primary} resumed: {started}"
    assert all(v <= new_view for vs in started.values() for v in vs), started
    assert {s["view"] for s in cluster.statuses().values()} == {new_view}
    figures["views"] = new_view - view0
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 2


@pytest.mark.slow
def test_primary_killed_and_restarted_30s_later(
        cluster: Cluster, figures: dict[str, Any]) -> None:
    """2. primary kill -9, restarted 30 s later"""
    primary, others = backups(cluster.statuses())
    view0 = _view(cluster, primary)
    with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, others[0]) as load:
        load.wait_commits(5, 20, "before the kill")
        t0 = time.monotonic()
        cluster.stop(primary, signal.SIGKILL)
        new_view, _ = wait_new_primary(cluster, others, view0, VIEW_CHANGE_S,
                                       not_primary=primary)
        figures["view_change_s"] = round(time.monotonic() - t0, 2)
        before = load.count()
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        figures["commits_while_down"] = load.count() - before
        assert figures["commits_while_down"] > 0, "nothing committed while the primary was down"
        cluster.start(primary)
        figures["catch_up_s"] = catch_up(cluster, primary, others, CATCH_UP_S)
        wait_until(lambda: cluster.status(primary)["view"] == new_view, CATCH_UP_S,
                   f"restarted {primary} to join view {new_view}")
        load.wait_commits(5, 20, f"after {primary} restarted")
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 3


@pytest.mark.slow
def test_backup_paused_60s_no_view_change_bounded_queues(
        cluster: Cluster, figures: dict[str, Any]) -> None:
    """3. backup SIGSTOP 60 s"""
    primary, others = backups(cluster.statuses())
    victim, via = others[0], others[1]
    live = [i for i in cluster.ids if i != victim]
    view0 = _view(cluster, primary)
    rss0 = {i: vm_rss_kb(cluster.procs[i].pid) for i in live}
    offsets = log_offsets(cluster)
    queue_peak, rss_peak = 0.0, dict(rss0)
    with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, via) as load:
        load.wait_commits(5, 20, "before the pause")
        h0 = cluster.status(via)["height"]
        cluster.pause(victim)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            for i in live:
                queued = metrics(cluster, i).get(
                    f'pbftd_peer_send_queue_frames{{peer="{victim}"}}', 0.0)
                queue_peak = max(queue_peak, queued)
                rss_peak[i] = max(rss_peak[i], vm_rss_kb(cluster.procs[i].pid))
            time.sleep(1)
        h1 = cluster.status(via)["height"]
        cluster.resume(victim)
        figures["blocks_while_paused"] = h1 - h0
        figures["catch_up_s"] = catch_up(cluster, victim, live, CATCH_UP_S)
        load.wait_commits(5, 20, f"after {victim} resumed")
    started = views_started(cluster, offsets)
    figures["queue_peak_frames"] = int(queue_peak)
    growth = {i: (rss_peak[i] - rss0[i]) // 1024 for i in live}
    figures["rss_growth_mb_max"] = max(growth.values())
    assert not any(started.values()), f"a view change started: {started}"
    assert {s["view"] for s in cluster.statuses().values()} == {view0}
    assert h1 - h0 > 32, f"only {h1 - h0} blocks in 60 s: not past two checkpoint intervals"
    assert queue_peak <= 1024, f"send queue to {victim} reached {queue_peak} frames"
    assert max(growth.values()) < 64, f"RSS grew by more than 64 MB: {growth} MB"
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 4


def test_backup_wiped_and_restarted_under_load(
        cluster: Cluster, figures: dict[str, Any]) -> None:
    """4. backup wiped and restarted under continuous load"""
    _, others = backups(cluster.statuses())
    victim, via = others[0], others[1]
    live = [i for i in cluster.ids if i != victim]
    with Monotonic(cluster, live) as mono, LoadLoop(cluster, via) as load:
        load.wait_commits(20, 30, "before the wipe")
        cluster.stop(victim, signal.SIGKILL)
        shutil.rmtree(cluster.court(victim).folder / "data")
        load.wait_commits(10, 30, f"while {victim} is wiped")
        cluster.start(victim)
        figures["catch_up_s"] = catch_up(cluster, victim, live, CATCH_UP_S)
        load.wait_commits(10, 30, f"after {victim} recovered")
        figures["catch_up_again_s"] = catch_up(cluster, victim, live, CATCH_UP_S)
    # S3 across the wipe does not apply to the wiped node (it starts from 0).
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 9


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_random_kill_every_15s_for_10_minutes(
        cluster: Cluster, figures: dict[str, Any]) -> None:
    """9. kill -9 of a random node every 15 s for 10 minutes"""
    rng = seeded_rng(figures)
    duration_s = float(os.environ.get("PBFTD_FAULT_SOAK_S", "600"))
    kills, down_max = 0, 0
    with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, cluster.ids[1]) as load_a, \
            LoadLoop(cluster, cluster.ids[2]) as load_b:
        load_a.wait_commits(5, 20, "before the first kill")
        t_end = time.monotonic() + duration_s
        while time.monotonic() < t_end:
            period = time.monotonic()
            victim = rng.choice(cluster.ids)
            cluster.stop(victim, signal.SIGKILL)
            kills += 1
            down = sum(1 for p in cluster.procs.values() if p.poll() is not None)
            down_max = max(down_max, down)
            assert down <= 1, f"{down} nodes down at once"
            time.sleep(rng.uniform(2, 8))
            cluster.start(victim)
            time.sleep(max(0.0, 15 - (time.monotonic() - period)))
        figures["duration_s"] = int(duration_s)
        figures["kills"] = kills
        live_loads = load_a.count() + load_b.count()
        figures["acked_under_faults"] = live_loads
        assert live_loads > kills, f"only {live_loads} commits in {kills} kill rounds"
    figures["down_max"] = down_max
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


# ---------------------------------------------------------------- 13


def _brief_statuses(cluster: Cluster) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in cluster.ids:
        try:
            st = cluster.status(i)
            out[i] = (st["view"], st["view_active"], st["height"], len(st["peers"]))
        except RPC_ERRORS as exc:
            out[i] = str(exc)
    return out


def _kill_during_commit(cluster: Cluster, figures: dict[str, Any], rounds: int) -> None:
    rng = seeded_rng(figures)
    primary_kills = 0
    round_s_max = 0.0
    with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, cluster.ids[1]) as load_a, \
            LoadLoop(cluster, cluster.ids[3]) as load_b:

        def commits() -> int:
            return load_a.count() + load_b.count()

        load_a.wait_commits(3, 20, "before the first kill")
        for n in range(rounds):
            t0 = time.monotonic()
            victim = rng.choice(cluster.ids)
            live = [i for i in cluster.ids if i != victim]
            primary = cluster.status(live[0])["primary"]
            primary_kills += victim == primary
            # Kill in the middle of the commit traffic: right after a commit
            # was acknowledged, with the next batch already in flight.
            seen = commits()
            wait_until(lambda s=seen: commits() > s, 30, f"a commit before kill {n + 1}")
            time.sleep(rng.uniform(0, 0.03))
            cluster.stop(victim, signal.SIGKILL)
            cluster.start(victim)
            catch_up(cluster, victim, live, CATCH_UP_S + VIEW_CHANGE_S)
            seen = commits()
            try:
                wait_until(lambda s=seen: commits() > s, VIEW_CHANGE_S,
                           f"a commit after kill {n + 1} of {victim}")
            except WaitTimeout as exc:
                raise WaitTimeout(f"{exc}; primary before the kill {primary}; statuses "
                                  f"{_brief_statuses(cluster)}; load errors "
                                  f"{load_a.errors[-2:]} {load_b.errors[-2:]}") from None
            round_s_max = max(round_s_max, time.monotonic() - t0)
    figures["rounds"] = rounds
    figures["primary_kills"] = primary_kills
    figures["round_s_max"] = round(round_s_max, 2)
    figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))


def test_kill_during_commit_reduced(cluster: Cluster, figures: dict[str, Any]) -> None:
    """13. kill -9 during commit (5 rounds)"""
    _kill_during_commit(cluster, figures, 5)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kill_during_commit_100_times(cluster: Cluster, figures: dict[str, Any]) -> None:
    """13. kill -9 during commit (100 rounds)"""
    _kill_during_commit(cluster, figures, int(os.environ.get("PBFTD_FAULT_KILL_ROUNDS", "100")))


# ---------------------------------------------------------------- 15


def _event_time(e: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_seven_nodes_two_consecutive_primaries_stopped(
        tmp_path: Path, figures: dict[str, Any]) -> None:
    """15. n = 7: two consecutive primaries stopped"""
    with Cluster.running(tmp_path / "testnet7", nodes=7) as cluster:
        ids = cluster.ids
        st = cluster.statuses()
        primary, _ = backups(st)
        v = st[primary]["view"]
        nxt = ids[(v + 1) % len(ids)]
        stopped = [primary, nxt]
        live = [i for i in ids if i not in stopped]
        via = live[0]
        offsets = log_offsets(cluster)
        with Monotonic(cluster, ids) as mono, LoadLoop(cluster, via) as load:
            load.wait_commits(5, 20, "before the stops")
            t0 = time.monotonic()
            for i in stopped:
                cluster.pause(i)
            view, new_primary = wait_new_primary(cluster, live, v, 90)
            figures["reach_view_s"] = round(time.monotonic() - t0, 2)
            assert view == v + 2, f"reached view {view}, expected {v + 2}"
            assert new_primary == ids[(v + 2) % len(ids)]
            load.wait_commits(5, 20, f"in view {view}")
            for i in stopped:
                cluster.resume(i)
            for i in stopped:
                catch_up(cluster, i, live, CATCH_UP_S)
        first: dict[int, float] = {}
        for i in live:
            for e in events(cluster, i, "view_change_started", offsets):
                first[e["view"]] = min(first.get(e["view"], float("inf")), _event_time(e))
        assert v + 1 in first and v + 2 in first, f"view changes started: {first}"
        gap = first[v + 2] - first[v + 1]
        figures["vc_gap_s"] = round(gap, 2)
        # The replicas waited the whole NEW-VIEW timer for v+1 before moving
        # on, and armed the timer for v+2 twice as long: the backoff, read
        # from each live node's `new_view_timer_set` events.
        timers: dict[str, dict[int, int]] = {}
        for i in live:
            for e in events(cluster, i, "new_view_timer_set", offsets):
                timers.setdefault(i, {}).setdefault(e["view"], e["timeout_ms"])
        figures["nv_timers_ms"] = sorted({(v_, t) for per in timers.values()
                                          for v_, t in per.items()})
        backed_off = [i for i, per in timers.items()
                      if v + 1 in per and v + 2 in per and per[v + 2] == 2 * per[v + 1]]
        assert len(backed_off) >= len(live) - 1, f"NEW-VIEW timers per node: {timers}"
        first_timer_s = min(per[v + 1] for per in timers.values() if v + 1 in per) / 1000
        assert gap >= first_timer_s - 0.1, (
            f"the view change to v+2 started {gap:.1f}s after the one to v+1, "
            f"before the {first_timer_s}s timer ran out")
        assert figures["reach_view_s"] < 2 + 3 + 6 + 5, "reaching v+2 took longer than the timers"
        figures.update(check_all(cluster, ids, list(cluster.acked), mono))
