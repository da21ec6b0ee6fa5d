"""The fault suite's checks, run after every scenario (issue 7).

S1  honest nodes have the same block hash at every height;
S2  every write acknowledged to a client is on every honest chain exactly once;
S3  heights and views never go back, across restarts (``Monotonic`` samples);
S4  stable checkpoints are equal (same block hash at each node's stable seq);
L1  new requests commit within 10 s of healing, lagging nodes converge in 30 s.

Each check raises AssertionError naming the node, height or transaction that
broke the property, and returns figures for the summary table.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rpc.client import RpcCallError, RpcTransportError
from rpc.ratelimit import RATE_LIMITED
from tests.daemon.harness import RPC_ERRORS, Cluster, wait_until

COMMIT_AFTER_HEAL_S = 10.0
CONVERGE_AFTER_HEAL_S = 30.0


HEADERS_PER_CALL = 1000  # chain.getHeaders' limit
RATE_LIMITED_RETRIES = 50
VERIFY_PER_BATCH = 200


def _batch(cluster: Cluster, court_id: str, method: str,
           params_list: list[dict[str, Any]]) -> list[Any]:
    """One JSON-RPC batch of ``method`` calls to ``court_id``; results in order.
    (Checks after a 10-minute run cover ~10,000 writes on four nodes: one
    HTTP request per check would take minutes on a loaded machine.)"""
    client = cluster.client(court_id, timeout_s=60.0)
    body = [{"jsonrpc": "2.0", "id": k, "method": method, "params": p}
            for k, p in enumerate(params_list)]
    for _attempt in range(RATE_LIMITED_RETRIES):
        replies = client._post(body)  # the client has no batch call
        if not isinstance(replies, list):
            raise RpcTransportError(f"{court_id} answered a batch with {replies!r:.200}")
        # Every call of a batch counts against the token's rate limit; the
        # checks are reads, so a refused batch is simply sent again later.
        waits = [r["error"].get("data", {}).get("retry_after_ms", 100) for r in replies
                 if r.get("error", {}).get("code") == RATE_LIMITED]
        if not waits:
            break
        time.sleep(max(waits) / 1000 + 0.05)
    by_id = {r.get("id"): r for r in replies}
    out = []
    for k in range(len(params_list)):
        reply = by_id.get(k, {})
        if "error" in reply or "result" not in reply:
            err = reply.get("error", {})
            raise RpcCallError(err.get("code", 0), err.get("message", "no reply"), err.get("data"))
        out.append(reply["result"])
    return out


def _block_hashes(cluster: Cluster, court_id: str, top: int) -> list[str]:
    hashes: list[str] = []
    for lo in range(1, top + 1, HEADERS_PER_CALL):
        hi = min(top, lo + HEADERS_PER_CALL - 1)
        got = cluster.call(court_id, "chain.getHeaders", {"from_height": lo, "to_height": hi})
        hashes += [h["block_hash"] for h in got["headers"]]
    assert len(hashes) == top, f"{court_id} returned {len(hashes)} headers for 1..{top}"
    return hashes


def check_same_blocks(cluster: Cluster, ids: list[str]) -> int:
    """S1 up to the lowest common height; returns that height."""
    heights = {i: cluster.status(i)["height"] for i in ids}
    common = min(heights.values())
    chains = {i: _block_hashes(cluster, i, common) for i in ids}
    for h in range(1, common + 1):
        hashes = {i: chains[i][h - 1] for i in ids}
        assert len(set(hashes.values())) == 1, f"S1: block {h} differs between nodes: {hashes}"
    return common


def check_acked_once(cluster: Cluster, ids: list[str], acked: list[dict[str, Any]]) -> int:
    """S2: each acknowledged attestation (tx_id, sha256) is on every chain once."""
    for i in ids:
        for lo in range(0, len(acked), VERIFY_PER_BATCH):
            chunk = acked[lo:lo + VERIFY_PER_BATCH]
            found = _batch(cluster, i, "evidence.verify", [{"sha256": a["sha256"]} for a in chunk])
            for ack, result in zip(chunk, found, strict=True):
                tx_ids = [r["tx_id"] for r in result["records"]]
                assert tx_ids == [ack["tx_id"]], \
                    f"S2: acknowledged {ack['tx_id']} (sha256 {ack['sha256']}) on {i}: {tx_ids}"
    return len(acked)


def check_checkpoints(cluster: Cluster, ids: list[str]) -> dict[str, int]:
    """S4: at each node's stable checkpoint, every node that has that height
    holds the same block."""
    stable = {i: cluster.status(i)["stable_checkpoint"] for i in ids}
    for seq in set(stable.values()) - {0}:
        hashes = {}
        for i in ids:
            if cluster.status(i)["height"] >= seq:
                hashes[i] = cluster.block_hash(i, seq)
        assert len(set(hashes.values())) <= 1, f"S4: checkpoint {seq} differs: {hashes}"
    return stable


def check_live(cluster: Cluster, ids: list[str]) -> dict[str, float]:
    """L1: a new attestation through each node commits within 10 s, then all
    of ``ids`` converge within 30 s.  Returns the times taken."""
    t0 = time.monotonic()
    for i in ids:
        cluster.attest(i, timeout_s=COMMIT_AFTER_HEAL_S)
    commit_s = time.monotonic() - t0
    t1 = time.monotonic()
    cluster.wait_converged(ids, timeout_s=CONVERGE_AFTER_HEAL_S,
                           what=f"L1: {ids} to converge within {CONVERGE_AFTER_HEAL_S:.0f}s")
    return {"commit_s": round(commit_s, 2), "converge_s": round(time.monotonic() - t1, 2)}


class Monotonic:
    """S3: samples every node's (height, view) in a thread; any step back,
    including across a restart, is recorded and fails ``check``."""

    def __init__(self, cluster: Cluster, ids: list[str], period_s: float = 0.25) -> None:
        self.cluster, self.ids, self.period_s = cluster, ids, period_s
        self.last: dict[str, tuple[int, int]] = {}
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monotonic", daemon=True)

    def __enter__(self) -> Monotonic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> None:
        for i in self.ids:
            try:
                st = self.cluster.client(i, timeout_s=2.0).call("node.status")
            except RPC_ERRORS:
                continue  # stopped, paused or restarting
            now = (st["height"], st["view"])
            before = self.last.get(i)
            if before is not None and (now[0] < before[0] or now[1] < before[1]):
                self.violations.append(f"S3: {i} went from (height, view) {before} to {now}")
            self.last[i] = now
            self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def check(self) -> int:
        self.sample()
        assert not self.violations, "; ".join(self.violations[:5])
        return self.samples


def check_all(cluster: Cluster, ids: list[str], acked: list[dict[str, Any]],
              monotonic: Monotonic | None = None) -> dict[str, Any]:
    """L1 first (it also makes lagging nodes catch up), then S1, S2, S4, S3."""
    figures: dict[str, Any] = dict(check_live(cluster, ids))
    figures["height"] = check_same_blocks(cluster, ids)
    figures["acked"] = check_acked_once(cluster, ids, acked + cluster.acked[-len(ids):])
    check_checkpoints(cluster, ids)
    if monotonic is not None:
        figures["samples"] = monotonic.check()
    return figures


__all__ = ["COMMIT_AFTER_HEAL_S", "CONVERGE_AFTER_HEAL_S", "Monotonic", "check_acked_once",
           "check_all", "check_checkpoints", "check_live", "check_same_blocks", "wait_until"]
