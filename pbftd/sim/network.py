"""A simulated network: per-message delay, loss, duplication, replay and
(one-way) cuts, all drawn from one seeded random source."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class NetworkRates:
    delay_min_ms: int = 1
    delay_max_ms: int = 15
    long_delay_p: float = 0.0
    long_delay_max_ms: int = 1_500
    drop_p: float = 0.0
    dup_p: float = 0.0
    replay_p: float = 0.0


@dataclass
class Network:
    rng: random.Random
    rates: NetworkRates = field(default_factory=NetworkRates)
    cut: set[tuple[str, str]] = field(default_factory=set)   # (src, dst) blocked
    history: list[tuple[str, bytes]] = field(default_factory=list)
    history_max: int = 400

    def plan(self, src: str, dst: str, frame: bytes) -> list[int]:
        """Delays (ms) at which copies of this frame arrive; [] if lost."""
        if (src, dst) in self.cut:
            return []
        r = self.rates
        if self.rng.random() < r.drop_p:
            return []
        copies = 2 if self.rng.random() < r.dup_p else 1
        out = []
        for _ in range(copies):
            if self.rng.random() < r.long_delay_p:
                out.append(self.rng.randint(r.delay_max_ms, r.long_delay_max_ms))
            else:
                out.append(self.rng.randint(r.delay_min_ms, r.delay_max_ms))
        if len(self.history) < self.history_max:
            self.history.append((src, frame))
        elif self.rng.random() < 0.1:
            self.history[self.rng.randrange(self.history_max)] = (src, frame)
        return out

    def replay_candidate(self) -> tuple[str, bytes] | None:
        if not self.history or self.rng.random() >= self.rates.replay_p:
            return None
        return self.history[self.rng.randrange(len(self.history))]

    def heal(self) -> None:
        self.cut.clear()
        self.rates = NetworkRates()

    def partition(self, groups: list[list[str]]) -> None:
        self.cut.clear()
        for a in groups:
            for b in groups:
                if a is not b:
                    self.cut.update((x, y) for x in a for y in b)
