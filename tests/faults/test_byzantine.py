"""Scenario 14: a Byzantine validator with a real key (tests/faults/adversary.py).

Three honest daemons and the adversary in the fourth seat, the primary of
view 0 (``ids[v mod n]``, genesis order).  It equivocates, sends views and
seqs off by one, replays captured certificates, forges signatures, sends seqs
beyond the high watermark, view changes for 2^63-1, 2^63 and 2^64-1, and
floods future-view messages.  3 honest of n = 4 is exactly a quorum, so the
honest nodes must keep committing through all of it, never crash, count what
they refuse, and keep their buffers bounded.  Then the adversary goes
silent, the honest nodes settle in one view, and check_all runs (S1-S4, L1).

Found with it: the submissions an equivocating primary put in its
PRE-PREPAREs became *pending* at the one backup that received each, and
nobody else ever saw them; after the view change each such backup accused the
next, honest primary.  A backup now drops, at the view change, submissions it
saw only in a pre-prepare the new view did not carry
(tests/core/test_planted_submissions.py).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import Cluster, LoadLoop, wait_until
from tests.faults.adversary import Adversary
from tests.faults.invariants import Monotonic, check_all

ATTACK_S = 10.0
ATTACK_S_LONG = 120.0
RSS_GROWTH_MB_MAX = 150
SEND_QUEUE_FRAMES_MAX = 1024  # MeshConfig.send_queue_frames_max (the default)
VIEW_SANE_MAX = 64
SETTLE_S_MAX = 60.0
IDLE_ATTEST_S = 30.0


def metrics(cluster: Cluster, court_id: str) -> dict[str, float]:
    """The node's /metrics samples, keyed by name with labels."""
    url = cluster.court(court_id).rpc_url.rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+(?:\{[^}]*\})?) (\S+)", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settle(cluster: Cluster, ids: list[str], quiet_s: float = 6.0,
           timeout_s: float = SETTLE_S_MAX) -> float:
    """Wait until ``ids`` are active in one view that has not changed for
    ``quiet_s`` (more than a request timeout); returns the seconds it took."""
    t0 = time.monotonic()
    last: dict[str, Any] = {"view": None, "since": t0}

    def quiet() -> bool:
        st = cluster.statuses(ids)
        views = {(s["view"], s["view_active"]) for s in st.values()}
        now = time.monotonic()
        if len(views) != 1 or not next(iter(views))[1] or views != last["view"]:
            last.update(view=views, since=now)
            return False
        return now - last["since"] >= quiet_s

    wait_until(quiet, timeout_s, f"{ids} to stay in one active view for {quiet_s:.0f}s")
    return round(time.monotonic() - t0, 1)


def _attack(tmp_path: Path, figures: dict[str, Any], attack_s: float) -> None:
    cluster = Cluster.create(tmp_path / "testnet", nodes=4)
    bad = cluster.ids[0]  # primary of view 0
    honest = cluster.ids[1:]
    adversary = Adversary(cluster.directory, bad)
    try:
        adversary.run_in_thread()
        for court_id in honest:
            cluster.start(court_id)
        cluster.wait_ready(honest, timeout_s=60)
        pids = {i: cluster.procs[i].pid for i in honest}
        rss_before = {i: rss_mb(pids[i]) for i in honest}
        with Monotonic(cluster, honest) as mono:
            with LoadLoop(cluster, honest[1]) as load:
                load.wait_commits(1, timeout_s=40, what="first commit despite the "
                                                        "equivocating primary of view 0")
                start_count = load.count()
                t0 = time.monotonic()
                queue_peak = 0.0
                while time.monotonic() - t0 < attack_s:
                    time.sleep(1.0)
                    for i in honest:
                        assert cluster.procs[i].poll() is None, f"{i} died under attack"
                        queue_peak = max(queue_peak, metrics(cluster, i).get(
                            f'pbftd_peer_send_queue_frames{{peer="{bad}"}}', 0.0))
                commits_during = load.count() - start_count
                figures["commits_during_attack"] = commits_during
                assert commits_during >= 3, (
                    f"only {commits_during} commits in {attack_s:.0f}s of attack; "
                    f"errors: {load.errors[-3:]}")
            acked = list(load.committed)
            # Idle writes while the attack goes on: each must still commit.
            latencies = []
            for i in honest:
                t1 = time.monotonic()
                cluster.attest(i, timeout_s=IDLE_ATTEST_S)
                latencies.append(time.monotonic() - t1)
                time.sleep(1.0)
            figures["idle_attest_max_s"] = round(max(latencies), 1)
            stats = {i: metrics(cluster, i) for i in honest}
            rss_after = {i: rss_mb(pids[i]) for i in honest}
            # Healing: the adversary goes silent; once the honest nodes have
            # settled in one view, check safety and liveness (L1).
            adversary.stop()
            figures["settle_s"] = settle(cluster, honest)
            figures.update(check_all(cluster, honest, acked, mono))
        log_text = {i: cluster.log_path(i).read_text(errors="replace") for i in honest}
    finally:
        try:
            adversary.stop()
        finally:
            cluster.close()
    summary = adversary.summary()
    print(f"adversary: {summary}")
    rejected = {i: int(stats[i]["pbftd_messages_rejected_total"]) for i in honest}
    views = {i: int(stats[i]["pbftd_view"]) for i in honest}
    figures.update(rejected_total=sum(rejected.values()), view=max(views.values()),
                   view_changes=int(max(stats[i]["pbftd_view_changes_total"] for i in honest)),
                   adversary_frames=sum(summary["sent"].values()),
                   send_queue_peak=int(queue_peak),
                   rss_growth_mb=round(max(rss_after[i] - rss_before[i] for i in honest), 1))
    for i in honest:  # nothing the adversary sent made an honest node log an error
        text = log_text[i]
        assert "Traceback" not in text and '"level": "error"' not in text \
            and '"level": "critical"' not in text, f"{i} logged an error; see its pbftd.log"
    assert summary["equivocated_views"], "the adversary never got to equivocate as primary"
    assert all(r > 0 for r in rejected.values()), f"a node counted no rejections: {rejected}"
    assert all(v < VIEW_SANE_MAX for v in views.values()), f"views ran away: {views}"
    assert queue_peak <= SEND_QUEUE_FRAMES_MAX, queue_peak
    for i in honest:
        growth = rss_after[i] - rss_before[i]
        assert growth < RSS_GROWTH_MB_MAX, f"{i} grew {growth:.0f} MB under attack"


def test_byzantine_validator_is_refused_and_honest_quorum_stays_live(
        tmp_path: Path, figures: dict[str, Any]) -> None:
    """14. Byzantine validator (reduced)"""
    _attack(tmp_path, figures, ATTACK_S)


@pytest.mark.slow
def test_byzantine_validator_long(tmp_path: Path, figures: dict[str, Any]) -> None:
    """14. Byzantine validator (long)"""
    _attack(tmp_path, figures, ATTACK_S_LONG)
