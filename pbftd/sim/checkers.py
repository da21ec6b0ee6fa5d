"""Safety checkers that watch every simulated step.

Each honest replica's executed blocks and visible state are compared against
what every other honest replica did: agreement on the block hash at each
height, hash-linked chains, no request executed twice, only submitted
requests executed, views and heights that never go back, and equal stable
checkpoints.  A violation is recorded with the simulated time it was seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.chain import ExecutedBlock, RequestKey


@dataclass
class Violation:
    time_ms: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"t={self.time_ms}ms {self.kind}: {self.detail}"


@dataclass
class Checker:
    genesis_hash: bytes
    honest: frozenset[str]
    violations: list[Violation] = field(default_factory=list)
    canonical: dict[int, bytes] = field(default_factory=dict)
    submitted: dict[RequestKey, bytes] = field(default_factory=dict)
    chains: dict[str, list[bytes]] = field(default_factory=dict)
    executed_keys: dict[str, set[RequestKey]] = field(default_factory=dict)
    seen_view: dict[str, int] = field(default_factory=dict)
    seen_height: dict[str, int] = field(default_factory=dict)
    stable: dict[int, bytes] = field(default_factory=dict)

    def fail(self, now_ms: int, kind: str, detail: str) -> None:
        if len(self.violations) < 20:
            self.violations.append(Violation(now_ms, kind, detail))

    def submit(self, key: RequestKey, payload: bytes) -> None:
        self.submitted[key] = payload

    def wiped(self, node: str) -> None:
        """A wiped node starts over; its chain must rebuild identically."""
        self.chains[node] = []
        self.executed_keys[node] = set()
        self.seen_height[node] = 0
        self.seen_view[node] = 0

    def on_block(self, node: str, block: ExecutedBlock, now_ms: int) -> None:
        if node not in self.honest:
            return
        chain = self.chains.setdefault(node, [])
        height = block.header.height
        if height != len(chain) + 1:
            self.fail(now_ms, "gap", f"{node} executed {height} after {len(chain)}")
        prev = chain[-1] if chain else self.genesis_hash
        if block.header.prev_hash != prev:
            self.fail(now_ms, "hash_link", f"{node} block {height} does not link to {height-1}")
        chain.append(block.block_hash)
        known = self.canonical.setdefault(height, block.block_hash)
        if known != block.block_hash:
            self.fail(now_ms, "agreement", f"{node} block {height} differs from another node's")
        keys = self.executed_keys.setdefault(node, set())
        for tx in block.fresh:
            if tx.key in keys:
                self.fail(now_ms, "duplicate_execution", f"{node} re-executed {tx.key}")
            keys.add(tx.key)
            if tx.origin in self.honest and self.submitted.get(tx.key) != tx.payload:
                self.fail(now_ms, "unsubmitted", f"{node} executed {tx.key} nobody submitted")

    def on_state(self, node: str, view: int, height: int, stable_seq: int, stable_hash: bytes,
                 now_ms: int) -> None:
        if node not in self.honest:
            return
        if view < self.seen_view.get(node, 0):
            self.fail(now_ms, "view_regressed", f"{node} went from view "
                                                f"{self.seen_view[node]} to {view}")
        self.seen_view[node] = max(view, self.seen_view.get(node, 0))
        if height < self.seen_height.get(node, 0):
            self.fail(now_ms, "height_regressed", f"{node} went back to height {height}")
        self.seen_height[node] = max(height, self.seen_height.get(node, 0))
        if stable_seq:
            known = self.stable.setdefault(stable_seq, stable_hash)
            if known != stable_hash:
                self.fail(now_ms, "checkpoint", f"{node} stable checkpoint {stable_seq} differs")
            block = self.canonical.get(stable_seq)
            if block is not None and block != stable_hash:
                self.fail(now_ms, "checkpoint", f"stable checkpoint {stable_seq} is not the block")
