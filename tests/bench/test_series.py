"""``pbftd bench --repeat``: medians of a series, from hand-made reports."""

from __future__ import annotations

import io

from pbftd.bench.options import BenchOptions
from pbftd.bench.series import format_summary, run_series, summarise


def _report(per_s: float, p50: float, rss: list[float | None], vc: int = 0) -> dict:
    return {"throughput_per_s": per_s, "latency_ms": {"p50": p50, "p99": p50 * 2},
            "cpu_ms_per_node": {"per_attestation": 0.05},
            "view_changes": {"total": vc},
            "nodes": [{"rss_peak_mb": r} for r in rss]}


def test_each_figure_is_the_median_of_the_runs_that_measured_it() -> None:
    reports = [_report(6300, 90, [70, 72]), _report(7200, 80, [71, 75], vc=1),
               _report(7100, 85, [None, None])]
    s = summarise(reports, "batch")
    assert s["values"]["throughput_per_s"] == [6300, 7200, 7100]
    assert s["median"]["throughput_per_s"] == 7100
    assert s["median"]["latency_p50_ms"] == 85 and s["median"]["latency_p99_ms"] == 170
    assert s["median"]["view_changes"] == 0
    # a run without RSS figures is left out of that median, and shown as '-'
    assert s["values"]["rss_peak_mb_max"] == [72, 75, None]
    assert s["median"]["rss_peak_mb_max"] == 73.5
    assert s["median"]["rss_growth_after_1min_pct_max"] is None
    lines = format_summary(s, "batch", 3)
    assert lines[0] == "pbftd bench: median of 3 runs (batch)"
    assert "  committed              7100 /s  (runs: 6300 / 7200 / 7100)" in lines
    assert "  view changes           0  (runs: 0 / 1 / 0)" in lines
    assert any(line.startswith("  peak rss") and "(runs: 72 / 75 / -)" in line
               for line in lines)
    assert not any("rss growth" in line for line in lines)   # measured by no run


def test_a_value_that_is_not_a_number_is_not_counted() -> None:
    odd = _report(10, 5, [1])
    odd["view_changes"]["total"] = True
    odd["latency_ms"] = "n/a"
    s = summarise([odd], "attest")
    assert s["values"]["view_changes"] == [None] and s["median"]["latency_p50_ms"] is None


def test_catchup_series_reports_the_catchup_figures() -> None:
    reports = [{"catchup_seconds": s, "attestations_per_s": 20000, "load": {"per_s": 5000},
                "node": {"rss_peak_mb": 120}} for s in (46.8, 47.9, 40.0)]
    s = summarise(reports, "catchup")
    assert s["median"]["catchup_seconds"] == 46.8
    assert "throughput_per_s" not in s["median"]


def test_run_series_runs_n_times_and_returns_every_report() -> None:
    calls: list[int] = []

    def fake_run(opts: BenchOptions, out: io.StringIO, _err: io.StringIO) -> dict:
        calls.append(1)
        print("pbftd bench: attest ...", file=out)
        return _report(100.0 * len(calls), 10, [50])

    out = io.StringIO()
    series = run_series(BenchOptions(mode="attest", repeat=3), 3, fake_run, out, io.StringIO())
    assert len(calls) == 3 and len(series["runs"]) == 3
    assert series["median"]["throughput_per_s"] == 200
    text = out.getvalue()
    assert text.index("run 1 of 3") < text.index("run 3 of 3") < text.index("median of 3")
