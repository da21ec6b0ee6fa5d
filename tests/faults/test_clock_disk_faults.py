"""Clock and disk faults on one node of four (issue 7, scenarios 10-12).

10: libfaketime (wall clock only, ``DONT_FAKE_MONOTONIC=1``) with the offset
    read from a file on every call, so the test makes it jump while the node
    runs;
11: the node's data directory on a small tmpfs that the test fills up;
12: libfiu (``fiu-run -x``, then ``fiu-ctrl``) makes fsync/fdatasync fail.
Each needs root or a tool and skips saying which; nothing is installed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pbftd.daemon import StorageStopped
from pbftd.testnet import free_base_port, init_testnet
from rpc.client import RpcCallError
from tests.daemon.harness import (
    LoadLoop,
    backups,
    fill_disk,
    log_events,
    random_sha256,
    wait_until,
)

from .faultlib import (
    WrappedCluster,
    catch_up,
    events,
    require_root,
    require_tool,
)
from .invariants import Monotonic, check_all, check_checkpoints, check_same_blocks

pytestmark = [pytest.mark.faults, pytest.mark.slow,
              pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")]

CATCH_UP_S = 30
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def _wrapped(directory: Path) -> WrappedCluster:
    return WrappedCluster(directory, init_testnet(directory, 4, free_base_port(8)))


def _skewed_cluster(tmp_path: Path, index: int,
                    offset: str) -> tuple[WrappedCluster, str, Path]:
    """A cluster whose node ``index`` runs under libfaketime, its offset read
    from a file on every call (rewrite the file to jump its clock); only the
    wall clock moves (DONT_FAKE_MONOTONIC), as NTP or an admin would move it."""
    require_tool("faketime")
    if not LIBFAKETIME.exists():
        pytest.skip(f"needs {LIBFAKETIME} (package faketime)")
    cluster = _wrapped(tmp_path / "testnet")
    skewed = cluster.ids[index]
    offset_file = tmp_path / "faketime-offset"
    offset_file.write_text(offset + "\n")
    cluster.env[skewed] = {"LD_PRELOAD": str(LIBFAKETIME), "DONT_FAKE_MONOTONIC": "1",
                           "FAKETIME_TIMESTAMP_FILE": str(offset_file), "FAKETIME_NO_CACHE": "1"}
    return cluster, skewed, offset_file


# ---------------------------------------------------------------- 10


def test_one_clock_off_by_an_hour_and_jumping(tmp_path: Path, figures: dict[str, Any]) -> None:
    """10. one node's wall clock off by an hour and jumping"""
    cluster, skewed, offset_file = _skewed_cluster(tmp_path, 0, "+1h")  # the primary of view 0
    try:
        cluster.start_all()
        cluster.wait_ready()
        others = [i for i in cluster.ids if i != skewed]
        with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, others[0]) as load:
            load.wait_commits(5, 60, f"with {skewed}'s clock an hour ahead")
            for offset in ("-1h", "+3h", "-10m", "+1d", "+1h"):
                offset_file.write_text(offset + "\n")
                load.wait_commits(5, 40, f"with {skewed}'s clock at {offset}")
                time.sleep(3)
            figures["acked_while_skewed"] = load.count()
            figures["s1_height_while_skewed"] = check_same_blocks(cluster, others)
            st = cluster.status(others[0])
            figures["view_while_skewed"] = st["view"]
            offset_file.write_text("+0\n")
        # Safety first (the point of this scenario), then L1 in check_all.
        figures["s1_height_all"] = check_same_blocks(cluster, cluster.ids)
        check_checkpoints(cluster, cluster.ids)
        figures["skewed_alive"] = cluster.procs[skewed].poll() is None
        assert figures["skewed_alive"], f"{skewed} exited with {cluster.procs[skewed].returncode}"
        figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))
    finally:
        cluster.close()


def test_clock_ahead_then_corrected_votes_again(tmp_path: Path, figures: dict[str, Any]) -> None:
    """10b. a backup's clock 5 min ahead, then corrected (as NTP would)"""
    cluster, skewed, offset_file = _skewed_cluster(tmp_path, 2, "+5m")  # a backup in view 0
    try:
        cluster.start_all()
        cluster.wait_ready()
        others = [i for i in cluster.ids if i != skewed]
        with Monotonic(cluster, cluster.ids) as mono:
            with LoadLoop(cluster, others[1]) as load:
                load.wait_commits(40, 60, f"with {skewed}'s clock 5 min ahead")
            offset_file.write_text("+0\n")  # corrected: its wall clock is right again
            log = cluster.log_path(skewed)
            wait_until(lambda: any(e.get("event") == "clock_stepped_back"
                                   for e in log_events(log)),
                       10, f"{skewed} to follow its clock back (clock_stepped_back)")
            figures["s1_height"] = check_same_blocks(cluster, cluster.ids)
            # A node with a correct clock must vote and execute again: its own
            # client's write commits within L1's 10 s.
            t0 = time.monotonic()
            cluster.attest(skewed, timeout_s=10)
            figures["attest_after_fix_s"] = round(time.monotonic() - t0, 2)
            figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))
    finally:
        cluster.close()


# ---------------------------------------------------------------- 11


def _health(cluster: WrappedCluster, court_id: str) -> tuple[int, dict]:
    url = cluster.court(court_id).rpc_url + "health"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_disk_full_on_one_node(tmp_path: Path, figures: dict[str, Any]) -> None:
    """11. disk full on one node"""
    require_root("mount -t tmpfs")
    cluster = _wrapped(tmp_path / "testnet")
    victim = cluster.ids[2]  # a backup in view 0
    data = cluster.court(victim).folder / "data"
    data.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(data)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed: {mount.stderr.strip()}")
    config = cluster.court(victim).config
    config.write_text(config.read_text().replace(
        "ballast_bytes = 16777216", "ballast_bytes = 4194304").replace(
        "write_buffer_bytes = 8388608", "write_buffer_bytes = 1048576"))
    filler = data / "filler"
    try:
        cluster.start_all()
        cluster.wait_ready()
        primary, others = backups(cluster.statuses())
        via = next(i for i in others if i != victim)
        pid = cluster.procs[victim].pid
        with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, via) as load, \
                LoadLoop(cluster, victim) as through_victim:
            through_victim.wait_commits(5, 20, "through the victim before the disk fills")
            fill_disk(filler)
            t0 = time.monotonic()
            wait_until(lambda: _health(cluster, victim)[0] == 503, 60,
                       f"{victim} to report that it cannot write")
            figures["read_only_after_s"] = round(time.monotonic() - t0, 2)
            acked_victim = through_victim.count()
            load.wait_commits(10, 30, f"through {via} while {victim}'s disk is full")
            time.sleep(10)
            figures["acked_through_victim_while_full"] = through_victim.count() - acked_victim
            assert figures["acked_through_victim_while_full"] == 0, \
                f"{victim} acknowledged writes on a full disk"
            try:
                cluster.client(victim).call("evidence.attest", {
                    "sha256": random_sha256(), "kind": "judgment", "case_no": "(2024)吉01民终1号",
                    "wait": True})
                raise AssertionError(f"{victim} acknowledged a write on a full disk")
            except RpcCallError as exc:
                figures["refusal_code"] = exc.code
            assert cluster.procs[victim].poll() is None, f"{victim} exited on a full disk"
            assert cluster.procs[victim].pid == pid
            restarts = len(events(cluster, victim, "node_ready"))
            assert restarts == 1, f"{victim} started {restarts} times"
            filler.unlink()
            t1 = time.monotonic()
            wait_until(lambda: _health(cluster, victim)[0] == 200, 60,
                       f"{victim} to write again after space returned")
            figures["recovered_s"] = round(time.monotonic() - t1, 2)
            figures["catch_up_s"] = catch_up(cluster, victim, [*others, primary], CATCH_UP_S)
            through_victim.wait_commits(3, 30, "through the victim after recovery")
        figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))
    finally:
        cluster.close()
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


# ---------------------------------------------------------------- 12


def test_fsync_failing_on_one_node(tmp_path: Path, figures: dict[str, Any]) -> None:
    """12. fsync failing on one node (libfiu)"""
    require_tool("fiu-run")
    require_tool("fiu-ctrl")
    cluster = _wrapped(tmp_path / "testnet")
    victim = cluster.ids[2]
    cluster.prefix[victim] = ["fiu-run", "-x"]
    try:
        cluster.start_all()
        cluster.wait_ready()
        _, others = backups(cluster.statuses())
        via = next(i for i in others if i != victim)
        live = [i for i in cluster.ids if i != victim]
        with Monotonic(cluster, cluster.ids) as mono, LoadLoop(cluster, via) as load:
            load.wait_commits(5, 20, "before fsync fails")
            proc = cluster.procs[victim]
            t0 = time.monotonic()
            for name in ("posix/io/sync/fsync", "posix/io/sync/fdatasync"):
                subprocess.run(["fiu-ctrl", "-c", f"enable name={name}", str(proc.pid)],
                               check=True, capture_output=True)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                raise AssertionError(f"{victim} kept running with fsync failing") from None
            figures["stopped_after_s"] = round(time.monotonic() - t0, 2)
            figures["exit_code"] = code
            assert code == StorageStopped.EXIT_STATUS, \
                f"{victim} exited {code} after fsync failures, not {StorageStopped.EXIT_STATUS}"
            log_text = cluster.log_path(victim).read_text(errors="replace")
            assert "Traceback" not in log_text, \
                f"{victim} stopped with a traceback; see {cluster.log_path(victim)}"
            assert "store_failed_write_error" in log_text, \
                f"{victim} stopped without saying why; see {cluster.log_path(victim)}"
            load.wait_commits(10, 30, f"with {victim} stopped")
            cluster.prefix.pop(victim)
            cluster.start(victim)  # without libfiu
            figures["catch_up_s"] = catch_up(cluster, victim, live, CATCH_UP_S)
            load.wait_commits(5, 20, f"after {victim} restarted")
        figures.update(check_all(cluster, cluster.ids, list(cluster.acked), mono))
    finally:
        cluster.close()

