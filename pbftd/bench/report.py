"""Figures from a bench run: percentiles, the JSON report and its text form."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_report", "latency_summary", "percentile"]


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(samples)
    return {"count": len(ordered),
            **{f"p{p}": round(percentile(ordered, p), 3) for p in (50, 95, 99)},
            "max": round(ordered[-1], 3), "mean": round(sum(ordered) / len(ordered), 3)}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_report(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    where = (f"local cluster: {cfg['validators']} validators"
             + (f" + {cfg['observers']} observers" if cfg["observers"] else "")
             if cfg["local"] else f"{len(cfg['rpc'])} running node(s)")
    mode, clients = cfg["mode"], cfg["clients"]
    if mode == "attest":
        load = f"{clients} clients, evidence.attest wait=true, closed loop"
    elif mode == "batch":
        load = (f"{clients} clients, evidence.attestBatch of {cfg['batch_size']} items "
                "wait=true, closed loop")
    elif mode == "open":
        load = (f"open loop at {cfg['rate']:g} attestations/s, evidence.attest wait=true, "
                f"up to {clients} connections")
    else:
        load = (f"{clients} clients, evidence.attest wait=true with "
                f"{cfg['read_ratio']:.0%} evidence.verify reads, closed loop")
    lat = r["latency_ms"]
    lines = [
        f"pbftd bench: {cfg['mode']} on {where}",
        f"  load        {load}",
        f"  window      {cfg['duration_s']:g} s after {cfg['warmup_s']:g} s warm-up",
        f"  committed   {r['committed']} attestations, {r['throughput_per_s']:.1f}/s",
        f"  latency     p50 {_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  p99 {_ms(lat['p99'])}  "
        f"max {_ms(lat['max'])} ms  ({lat['count']} {r['latency_unit']}s, send -> committed)",
    ]
    if "open_loop" in r:
        ol = r["open_loop"]
        lines.append(f"  schedule    {ol['scheduled']} sends scheduled, {ol['late']} sent more "
                     f"than {ol['late_threshold_ms']:g} ms behind schedule (worst "
                     f"{ol['max_send_lag_ms']:.1f} ms); {ol['unanswered']} unanswered")
    if "reads" in r:
        rd = r["reads"]
        lines.append(f"  reads       {rd['count']} evidence.verify, {rd['per_s']:.1f}/s, "
                     f"p50 {_ms(rd['latency_ms']['p50'])} p99 {_ms(rd['latency_ms']['p99'])} ms")
    blocks, cpu = r.get("blocks", {}), r.get("cpu_ms_per_node", {})
    if blocks.get("in_window") is not None:
        each = blocks["attestations_per_block"]
        lines.append(f"  blocks      {blocks['in_window']} in the window, {blocks['per_s']:.1f}/s"
                     + (f", {each:.1f} attestations each" if each is not None else ""))
    elif blocks.get("unmeasured"):
        lines.append(f"  blocks      not measured: {blocks['unmeasured']}")
    if cpu.get("per_attestation") is not None:
        lines.append(f"  cpu/node    {cpu['per_attestation']:.4f} ms per attestation"
                     + (f", {cpu['per_block']:.2f} ms per block" if cpu["per_block"] else "")
                     + f" (mean of {cpu['nodes']} nodes)")
    calls = r["calls"]
    lines.append(f"  calls       {calls['ok']} ok, {calls['failed']} failed")
    errors = r["errors"]
    lines.append("  errors      " + (", ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
                                     if errors else "none"))
    vc = r["view_changes"]
    lines.append(f"  view change {vc['total']} started during the run"
                 + (f" ({vc['note']})" if vc.get("note") else ""))
    for node in r["nodes"]:
        cpu = node.get("cpu_seconds")
        rss = node.get("rss_peak_mb")
        lines.append(f"  node        {node['court_id']:<22} "
                     + (f"cpu {cpu:6.2f} s  " if cpu is not None else "cpu    -    ")
                     + (f"peak rss {rss:6.1f} MB  " if rss is not None else "")
                     + (f"(+{node['rss_peak_growth_after_1min_pct']}% after 1 min)  "
                        if "rss_peak_growth_after_1min_pct" in node else "")
                     + f"views {node['view_before']}->{node['view_after']}")
    if r.get("bench_cpu_seconds") is not None:
        lines.append(f"  bench       this process used {r['bench_cpu_seconds']:.2f} CPU s "
                     "in the window (it shares the machine)")
    return lines
