"""Per-link delay through the seeded userspace proxy (delayproxy.py): what
netem's ``delay`` would give, on loopback, no root needed.  Not one of issue
7's numbered scenarios: WAN latency between provinces, with a view change
in the middle of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import LoadLoop, backups

from .delayproxy import delayed_cluster
from .faultlib import replace_paused_primary, seeded_rng
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
            replace_paused_primary(cluster, load, primary, others, st[primary]["view"], figures)
        figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))
    finally:
        cluster.close()
        for proxy in proxies:
            proxy.close()
