"""``pbftd bench --repeat N``: the same run N times, and the median of each figure.

One run on a shared machine says little (docs/PERFORMANCE.md: three rounds
of the same tree gave 6,300 to 7,200 attestations/s), so issue 6 quotes
medians of at least three runs. Each run starts its own cluster (or drives
the same ``--rpc`` targets again); the series prints every run's report as
it ends, then one line per figure with its median and the runs' values, and
its JSON holds the runs whole beside the medians.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .options import BenchOptions

__all__ = ["format_summary", "run_series", "summarise"]


def _node_max(key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(report: dict[str, Any]) -> float | None:
        values = [n[key] for n in report.get("nodes", []) if n.get(key) is not None]
        return max(values) if values else None
    return get


def _path(*keys: str) -> Callable[[dict[str, Any]], float | None]:
    def get(report: dict[str, Any]) -> float | None:
        value: Any = report
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    return get


# (name in the JSON, label in the text, unit, how to read it from one report)
_LOAD_FIGURES = [
    ("throughput_per_s", "committed", "/s", _path("throughput_per_s")),
    ("latency_p50_ms", "latency p50", "ms", _path("latency_ms", "p50")),
    ("latency_p99_ms", "latency p99", "ms", _path("latency_ms", "p99")),
    ("cpu_ms_per_attestation_per_node", "cpu/node", "ms per attestation",
     _path("cpu_ms_per_node", "per_attestation")),
    ("view_changes", "view changes", "", _path("view_changes", "total")),
    ("rss_peak_mb_max", "peak rss", "MB, largest node", _node_max("rss_peak_mb")),
    ("rss_growth_after_1min_pct_max", "rss growth", "% after 1 min, largest node",
     _node_max("rss_peak_growth_after_1min_pct")),
]
_CATCHUP_FIGURES = [
    ("catchup_seconds", "caught up in", "s", _path("catchup_seconds")),
    ("catchup_attestations_per_s", "catch-up rate", "attestations/s",
     _path("attestations_per_s")),
    ("load_per_s", "load", "attestations/s", _path("load", "per_s")),
    ("rss_peak_mb", "caught-up node rss", "MB", _path("node", "rss_peak_mb")),
]


def summarise(reports: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Each figure's median and its values run by run (None where a run
    did not measure it; the median is of the runs that did)."""
    figures = _CATCHUP_FIGURES if mode == "catchup" else _LOAD_FIGURES
    median: dict[str, float | None] = {}
    values: dict[str, list[float | None]] = {}
    for name, _label, _unit, get in figures:
        got = [get(r) for r in reports]
        measured = [v for v in got if v is not None]
        values[name] = got
        median[name] = statistics.median(measured) if measured else None
    return {"median": median, "values": values}


def format_summary(summary: dict[str, Any], mode: str, runs: int) -> list[str]:
    figures = _CATCHUP_FIGURES if mode == "catchup" else _LOAD_FIGURES
    lines = [f"pbftd bench: median of {runs} runs ({mode})"]
    for name, label, unit, _get in figures:
        med, got = summary["median"][name], summary["values"][name]
        if med is None:
            continue
        runs_text = " / ".join("-" if v is None else f"{v:g}" for v in got)
        lines.append(f"  {label:<22} {med:g}{' ' + unit if unit else ''}  (runs: {runs_text})")
    return lines


def run_series(opts: BenchOptions, repeat: int,
               run: Callable[[BenchOptions, TextIO, TextIO], dict[str, Any]],
               out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> dict[str, Any]:
    """``run`` (``run_bench``) ``repeat`` times; print and return the series."""
    reports = []
    for i in range(repeat):
        print(f"run {i + 1} of {repeat}", file=out, flush=True)
        reports.append(run(opts, out, err))
        print(file=out)
    summary = summarise(reports, opts.mode)
    for line in format_summary(summary, opts.mode, repeat):
        print(line, file=out)
    out.flush()
    return {"pbftd_bench_series": 1, "mode": opts.mode, "repeat": repeat, **summary,
            "runs": reports}
