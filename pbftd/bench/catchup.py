"""``pbftd bench --mode catchup``: how fast a wiped replica catches up.

Issue 6 asks that a replica whose store was wiped catch up 1,000,000
attestations in under 60 s.  The bench loads ``--count`` attestations through
``evidence.attestBatch``, waits until every validator has the same height,
stops the last validator (never the view-0 primary), deletes its data
directory, starts it again, and times how long it takes until its
``node.status`` height equals the others'.  The time counts from the restart,
so it includes the daemon's start-up; the report gives the start-up
(first ``node.status`` answer) separately.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, TextIO

import trio

from .http import Connection, HttpError
from .load import Payloads
from .nodes import LocalCluster, Target, node_height, proc_sample
from .options import BenchOptions

__all__ = ["format_catchup", "run_catchup"]

SETTLE_TIMEOUT_S = 120.0
CATCHUP_TIMEOUT_S = 1800.0
POLL_S = 0.1


async def _load(opts: BenchOptions, writers: list[Target], err: TextIO) -> dict[str, Any]:
    payloads = Payloads(opts.title_chars)
    state = {"issued": 0, "committed": 0, "failed": 0}
    errors: Counter[str] = Counter()

    async def client(target: Target) -> None:
        conn = Connection(target.url, target.token)
        try:
            while state["issued"] < opts.count:
                n = min(opts.batch_size, opts.count - state["issued"])
                state["issued"] += n
                items = [payloads.item() for _ in range(n)]
                try:
                    reply = await conn.post_json({
                        "jsonrpc": "2.0", "id": 1, "method": "evidence.attestBatch",
                        "params": {"items": items, "wait": True}})
                    answer = reply.json()
                except (HttpError, ValueError) as exc:
                    state["failed"] += n
                    errors[type(exc).__name__] += 1
                    continue
                result = answer.get("result") if isinstance(answer, dict) else None
                if not isinstance(result, dict) or not isinstance(result.get("results"), list):
                    state["failed"] += n
                    error = answer.get("error") if isinstance(answer, dict) else None
                    errors[f"rpc {error.get('message') if isinstance(error, dict) else '?'}"] += 1
                    continue
                results = result["results"]
                ok = sum(1 for one in results if one.get("status") == "committed")
                for one in results:
                    if one.get("status") != "committed":
                        errors[f"item {one.get('error') or one.get('status')}"] += 1
                state["committed"] += ok
                state["failed"] += n - ok
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def progress() -> None:
        while True:
            await trio.sleep(5.0)
            print(f"loading: {state['committed']} of {opts.count} committed", file=err,
                  flush=True)

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress)
        async with trio.open_nursery() as clients:
            assert opts.clients is not None
            for i in range(opts.clients):
                clients.start_soon(client, writers[i % len(writers)])
        nursery.cancel_scope.cancel()
    seconds = trio.current_time() - started
    return {"committed": state["committed"], "failed": state["failed"],
            "errors": dict(errors), "seconds": round(seconds, 3),
            "per_s": round(state["committed"] / seconds, 1) if seconds > 0 else None}


async def _settle(validators: list[Target]) -> int:
    """Wait until every validator reports the same height; return it."""
    deadline = trio.current_time() + SETTLE_TIMEOUT_S
    while True:
        heights = [await node_height(t) for t in validators]
        if None not in heights and len(set(heights)) == 1:
            return heights[0]  # type: ignore[return-value]
        if trio.current_time() > deadline:
            from . import BenchError
            raise BenchError(f"validators did not settle on one height: {heights}")
        await trio.sleep(0.25)


async def run_catchup(opts: BenchOptions, targets: list[Target], cluster: LocalCluster,
                      err: TextIO) -> dict[str, Any]:
    from . import BenchError, _wait_ready  # the package imports this module

    await _wait_ready(targets, cluster)
    validators = [t for t in targets if t.validator]
    print(f"{len(targets)} nodes ready; loading {opts.count} attestations", file=err,
          flush=True)
    load = await _load(opts, validators, err)
    height = await _settle(validators)
    victim = validators[-1]
    print(f"height {height} everywhere; wiping and restarting {victim.court_id}", file=err,
          flush=True)
    started = trio.current_time()
    wall = time.time()
    cluster.restart_wiped(victim)
    answered_at = None
    while True:
        if gone := cluster.exited():
            raise BenchError("; ".join(gone))
        now = trio.current_time()
        if now - started > CATCHUP_TIMEOUT_S:
            raise BenchError(f"{victim.court_id} did not catch up in {CATCHUP_TIMEOUT_S:.0f} s")
        reached = await node_height(victim)
        if reached is not None and answered_at is None:
            answered_at = trio.current_time()
        if reached is not None and reached >= height:
            break
        await trio.sleep(POLL_S)
    done = trio.current_time()
    seconds = done - started
    sample = proc_sample(victim.pid) if victim.pid else None
    assert answered_at is not None
    return {
        "pbftd_bench": 1, "mode": "catchup",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall)),
        "config": opts.as_dict(),
        "load": load,
        "height": height,
        "wiped": victim.court_id,
        "catchup_seconds": round(seconds, 3),
        "startup_seconds": round(answered_at - started, 3),
        "attestations_per_s": round(load["committed"] / seconds, 1),
        "blocks_per_s": round(height / seconds, 1),
        "node": {"cpu_seconds": round(sample.cpu_s, 3) if sample else None,
                 "rss_peak_mb": round(sample.rss_peak_kb / 1024, 1) if sample else None},
    }


def format_catchup(r: dict[str, Any]) -> list[str]:
    load, node = r["load"], r["node"]
    return [
        f"pbftd bench: catchup on local cluster: {r['config']['validators']} validators",
        f"  load        {load['committed']} attestations committed in {load['seconds']:.1f} s "
        f"({load['per_s']}/s), {load['failed']} failed {load['errors'] or ''}",
        f"  wiped       {r['wiped']} at height {r['height']}",
        f"  caught up   in {r['catchup_seconds']:.1f} s from the restart "
        f"(start-up {r['startup_seconds']:.1f} s): {r['attestations_per_s']} attestations/s, "
        f"{r['blocks_per_s']} blocks/s",
        f"  node        cpu {node['cpu_seconds']} s  peak rss {node['rss_peak_mb']} MB",
    ]
