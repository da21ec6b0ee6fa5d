"""Token buckets with a hand-driven clock: no sleeping."""

from __future__ import annotations

import pytest

from rpc.ratelimit import (
    RATE_LIMITED,
    RateLimiter,
    call_count,
    error_responses,
    rate_key,
    rate_limited_error,
    retry_after_header,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, *, token: float = 10, anonymous: float = 2,
            keys_max: int = 100) -> RateLimiter:
    return RateLimiter(rate_per_s_token=token, rate_per_s_anonymous=anonymous, clock=clock,
                       keys_max=keys_max)


def test_burst_is_twice_the_rate_then_refill_at_the_rate() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    key = rate_key(None, ("10.0.0.1", 5555))
    assert [rl.take(key) for _ in range(4)] == [None] * 4  # burst = 2 x 2/s
    wait = rl.take(key)
    assert wait == pytest.approx(0.5)  # one token at 2/s
    clock.now += 0.49
    assert rl.take(key) is not None
    clock.now += 0.01
    assert rl.take(key) is None
    clock.now += 3600  # idle: refills only up to the burst
    assert [rl.take(key) for _ in range(5)].count(None) == 4


def test_tokens_and_addresses_have_their_own_buckets_and_rates() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    anon_a, anon_b = rate_key(None, ("10.0.0.1", 1)), rate_key(None, ("10.0.0.2", 1))
    assert rate_key(None, ("10.0.0.1", 2)) == anon_a  # source port does not matter
    tok = rate_key("secret-token", ("10.0.0.1", 1))
    assert "secret-token" not in tok  # only a hash is kept
    assert rl.take(anon_a, 4) is None and rl.take(anon_a) is not None
    assert rl.take(anon_b, 4) is None
    assert rl.take(tok, 20) is None and rl.take(tok) == pytest.approx(0.1)


def test_a_batch_costs_its_calls_and_a_huge_one_goes_into_debt() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    key = rate_key(None, ("10.0.0.1", 1))
    assert call_count([{}, {}, {}]) == 3 and call_count({}) == 1 and call_count([]) == 1
    assert rl.take(key, 3) is None
    assert rl.take(key, 3) == pytest.approx(1.0)  # 1 left, needs 3: 2 more at 2/s
    clock.now += 10  # full again (4)
    assert rl.take(key, 50) is None  # bigger than the burst: allowed when full...
    wait = rl.take(key)  # ...leaving a debt of 46 tokens
    assert wait == pytest.approx(23.5)


def test_peek_spends_nothing() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    key = rate_key(None, ("10.0.0.1", 1))
    for _ in range(10):
        assert rl.peek(key) is None
    assert rl.take(key, 4) is None
    assert rl.peek(key) is not None


def test_the_table_is_bounded_least_recently_used_first() -> None:
    clock = FakeClock()
    rl = limiter(clock, keys_max=3)
    keys = [rate_key(None, (f"10.0.0.{i}", 1)) for i in range(5)]
    for key in keys[:3]:
        rl.take(key, 4)
    rl.take(keys[0])  # keys[0] is now the most recent
    rl.take(keys[3], 4)  # evicts keys[1]
    assert len(rl) == 3
    assert rl.take(keys[1]) is None  # forgotten: back with a full bucket (evicts keys[2])
    assert rl.take(keys[0]) is not None  # still remembered, still empty
    for i in range(1000):
        rl.take(rate_key(None, (f"192.168.{i // 250}.{i % 250}", 1)))
    assert len(rl) == 3


def test_error_shape_and_retry_after() -> None:
    error = rate_limited_error(0.0004)
    assert error.code == RATE_LIMITED == -32005 and error.message == "rate limited"
    assert error.data == {"retry_after_ms": 1}
    assert retry_after_header(0.2) == b"1" and retry_after_header(2.01) == b"3"
    batch = [{"jsonrpc": "2.0", "method": "a", "id": 1}, {"jsonrpc": "2.0", "method": "b"},
             {"jsonrpc": "2.0", "method": "c", "id": "x"}]
    answers = error_responses(batch, error)
    assert [a["id"] for a in answers] == [1, "x"]
    assert all(a["error"]["code"] == -32005 for a in answers)
    assert error_responses({"jsonrpc": "2.0", "method": "a"}, error) is None
    assert error_responses({"jsonrpc": "2.0", "method": "a", "id": 7}, error)["id"] == 7
