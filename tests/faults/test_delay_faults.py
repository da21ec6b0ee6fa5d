"""Per-link delay through the seeded userspace proxy (delayproxy.py): what
netem's ``delay`` would give, on loopback, no root needed.  Not one of issue
7's numbered scenarios: WAN latency between provinces, with a view change
in the middle of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import LoadLoop, backups, wait_until

from .delayproxy import delayed_cluster
from .faultlib import seeded_rng, wait_new_primary
from .invariants import Monotonic, check_all

pytestmark = [pytest.mark.faults, pytest.mark.slow,
              pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")]


def test_delay_100ms_jitter_50ms_on_every_link(tmp_path: Path, figures: dict[str, Any]) -> None:
    """D. 100 ms ± 50 ms delay on every peer link, primary paused midway"""
    seed = seeded_rng(figures).randrange(1 << 20)
    cluster, proxies = delayed_cluster(tmp_path / "testnet", 100, 50, seed)
    try:
        cluster.start_all()
        cluster.wait_ready()
        st = cluster.statuses()
        primary, others = backups(st)
        with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, others[0]) as load:
            load.wait_commits(5, 30, "with 100 ms links")
            t0, n0 = time.monotonic(), load.count()
            time.sleep(20)
            figures["commits_per_s"] = round((load.count() - n0) / (time.monotonic() - t0), 1)
            t1 = time.monotonic()
            cluster.pause(primary)
            view, _ = wait_new_primary(cluster, others, st[primary]["view"], 60,
                                       not_primary=primary)
            figures["view_change_s"] = round(time.monotonic() - t1, 2)
            load.wait_commits(5, 30, f"in view {view}")
            cluster.resume(primary)
            wait_until(lambda: cluster.status(primary)["view"] == view, 30,
                       f"{primary} to rejoin view {view}")
        figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))
    finally:
        cluster.close()
        for proxy in proxies:
            proxy.close()
