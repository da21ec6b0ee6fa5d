"""``pbftd bench``: load a cluster through JSON-RPC and report what it sustained.

A local cluster (one ``pbftd run`` process per court, in a temporary
directory) is started, waited for and stopped again; or running nodes are
targeted by URL and token.  See docs/PERFORMANCE.md for what each figure
means.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import trio

from .catchup import format_catchup, run_catchup
from .http import Connection, HttpError
from .load import LATE_MS, Recorder, run_workload
from .nodes import LocalCluster, ProcSample, Target, metric_value, node_height, proc_sample
from .options import MODES, VALIDATOR_COUNTS, BenchOptions, OptionError
from .report import format_report, latency_summary

__all__ = ["MODES", "VALIDATOR_COUNTS", "BenchError", "BenchOptions", "OptionError",
           "run_bench"]

READY_TIMEOUT_S = 90.0
RSS_SETTLE_S = 60.0  # peak RSS growth is reported from this far into the window


class BenchError(Exception):
    """The bench could not run (a node did not start, a target is unreachable)."""


def run_bench(opts: BenchOptions, out: TextIO = sys.stdout,
              err: TextIO = sys.stderr) -> dict[str, Any]:
    """Run one bench; print the report to ``out`` and return it as a dict."""
    opts.check()
    if opts.local:
        cluster = LocalCluster(opts.validators, opts.observers, keep_dir=opts.keep_dir,
                               stop_grace_s=opts.stop_grace_s, settings=opts.settings)
        try:
            print(f"starting {opts.validators} validators"
                  + (f" and {opts.observers} observers" if opts.observers else "")
                  + " ...", file=err, flush=True)
            targets = cluster.start()
            if opts.mode == "catchup":
                report = trio.run(run_catchup, opts, targets, cluster, err)
            else:
                report = trio.run(_bench, opts, targets, cluster, err)
        finally:
            codes = cluster.stop()
            cluster.cleanup()
        report["stopped"] = {cid: code for cid, code in codes.items()}
    else:
        targets = [Target(f"node-{i}", url, opts.tokens[i % len(opts.tokens)], pid=None)
                   for i, url in enumerate(opts.rpc)]
        report = trio.run(_bench, opts, targets, None, err)
    for line in (format_catchup(report) if opts.mode == "catchup" else format_report(report)):
        print(line, file=out)
    out.flush()
    return report


async def _call(conn: Connection, method: str, params: dict[str, Any] | None = None) -> Any:
    reply = await conn.post_json({"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": params or {}})
    answer = reply.json()
    if "error" in answer:
        raise HttpError("rpc", f"{method}: {answer['error'].get('message')}")
    return answer["result"]


async def _statuses(targets: list[Target]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in targets:
        conn = Connection(t.url, t.token)
        try:
            out[t.url] = await _call(conn, "node.status")
        finally:
            await conn.aclose()
    return out


async def _wait_ready(targets: list[Target], cluster: LocalCluster | None) -> None:
    """Every node answers node.status; every validator sees the other validators."""
    deadline = trio.current_time() + READY_TIMEOUT_S
    last = "no answer yet"
    while True:
        if cluster is not None and (gone := cluster.exited()):
            raise BenchError("; ".join(gone))
        try:
            st = await _statuses(targets)
            validators = sum(1 for s in st.values() if s.get("role") == "validator")
            lagging = [s["court"] for s in st.values()
                       if s.get("role") == "validator" and len(s["peers"]) < validators - 1]
            if not lagging:
                return
            last = f"{', '.join(lagging)} not connected to every validator"
        except (HttpError, ValueError, KeyError) as exc:
            last = str(exc)
            if cluster is None:
                raise BenchError(f"cannot use the targets: {exc}") from None
        if trio.current_time() > deadline:
            raise BenchError(f"nodes not ready after {READY_TIMEOUT_S:.0f} s: {last}")
        await trio.sleep(0.25)


async def _view_changes(targets: list[Target]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for t in targets:
        conn = Connection(t.url, t.token)
        try:
            reply = await conn.get("/metrics")
            out[t.url] = metric_value(reply.body.decode("utf-8", "replace"),
                                      "pbftd_view_changes_total")
        except HttpError:
            out[t.url] = None
        finally:
            await conn.aclose()
    return out


async def _heights(targets: list[Target]) -> dict[str, int | None]:
    return {t.url: await node_height(t) for t in targets}


def _samples(targets: list[Target]) -> dict[str, ProcSample | None]:
    return {t.url: proc_sample(t.pid) if t.pid else None for t in targets}


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class _Progress:
    def __init__(self, err: TextIO, opts: BenchOptions, rec: Recorder, start: float) -> None:
        self.err, self.opts, self.rec, self.start = err, opts, rec, start
        self.tty = hasattr(err, "isatty") and err.isatty()
        self.last_print = -10.0
        self.width = 0

    def line(self, now: float) -> str:
        rec = self.rec
        t = now - self.start
        phase = ("warm-up" if now < rec.window_start else
                 "measure" if now < rec.window_end else "drain")
        lat = sorted(rec.tick_latencies_ms)
        p50 = f"{lat[len(lat) // 2]:.0f}" if lat else "-"
        p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.0f}" if lat else "-"
        errors = sum(rec.errors.values())
        return (f"[{t:5.1f}s {phase}] {rec.tick_committed}/s committed, "
                f"{rec.committed_total} total, latency p50 {p50} p99 {p99} ms, "
                f"in flight {rec.in_flight}, errors {errors}")

    async def run(self) -> None:
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            text = self.line(now)
            self.rec.tick_committed = 0
            self.rec.tick_latencies_ms = []
            if self.tty:
                self.err.write("\r" + text.ljust(self.width))
                self.width = len(text)
                self.err.flush()
            elif now - self.last_print >= 5.0:
                self.err.write(text + "\n")
                self.err.flush()
                self.last_print = now

    def finish(self) -> None:
        if self.tty and self.width:
            self.err.write("\r" + " " * self.width + "\r")
            self.err.flush()


async def _bench(opts: BenchOptions, targets: list[Target], cluster: LocalCluster | None,
                 err: TextIO) -> dict[str, Any]:
    await _wait_ready(targets, cluster)
    before = await _statuses(targets)
    for t in targets:
        st = before[t.url]
        t.court_id = st.get("node_id", t.court_id)
        t.name = st.get("court", t.court_id)
        t.validator = st.get("role", "validator") == "validator"
    vc_before = await _view_changes(targets)
    print(f"{len(targets)} nodes ready; {opts.mode} load for {opts.warmup_s:g} s warm-up + "
          f"{opts.duration_s:g} s", file=err, flush=True)

    start = trio.current_time() + 0.05
    rec = Recorder(window_start=start + opts.warmup_s,
                   window_end=start + opts.warmup_s + opts.duration_s)
    progress = _Progress(err, opts, rec, start)
    marks: dict[str, Any] = {}
    sampled = trio.Event()

    async def sample_window() -> None:
        await trio.sleep_until(rec.window_start)
        marks["start"] = (_samples(targets), _self_cpu(), time.time())
        marks["heights_start"] = await _heights(targets)
        if opts.duration_s > RSS_SETTLE_S:
            # Issue 6: peak RSS may grow < 10% after the first minute of a long run.
            await trio.sleep_until(rec.window_start + RSS_SETTLE_S)
            marks["settled"] = _samples(targets)
        await trio.sleep_until(rec.window_end)
        marks["end"] = (_samples(targets), _self_cpu(), time.time())
        marks["heights_end"] = await _heights(targets)
        sampled.set()

    drained = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.run)
        nursery.start_soon(sample_window)
        await trio.sleep_until(start)
        drained = await run_workload(opts, targets, rec, start)
        if "end" in marks:
            await sampled.wait()  # the heights at the window's end are being read
        else:  # the load stopped before the window ended
            marks["end"] = (_samples(targets), _self_cpu(), time.time())
        nursery.cancel_scope.cancel()
    progress.finish()
    if "heights_start" in marks and "heights_end" not in marks:
        # blocks up to where the load stopped, as the CPU and RSS samples are
        marks["heights_end"] = await _heights(targets)

    after = await _statuses(targets)
    vc_after = await _view_changes(targets)
    if cluster is not None and (gone := cluster.exited()):
        rec.error("node exited during the run", len(gone))
    return _assemble(opts, targets, rec, marks, before, after, vc_before, vc_after, drained)


def _assemble(opts: BenchOptions, targets: list[Target], rec: Recorder, marks: dict[str, Any],
              before: dict[str, Any], after: dict[str, Any], vc_before: dict[str, Any],
              vc_after: dict[str, Any], drained: bool) -> dict[str, Any]:
    s0, cpu0, wall0 = marks.get("start", marks["end"])
    s1, cpu1, _wall1 = marks["end"]
    nodes, vc_total, vc_missing = [], 0, False
    settled = marks.get("settled", {})
    for t in targets:
        a, b, m = s0.get(t.url), s1.get(t.url), settled.get(t.url)
        vb, va = vc_before.get(t.url), vc_after.get(t.url)
        if vb is not None and va is not None:
            vc = int(va - vb)
            vc_total += vc
        else:
            vc, vc_missing = None, True
        nodes.append({
            "court_id": t.court_id, "name": t.name, "url": t.url, "role": "validator" if t.validator
            else "observer", "pid": t.pid,
            "cpu_seconds": round(b.cpu_s - a.cpu_s, 3) if a and b else None,
            "rss_peak_mb": round(b.rss_peak_kb / 1024, 1) if b else None,
            "rss_end_mb": round(b.rss_kb / 1024, 1) if b else None,
            **({"rss_peak_mb_after_1min": round(m.rss_peak_kb / 1024, 1),
                "rss_peak_growth_after_1min_pct":
                    round(100 * (b.rss_peak_kb - m.rss_peak_kb) / m.rss_peak_kb, 1)}
               if m and b else {}),
            "view_changes": vc,
            "view_before": before[t.url]["view"], "view_after": after[t.url]["view"],
            "height_before": before[t.url]["height"], "height_after": after[t.url]["height"],
        })
    per_block = _per_block(targets, nodes, marks, rec.committed_in_window, opts.duration_s)
    views_moved = sum(1 for n in nodes if n["view_after"] != n["view_before"])
    lat = latency_summary(rec.latencies_ms)
    report: dict[str, Any] = {
        "pbftd_bench": 1,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall0)),
        "config": opts.as_dict(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "committed": rec.committed_in_window,
        "throughput_per_s": round(rec.committed_in_window / opts.duration_s, 2),
        "latency_ms": lat,
        "latency_unit": "batch call" if opts.mode == "batch" else "call",
        "calls": {"ok": rec.calls_ok, "failed": rec.calls_failed,
                  "committed_incl_warmup_and_drain": rec.committed_total},
        "errors": dict(rec.errors),
        "view_changes": {"total": vc_total, "nodes_whose_view_moved": views_moved,
                         **({"note": "some nodes' /metrics could not be read"}
                            if vc_missing else {})},
        **per_block,
        "nodes": nodes,
        "bench_cpu_seconds": round(cpu1 - cpu0, 3),
        "drained": drained,
    }
    if opts.mode == "open":
        report["open_loop"] = {
            "scheduled": rec.scheduled_in_window, "late": rec.late_sends,
            "late_threshold_ms": LATE_MS, "max_send_lag_ms": round(rec.max_send_lag_ms, 3),
            "unanswered": max(0, rec.scheduled_in_window - rec.window_calls_done),
        }
    if opts.mode == "mixed":
        report["reads"] = {"count": rec.reads_in_window,
                           "per_s": round(rec.reads_in_window / opts.duration_s, 2),
                           "latency_ms": latency_summary(rec.read_latencies_ms)}
    return report


def _per_block(targets: list[Target], nodes: list[dict[str, Any]], marks: dict[str, Any],
               committed: int, duration_s: float) -> dict[str, Any]:
    """Blocks executed in the window and CPU per attestation and per block.

    Why: under load the primary proposes whatever is waiting as soon as a
    block commits, so blocks per second and attestations per block move with
    the machine's speed; comparing two runs needs both, and the CPU each
    node spent per attestation and per block (nodes this bench started)."""
    h0, h1 = marks.get("heights_start", {}), marks.get("heights_end", {})
    spans = sorted(h1[t.url] - h0[t.url] for t in targets if t.validator
                   and h0.get(t.url) is not None and h1.get(t.url) is not None)
    blocks = spans[len(spans) // 2] if spans else None  # the median validator's
    cpus = [n["cpu_seconds"] for n in nodes if n["cpu_seconds"] is not None]
    cpu = sum(cpus) / len(cpus) if cpus else None
    validators = sum(1 for t in targets if t.validator)
    return {
        "blocks": {"in_window": blocks,
                   "per_s": round(blocks / duration_s, 2) if blocks is not None else None,
                   "attestations_per_block":
                       round(committed / blocks, 2) if blocks else None,
                   # a figure left out says why, or two runs compare wrongly
                   "unmeasured": None if blocks is not None else
                       f"none of the {validators} validators answered node.status at both "
                       f"edges of the window"},
        "cpu_ms_per_node": {
            "per_attestation": round(cpu * 1000 / committed, 4) if cpu is not None
            and committed else None,
            "per_block": round(cpu * 1000 / blocks, 3) if cpu is not None and blocks else None,
            "nodes": len(cpus)},
    }


def write_json(report: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
