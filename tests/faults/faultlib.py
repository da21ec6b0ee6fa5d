"""Small helpers the fault scenarios share: prerequisites (skip with the exact
missing thing, never install), log and metrics reading, and a fresh cluster
per scenario.

Every process a scenario signals was started by the test (``Cluster``
records the pids); nothing here looks processes up by name.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import PYTHON, Cluster, LoadLoop, log_events, wait_until

APT_LINE = "apt-get install -y iproute2 nftables fiu-utils faketime"


# ---------------------------------------------------------------- prerequisites


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root for {why} (running as uid {os.geteuid()})")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name!r} on PATH (not installed; {APT_LINE})")
    return path


# ---------------------------------------------------------------- observation


def log_offsets(cluster: Cluster) -> dict[str, int]:
    """Current size of every node's pbftd.log, to read only what follows."""
    return {i: (cluster.log_path(i).stat().st_size if cluster.log_path(i).exists() else 0)
            for i in cluster.ids}


def events(cluster: Cluster, court_id: str, name: str,
           offsets: dict[str, int] | None = None) -> list[dict[str, Any]]:
    offset = (offsets or {}).get(court_id, 0)
    return [e for e in log_events(cluster.log_path(court_id), offset) if e.get("event") == name]


def views_started(cluster: Cluster, offsets: dict[str, int] | None = None,
                  ids: list[str] | None = None) -> dict[str, list[int]]:
    """Target views of every view change each node started since ``offsets``."""
    return {i: [e["view"] for e in events(cluster, i, "view_change_started", offsets)]
            for i in (ids or cluster.ids)}


def metrics(cluster: Cluster, court_id: str) -> dict[str, float]:
    """The node's /metrics as {'name{labels}': value}."""
    url = cluster.court(court_id).rpc_url + "metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                continue
    return out


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def primary_of(cluster: Cluster, ids: list[str] | None = None) -> str:
    """The primary the reachable ``ids`` agree on (waits for agreement)."""
    ids = ids or cluster.ids

    def agreed() -> str | None:
        seen = {s["primary"] for s in cluster.statuses(ids).values() if s["view_active"]}
        return seen.pop() if len(seen) == 1 else None

    return wait_until(agreed, 30, f"{ids} to agree on an active primary")


def wait_new_primary(cluster: Cluster, ids: list[str], old_view: int, timeout_s: float,
                     not_primary: str | None = None) -> tuple[int, str]:
    """Wait until ``ids`` share an active view above ``old_view``; (view, primary)."""

    def moved() -> tuple[int, str] | None:
        st = cluster.statuses(ids)
        seen = {(s["view"], s["view_active"], s["primary"]) for s in st.values()}
        if len(seen) != 1:
            return None
        view, active, primary = seen.pop()
        if active and view > old_view and primary != not_primary:
            return view, primary
        return None

    return wait_until(moved, timeout_s, f"{ids} to agree on an active view above {old_view}")


def replace_paused_primary(cluster: Cluster, load: LoadLoop, primary: str, others: list[str],
                           old_view: int, figures: dict[str, Any]) -> int:
    """SIGSTOP ``primary`` under ``load``: the others install a new view
    (``figures["view_change_s"]``) and commit in it; then SIGCONT, and wait
    until it has joined that view.  Returns the new view."""
    t0 = time.monotonic()
    cluster.pause(primary)
    view, _ = wait_new_primary(cluster, others, old_view, 60, not_primary=primary)
    figures["view_change_s"] = round(time.monotonic() - t0, 2)
    load.wait_commits(5, 30, f"in view {view}")
    cluster.resume(primary)
    wait_until(lambda: cluster.status(primary)["view"] >= view, 30,
               f"{primary} to rejoin view {view}")
    return view


def catch_up(cluster: Cluster, laggard: str, ref: list[str], timeout_s: float) -> float:
    """Seconds until ``laggard`` reaches the height ``ref`` had when called."""
    target = max(cluster.status(i)["height"] for i in ref)
    t0 = time.monotonic()
    wait_until(lambda: cluster.status(laggard)["height"] >= target, timeout_s,
               f"{laggard} to catch up to height {target}")
    return round(time.monotonic() - t0, 2)


def seeded_rng(figures: dict[str, Any], default: int | None = None) -> random.Random:
    """A Random seeded from PBFTD_FAULT_SEED (or fresh); the seed goes in ``figures``."""
    seed = int(os.environ.get("PBFTD_FAULT_SEED", default if default is not None
                              else random.randrange(1 << 30)))
    figures["seed"] = seed
    return random.Random(seed)


# ---------------------------------------------------------------- clusters


def fresh_cluster(tmp_path: Path, nodes: int = 4) -> Iterator[Cluster]:
    """A started, ready testnet on loopback for one scenario."""
    with Cluster.running(tmp_path / "testnet", nodes=nodes) as cluster:
        yield cluster


REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class WrappedCluster(Cluster):
    """A Cluster whose daemons can each get a command prefix (``fiu-run -x``),
    extra environment (libfaketime) and a test launcher in place of
    ``-m pbftd.cli`` (``msgshim.launcher_args``: it patches, then calls
    pbftd.cli's main in the same process); the pid stays the daemon's, since
    the wrappers exec the command and the launcher is the daemon."""

    prefix: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    env: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    launcher: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def start(self, court_id: str) -> subprocess.Popen[bytes]:
        court = self.court(court_id)
        assert court_id not in self.procs or self.procs[court_id].poll() is not None, \
            f"{court_id} is already running"
        env = {**os.environ, **self.env.get(court_id, {})}
        entry = self.launcher.get(court_id, ["-m", "pbftd.cli"])
        if court_id in self.launcher:  # the launcher lives in tests/, not installed
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with (court.folder / "pbftd.log").open("ab") as log:
            proc = subprocess.Popen(
                [*self.prefix.get(court_id, []), PYTHON, *entry, "run",
                 "--config", str(court.config)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        self.procs[court_id] = proc
        self.started.append(proc)
        return proc


__all__ = ["APT_LINE", "REPO_ROOT", "WrappedCluster", "catch_up", "events", "fresh_cluster",
           "log_offsets", "metrics", "primary_of", "replace_paused_primary", "require_root",
           "require_tool", "seeded_rng", "views_started", "vm_rss_kb", "wait_new_primary"]
