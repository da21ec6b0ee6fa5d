"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform draw up to the current cap) spreads the redials of a
whole consortium after a shared outage, so restarted courts are not hit by
every peer at the same instant. The floor of `min_ms` keeps a refused dial
from spinning. The random source is injected so simulations replay exactly;
it is never used for anything security-relevant.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]

_DOUBLINGS_MAX = 32


class Backoff:
    """Delay before the next dial; `reset()` after a link authenticated."""

    def __init__(self, min_ms: int, max_ms: int, rng: random.Random) -> None:
        assert 0 < min_ms <= max_ms
        self._min_ms = min_ms
        self._max_ms = max_ms
        self._rng = rng
        self._attempt = 0

    def next_delay_ms(self) -> float:
        cap_ms = min(self._max_ms, self._min_ms * 2**self._attempt)
        self._attempt = min(self._attempt + 1, _DOUBLINGS_MAX)
        return self._rng.uniform(self._min_ms, cap_ms)

    def reset(self) -> None:
        self._attempt = 0
