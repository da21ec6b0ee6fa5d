"""The workloads: closed-loop clients, an open-loop schedule, and what they record.

Times are ``trio.current_time()`` seconds.  The measured window is
[warmup end, warmup end + duration]: throughput counts attestations whose
committed answer arrived inside it, latency counts every call sent (open
loop: scheduled) inside it, however late its answer comes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import trio

from .http import Connection, HttpError
from .nodes import Target
from .options import BenchOptions

__all__ = ["LATE_MS", "Payloads", "Recorder", "run_workload"]

LATE_MS = 10.0  # an open-loop send this much after its scheduled time is "behind schedule"
KINDS = ("efile_item", "electronic_evidence", "judgment", "delivery_receipt", "ruling")
TITLE_TEXT = "执行案件电子卷宗材料" * 20


class Payloads:
    """Unique attestation items: sha256 and request_id derive from a run id and a counter."""

    def __init__(self, title_chars: int = 0) -> None:
        self.run = uuid.uuid4().hex[:12]
        self.seq = itertools.count()
        self.title = TITLE_TEXT[:title_chars] if title_chars else None

    def item(self) -> dict[str, Any]:
        n = next(self.seq)
        item = {"sha256": hashlib.sha256(f"{self.run}:{n}".encode()).hexdigest(),
                "kind": KINDS[n % len(KINDS)],
                "case_no": f"(2024)吉0102执{n % 100000}号",
                "request_id": f"bench-{self.run}-{n}"}
        if self.title:
            item["title"] = self.title
        return item


@dataclass
class Recorder:
    window_start: float
    window_end: float
    latencies_ms: list[float] = field(default_factory=list)
    read_latencies_ms: list[float] = field(default_factory=list)
    committed_in_window: int = 0
    committed_total: int = 0
    calls_ok: int = 0
    calls_failed: int = 0
    window_calls_done: int = 0  # calls sent in the window that got an answer (or failed)
    reads_in_window: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    # open loop
    scheduled_in_window: int = 0
    late_sends: int = 0
    max_send_lag_ms: float = 0.0
    # progress: since the last tick
    tick_committed: int = 0
    tick_latencies_ms: list[float] = field(default_factory=list)
    recent_shas: deque[str] = field(default_factory=lambda: deque(maxlen=10_000))

    def in_window(self, t: float) -> bool:
        return self.window_start <= t < self.window_end

    def write_done(self, sent: float, done: float, committed: int, ok: bool) -> None:
        self.committed_total += committed
        self.tick_committed += committed
        if self.window_start <= done <= self.window_end:
            self.committed_in_window += committed
        if self.in_window(sent):
            self.window_calls_done += 1
        if ok:
            self.calls_ok += 1
            latency = (done - sent) * 1000
            self.tick_latencies_ms.append(latency)
            if self.in_window(sent):
                self.latencies_ms.append(latency)
        else:
            self.calls_failed += 1

    def read_done(self, sent: float, done: float) -> None:
        if self.in_window(sent):
            self.reads_in_window += 1
            self.read_latencies_ms.append((done - sent) * 1000)

    def error(self, kind: str, count: int = 1) -> None:
        self.errors[kind] += count


def _rpc_error_kind(reply_status: int, error: dict[str, Any]) -> str:
    code, message = error.get("code"), error.get("message", "")
    prefix = f"http {reply_status} " if reply_status != 200 else ""
    return f"{prefix}rpc {code} {message}".strip()


class _Caller:
    """One keep-alive connection to one node, making one call at a time."""

    def __init__(self, target: Target, opts: BenchOptions, rec: Recorder,
                 payloads: Payloads) -> None:
        self.conn = Connection(target.url, target.token)
        self.opts, self.rec, self.payloads = opts, rec, payloads
        self.ids = itertools.count(1)

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        """The result, or None after recording the failure's kind."""
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        reply = None
        with trio.move_on_after(self.opts.call_timeout_s):
            try:
                reply = await self.conn.post_json(body)
            except HttpError as exc:
                self.rec.error(f"{exc.kind} error")
                return None
        if reply is None:
            await self.conn.aclose()
            self.rec.error("client timeout")
            return None
        try:
            answer = reply.json()
        except ValueError:
            self.rec.error(f"http {reply.status} not json")
            return None
        if not isinstance(answer, dict):
            self.rec.error(f"http {reply.status} unexpected answer")
            return None
        if "error" in answer:
            self.rec.error(_rpc_error_kind(reply.status, answer["error"]))
            return None
        return answer.get("result")

    async def attest(self, sent: float) -> None:
        item = self.payloads.item()
        self.rec.in_flight += 1
        try:
            result = await self._call("evidence.attest", {**item, "wait": True})
        finally:
            self.rec.in_flight -= 1
        done = trio.current_time()
        if result is None:
            self.rec.write_done(sent, done, 0, ok=False)
        elif result.get("status") != "committed":
            self.rec.error(f"not committed ({result.get('status')})")
            self.rec.write_done(sent, done, 0, ok=False)
        else:
            self.rec.recent_shas.append(item["sha256"])
            self.rec.write_done(sent, done, 1, ok=True)

    async def attest_batch(self, sent: float) -> None:
        items = [self.payloads.item() for _ in range(self.opts.batch_size)]
        self.rec.in_flight += len(items)
        try:
            result = await self._call("evidence.attestBatch", {"items": items, "wait": True})
        finally:
            self.rec.in_flight -= len(items)
        done = trio.current_time()
        if result is None:
            self.rec.write_done(sent, done, 0, ok=False)
            return
        committed = 0
        for one in result.get("results", []):
            if one.get("status") == "committed":
                committed += 1
            elif "error" in one:
                self.rec.error("item " + _rpc_error_kind(200, one["error"]))
            else:
                self.rec.error(f"item not committed ({one.get('status')})")
        if committed:
            self.rec.recent_shas.append(items[0]["sha256"])
        self.rec.write_done(sent, done, committed, ok=committed == len(items))

    async def verify(self, sent: float) -> None:
        shas = self.rec.recent_shas
        sha = (shas[random.randrange(len(shas))] if shas and random.random() < 0.9
               else hashlib.sha256(uuid.uuid4().bytes).hexdigest())
        result = await self._call("evidence.verify", {"sha256": sha})
        if result is not None:
            self.rec.read_done(sent, trio.current_time())


async def _closed_loop(caller: _Caller, reader: _Caller | None, opts: BenchOptions,
                       rec: Recorder) -> None:
    try:
        while (sent := trio.current_time()) < rec.window_end:
            if reader is not None and random.random() < opts.read_ratio:
                await reader.verify(sent)
            elif opts.mode == "batch":
                await caller.attest_batch(sent)
            else:
                await caller.attest(sent)
    finally:
        with trio.CancelScope(shield=True):
            await caller.conn.aclose()
            if reader is not None:
                await reader.conn.aclose()


async def _open_producer(send: trio.MemorySendChannel[float], start: float, rate: float,
                         rec: Recorder) -> None:
    async with send:
        for i in itertools.count():
            scheduled = start + i / rate
            if scheduled >= rec.window_end:
                return
            if scheduled > trio.current_time():
                await trio.sleep_until(scheduled)
            if rec.in_window(scheduled):
                rec.scheduled_in_window += 1
            send.send_nowait(scheduled)


async def _open_worker(caller: _Caller, receive: trio.MemoryReceiveChannel[float],
                       rec: Recorder) -> None:
    try:
        async with receive:
            async for scheduled in receive:
                lag_ms = (trio.current_time() - scheduled) * 1000
                if rec.in_window(scheduled):
                    rec.max_send_lag_ms = max(rec.max_send_lag_ms, lag_ms)
                    if lag_ms > LATE_MS:
                        rec.late_sends += 1
                await caller.attest(scheduled)  # latency counts from the scheduled time
    finally:
        with trio.CancelScope(shield=True):
            await caller.conn.aclose()


async def run_workload(opts: BenchOptions, targets: list[Target], rec: Recorder,
                       start: float) -> bool:
    """Drive the load until the window ends and calls drain; False if the drain timed out."""
    writers = [t for t in targets if t.validator] or targets
    payloads = Payloads(opts.title_chars)
    assert opts.clients is not None
    drain_deadline = rec.window_end + opts.call_timeout_s + 5
    with trio.move_on_at(drain_deadline) as scope:
        async with trio.open_nursery() as nursery:
            if opts.mode == "open":
                assert opts.rate is not None
                send, receive = trio.open_memory_channel[float](math.inf)
                nursery.start_soon(_open_producer, send, start, opts.rate, rec)
                for i in range(opts.clients):
                    caller = _Caller(writers[i % len(writers)], opts, rec, payloads)
                    nursery.start_soon(_open_worker, caller, receive.clone(), rec)
                await receive.aclose()
            else:
                for i in range(opts.clients):
                    caller = _Caller(writers[i % len(writers)], opts, rec, payloads)
                    reader = (_Caller(targets[i % len(targets)], opts, rec, payloads)
                              if opts.mode == "mixed" else None)
                    nursery.start_soon(_closed_loop, caller, reader, opts, rec)
    if scope.cancelled_caught:
        rec.error("unfinished when the drain timed out", max(rec.in_flight, 1))
        return False
    return True
