"""CI smoke of ``pbftd bench``: it completes and reports sane fields.

No timing assertion here (the machine is shared and noisy); the figures
themselves are for docs/PERFORMANCE.md.  Each run starts and stops its own
4-validator cluster; afterwards none of its daemons may still be running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pbftd.bench.nodes import apply_settings
from pbftd.bench.options import BenchOptions, OptionError, connections_per_validator
from pbftd.bench.report import format_report, latency_summary

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str, timeout_s: float = 120) -> tuple[dict, str]:
    out = tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "pbftd.cli", "bench", "--validators", "4", *args,
         "--json", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=timeout_s)
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text()), proc.stdout


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _check_common(report: dict, stdout: str) -> None:
    assert report["committed"] > 0
    assert report["throughput_per_s"] > 0
    lat = report["latency_ms"]
    assert lat["count"] > 0
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert isinstance(report["errors"], dict)
    assert report["view_changes"]["total"] >= 0
    nodes = report["nodes"]
    assert len(nodes) == 4
    for node in nodes:
        assert node["pid"] > 0
        assert node["cpu_seconds"] >= 0
        assert node["rss_peak_mb"] > 0
        assert node["height_after"] >= node["height_before"]
        assert not _alive(node["pid"]), f"daemon {node['pid']} still running after bench"
    blocks, cpu = report["blocks"], report["cpu_ms_per_node"]
    assert 0 < blocks["in_window"] <= max(n["height_after"] for n in nodes)
    assert blocks["per_s"] > 0 and blocks["attestations_per_block"] > 0
    assert blocks["unmeasured"] is None
    assert cpu["nodes"] == 4 and cpu["per_attestation"] > 0 and cpu["per_block"] > 0
    mean_cpu = sum(n["cpu_seconds"] for n in nodes) / 4
    assert abs(cpu["per_attestation"] - mean_cpu * 1000 / report["committed"]) < 1e-3
    assert report["config"]["tokens"] == 0  # no credential in the report
    assert "committed" in stdout and "latency" in stdout
    assert "attestations each" in stdout and "ms per attestation" in stdout


def test_batch_smoke(tmp_path: Path) -> None:
    report, stdout = _bench(tmp_path, "--mode", "batch", "--batch-size", "200",
                            "--duration", "5", "--warmup", "1")
    _check_common(report, stdout)
    assert report["config"]["mode"] == "batch"
    assert report["config"]["batch_size"] == 200
    assert report["latency_unit"] == "batch call"


def test_open_loop_smoke_twice_with_the_medians(tmp_path: Path) -> None:
    series, stdout = _bench(tmp_path, "--mode", "open", "--rate", "50", "--duration", "3",
                            "--warmup", "1", "--repeat", "2")
    assert series["pbftd_bench_series"] == 1 and series["repeat"] == 2
    runs = series["runs"]
    assert len(runs) == 2 and len({n["pid"] for r in runs for n in r["nodes"]}) == 8
    for report in runs:
        _check_common(report, stdout)
        ol = report["open_loop"]
        assert ol["scheduled"] > 0
        assert 0 <= ol["late"] <= ol["scheduled"]
        assert ol["max_send_lag_ms"] >= 0
    throughputs = [r["throughput_per_s"] for r in runs]
    assert series["values"]["throughput_per_s"] == throughputs
    assert series["median"]["throughput_per_s"] == sum(throughputs) / 2
    assert "median of 2 runs" in stdout and stdout.count("pbftd bench: open") == 2


def test_catchup_smoke(tmp_path: Path) -> None:
    """Load a little, wipe a validator, and it catches up; --set reaches the nodes."""
    report, stdout = _bench(tmp_path, "--mode", "catchup", "--count", "300",
                            "--batch-size", "100", "--clients", "2",
                            "--set", "consensus.pipeline_depth_max=4", timeout_s=170)
    assert report["mode"] == "catchup"
    assert report["load"]["committed"] == 300 and report["load"]["failed"] == 0
    assert report["height"] > 0
    assert report["catchup_seconds"] >= report["startup_seconds"] > 0
    assert report["node"]["rss_peak_mb"] > 0
    assert report["config"]["settings"] == ["consensus.pipeline_depth_max=4"]
    assert "caught up" in stdout


def test_connections_fit_the_nodes_per_address_cap() -> None:
    """Every bench connection to a local node comes from 127.0.0.1: load
    clients (writes to validators only, reads to every node) plus one for
    node.status.  A run the cap would cut short is refused up front; one
    that fits exactly is allowed."""
    def opts(**kw: object) -> BenchOptions:
        return BenchOptions(**kw)  # type: ignore[arg-type]
    assert connections_per_validator(opts(mode="open", clients=1020, rate=1.0).check()) == 256
    assert connections_per_validator(opts(mode="open", clients=1021, rate=1.0)) == 257
    with pytest.raises(OptionError, match="257 connections"):
        opts(mode="open", clients=1021, rate=1.0).check()
    mixed = opts(mode="mixed", clients=100, validators=4, observers=1).check()
    assert connections_per_validator(mixed) == 25 + 20 + 1
    # a raised cap lets the same run through
    opts(mode="open", clients=1024, rate=1.0,
         settings=["rpc.connections_per_address_max=257"]).check()
    # remote targets: their cap is theirs to report (as errors), not checked here
    opts(mode="open", clients=4096, rate=1.0, rpc=["http://127.0.0.1:1/"], tokens=["t"]).check()


def test_report_says_why_blocks_are_missing() -> None:
    """A figure the bench could not measure is named with the reason, never
    silently left out (session 11: a run without its block count)."""
    report = {
        "config": {"local": True, "validators": 4, "observers": 0, "mode": "open",
                   "clients": 256, "rate": 10.0, "duration_s": 3, "warmup_s": 1},
        "committed": 30, "throughput_per_s": 10.0, "latency_ms": latency_summary([5.0]),
        "latency_unit": "call", "calls": {"ok": 30, "failed": 0}, "errors": {},
        "view_changes": {"total": 0}, "nodes": [], "cpu_ms_per_node": {},
        "blocks": {"in_window": None, "per_s": None, "attestations_per_block": None,
                   "unmeasured": "none of the 4 validators answered node.status at both "
                                 "edges of the window"}}
    lines = [line for line in format_report(report) if line.lstrip().startswith("blocks")]
    assert lines == ["  blocks      not measured: none of the 4 validators answered node.status "
                     "at both edges of the window"]


def test_settings_land_in_the_nodes_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('court_id = "x"\n\n[consensus]\nrequest_timeout_ms = 2000\n'
                      '\n[[rpc.tokens]]\nname = "admin"\n')
    apply_settings(config, ["consensus.request_timeout_ms=5000",
                            "consensus.pipeline_depth_max=2", "storage.sync_writes=false",
                            'log_level="debug"', 'court_id="y"'])
    parsed = tomllib.loads(config.read_text())
    assert parsed["court_id"] == "y" and parsed["log_level"] == "debug"
    assert parsed["consensus"] == {"request_timeout_ms": 5000, "pipeline_depth_max": 2}
    assert parsed["storage"] == {"sync_writes": False}
    assert parsed["rpc"]["tokens"] == [{"name": "admin"}]


@pytest.mark.parametrize("args, message", [
    (["--mode", "open"], "--mode open needs --rate"),
    (["--set", "consensus.pipeline_depth_max"], "expected key=value or section.key=value"),
    (["--set", "consensus.pipeline=2"], "--set: [consensus] unknown key 'pipeline'"),
    (["--set", "log_level=debug"], "is not one TOML value (text needs quotes"),
    (["--set", "log_level=\"loud\""], "log_level"),
    (["--set", "consensus.batch_wait_ms=-1"], "batch_wait_ms"),
    (["--set", "consensus.batch_wait_ms=1\nx=2"], "expected key=value"),
    (["--set", "data_dir=\"/tmp/x\""], "the bench's local cluster sets this itself"),
    (["--mode", "catchup", "--rpc", "http://127.0.0.1:1/", "--token", "t"],
     "needs a local cluster"),
    (["--mode", "open", "--rate", "0"], "--rate must be positive"),
    (["--validators", "5"], "--validators must be 4, 7 or 10"),
    (["--duration", "-1"], "--duration must be positive"),
    (["--rpc", "http://127.0.0.1:1/"], "need --token"),
    (["--mode", "open", "--rate", "10", "--clients", "1024"],
     "needs 257 connections to each validator"),
    (["--mode", "mixed", "--clients", "300", "--set", "rpc.connections_per_address_max=100"],
     "use fewer clients or --set rpc.connections_per_address_max=151"),
    (["--repeat", "0"], "--repeat must be between 1 and 20"),
    (["--repeat", "3", "--keep-dir", "/tmp/x"], "cannot be used with --repeat"),
])
def test_bad_arguments_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pbftd.cli", "bench", *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
