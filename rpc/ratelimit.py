"""Token-bucket rate limits for the RPC edge, shared by HTTP and WebSocket.

One bucket per caller: per bearer token (keyed by the token's SHA-256, so the
table never holds a credential) for authenticated callers, per client address
(host only: a caller's many source ports share one bucket) for anonymous
ones. A bucket refills at `rate` tokens per second up to `burst` = 2 x rate;
a JSON-RPC call costs its method's tokens (rpc/jsonrpc.py `RateCost`: one for
a simple call, more for a call that reads or writes many records, so the
limit bounds the node's work, not just the number of calls), and a batch
costs the sum of its calls.

A request costing more than the burst (a long batch, a costly call) is
allowed when the bucket is full and leaves it in debt, so it cannot starve
forever and the long-run rate still holds.

The table is bounded: beyond `keys_max` callers the least recently seen is
forgotten. A forgotten caller comes back with a full bucket, which is what an
idle caller would have anyway; a flood from more distinct addresses than
`keys_max` can reset buckets early, so keys_max should exceed the number of
callers a node expects at once.

The clock is injected (monotonic seconds) so tests drive time by hand.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import RATE_LIMITED, RpcError
from .jsonrpc import error_response

__all__ = [
    "KEYS_MAX",
    "RATE_LIMITED",
    "RateLimiter",
    "error_responses",
    "rate_key",
    "rate_limited_error",
    "retry_after_header",
    "retry_after_ms",
]

KEYS_MAX = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Buckets per key; `take` spends, `peek` only looks."""

    def __init__(self, *, rate_per_s_token: float, rate_per_s_anonymous: float,
                 clock: Callable[[], float] = time.monotonic, keys_max: int = KEYS_MAX) -> None:
        if rate_per_s_token <= 0 or rate_per_s_anonymous <= 0:
            raise ValueError("rates must be positive")
        if keys_max < 1:
            raise ValueError("keys_max must be at least 1")
        self.rates = {"token": float(rate_per_s_token), "addr": float(rate_per_s_anonymous)}
        self.clock = clock
        self.keys_max = keys_max
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.refused = 0
        self.paced = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _rate(self, key: str) -> float:
        return self.rates[key.partition(":")[0]]

    def _bucket(self, key: str) -> tuple[_Bucket, float]:
        rate = self._rate(key)
        burst = 2 * rate
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.keys_max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.stamp)  # a clock never runs backwards here
            bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
            bucket.stamp = now
        return bucket, rate

    def take(self, key: str, cost: int = 1) -> float | None:
        """Spend `cost` tokens: None if allowed, else seconds until it would be."""
        wait = self._spend(key, cost)
        if wait is not None:
            self.refused += 1
        return wait

    def pace(self, key: str, cost: int) -> float | None:
        """`take` for work that waits for its tokens instead of being refused
        (a subscription's deliveries): a wait counts in `paced`, not `refused`."""
        wait = self._spend(key, cost)
        if wait is not None:
            self.paced += 1
        return wait

    def _spend(self, key: str, cost: int) -> float | None:
        bucket, rate = self._bucket(key)
        need = min(float(cost), 2 * rate)
        if bucket.tokens >= need:
            bucket.tokens -= cost
            return None
        return (need - bucket.tokens) / rate

    def peek(self, key: str, cost: int = 1) -> float | None:
        """Like `take` but spends nothing: a cheap check before reading a body."""
        bucket, rate = self._bucket(key)
        need = min(float(cost), 2 * rate)
        if bucket.tokens >= need:
            return None
        self.refused += 1
        return (need - bucket.tokens) / rate


def rate_key(token: str | None, client: Any) -> str:
    """The bucket of a caller: its token's hash, or its address without port."""
    if token is not None:
        return "token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()
    host = client[0] if client else "unknown"
    return f"addr:{host}"


def retry_after_ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def retry_after_header(seconds: float) -> bytes:
    """HTTP Retry-After is whole seconds; round up so a retry then succeeds."""
    return str(max(1, math.ceil(seconds))).encode()


def rate_limited_error(seconds: float) -> RpcError:
    return RpcError(RATE_LIMITED, "rate limited", {"retry_after_ms": retry_after_ms(seconds)})


def error_responses(request: Any, error: RpcError) -> list[Any] | dict[str, Any] | None:
    """`error` as the answer to every call of a parsed body: one response per
    call that has an id, none for notifications (None when nothing is left)."""
    def one(item: Any) -> dict[str, Any] | None:
        if isinstance(item, dict) and "id" not in item:
            return None
        rid = item.get("id") if isinstance(item, dict) else None
        return error_response(rid if rid is None or type(rid) in (str, int, float) else None,
                              error)
    if not isinstance(request, list):
        return one(request)
    answers = [a for a in (one(item) for item in request) if a is not None]
    return answers or None
