"""Token buckets with a hand-driven clock: no sleeping."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pbftd.evidence_batch import BATCH_COST, ITEMS_MAX
from pbftd.proof_methods import HEADERS_COST
from pbftd.workflow_methods import LIST_COST, register_workflow_methods
from pbftd.workflows.reads import PAGE_DEFAULT
from rpc.jsonrpc import ANONYMOUS, Dispatcher, RateCost
from rpc.ratelimit import (
    RATE_LIMITED,
    RateLimiter,
    error_responses,
    rate_key,
    rate_limited_error,
    retry_after_header,
)
from tests.rpc.fakes import ADMIN, READER


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


def test_a_costly_call_spends_its_tokens_and_a_huge_one_goes_into_debt() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    key = rate_key(None, ("10.0.0.1", 1))
    assert rl.take(key, 3) is None
    assert rl.take(key, 3) == pytest.approx(1.0)  # 1 left, needs 3: 2 more at 2/s
    clock.now += 10  # full again (4)
    assert rl.take(key, 50) is None  # bigger than the burst: allowed when full...
    wait = rl.take(key)  # ...leaving a debt of 46 tokens
    assert wait == pytest.approx(23.5)


def test_pacing_waits_like_take_but_is_not_a_refusal() -> None:
    clock = FakeClock()
    rl = limiter(clock, token=10)
    assert rl.pace("token:a", 15) is None          # within the burst of 20
    assert rl.pace("token:a", 10) == pytest.approx(0.5)   # 5 left: half a second for 10
    assert (rl.paced, rl.refused) == (1, 0)
    clock.now += 0.5
    assert rl.pace("token:a", 10) is None
    assert rl.take("token:a", 1) is not None       # a call, though, is refused
    assert (rl.paced, rl.refused) == (1, 1)


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


# -- what a call costs (rpc/jsonrpc.py RateCost, Dispatcher.cost) ---------------


def call(method: object, params: object = None) -> dict[str, object]:
    body: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        body["params"] = params
    return body


def priced_dispatcher() -> Dispatcher:
    d = Dispatcher()
    schema = {"type": "object"}
    d.method("t.cheap", public=True, result_schema=schema, summary="s")(lambda p, c: {})
    d.method("t.heavy", public=True, result_schema=schema, summary="s",
             cost=RateCost(base=7))(lambda p, c: {})
    d.method("t.rows", scope="evidence:read", result_schema=schema, summary="s",
             cost=RateCost(base=2, per=3, unit="rows",
                           measure=lambda p: len(p["rows"]) if type(p.get("rows")) is list
                           else 0))(lambda p, c: {})
    return d


def test_a_call_costs_its_methods_tokens_and_a_batch_their_sum() -> None:
    d = priced_dispatcher()
    assert d.cost(call("t.cheap"), ANONYMOUS) == 1
    assert d.cost(call("t.heavy"), ANONYMOUS) == 7
    assert d.cost(call("t.rows", {"rows": list(range(8))}), READER) == 2 + 8 // 3
    assert d.cost(call("t.rows", {"rows": []}), READER) == 2
    assert d.cost([call("t.cheap"), call("t.heavy"), call("t.rows", {"rows": [1] * 9})],
                  ADMIN) == 1 + 7 + 5


@pytest.mark.parametrize("request_", [
    call("no.such"), call(7), call(["t.heavy"]), "t.heavy", None, [], 3.5,
])
def test_what_is_not_a_call_of_a_known_method_costs_one(request_: object) -> None:
    assert priced_dispatcher().cost(request_, ADMIN) == 1


def test_a_call_the_caller_may_not_make_costs_one_so_its_refusal_is_not_a_429() -> None:
    d = priced_dispatcher()
    assert d.cost(call("t.rows", {"rows": [1] * 300}), ANONYMOUS) == 1
    assert d.cost(call("t.rows", {"rows": [1] * 300}), READER) == 102


@pytest.mark.parametrize("params", [[1, 2], "rows", {"rows": "abc"}, {"rows": None}, {}])
def test_params_a_measure_cannot_count_cost_the_base(params: object) -> None:
    assert priced_dispatcher().cost(call("t.rows", params), READER) == 2


def test_a_rate_cost_is_at_least_one_token_and_names_what_it_counts() -> None:
    with pytest.raises(ValueError):
        RateCost(base=0)
    with pytest.raises(ValueError):
        RateCost(per=0, unit="rows", measure=len)
    with pytest.raises(ValueError):
        RateCost(measure=len)  # what does it count?
    with pytest.raises(ValueError):
        RateCost(unit="rows")  # counts nothing
    assert RateCost(base=3).describe() == {"tokens": 3}
    assert RateCost(base=1, per=5, unit="items", measure=len).describe() == {
        "tokens": 1, "plus_one_per": 5, "of": "items"}


def test_discover_publishes_each_methods_cost() -> None:
    methods = {m["name"]: m for m in priced_dispatcher().discover()["methods"]}
    assert methods["t.cheap"]["x-rate-cost"] == {"tokens": 1}
    assert methods["t.heavy"]["x-rate-cost"] == {"tokens": 7}
    assert methods["t.rows"]["x-rate-cost"] == {"tokens": 2, "plus_one_per": 3, "of": "rows"}
    assert methods["rpc.discover"]["x-rate-cost"] == {"tokens": 3}


@pytest.mark.parametrize(("params", "cost"), [
    ({"from_height": 1, "to_height": 1000}, 1 + 1000 // 3),
    ({"from_height": 5, "to_height": 7}, 2),
    ({"from_height": 1, "to_height": 10**12}, 1 + 1000 // 3),  # refused later; priced at most
    ({"from_height": 9, "to_height": 1}, 1),
    ({"from_height": True, "to_height": 1000}, 1),
    ({"from_height": "1", "to_height": 1000}, 1),
    ({"from_height": 1.0, "to_height": 1000.0}, 1),
    ({"to_height": 1000}, 1),
])
def test_the_cost_of_headers_counts_the_range_asked_for(params: dict[str, object],
                                                         cost: int) -> None:
    assert HEADERS_COST.of(params) == cost


@pytest.mark.parametrize(("params", "cost"), [
    ({"items": [{}] * 1000}, 1 + 1000 // 5),
    ({"items": [{}] * ITEMS_MAX}, 1 + ITEMS_MAX // 5),
    ({"items": [{}] * 4}, 1),
    ({"items": {"a": 1}}, 1),
    ({"items": "x" * 100}, 1),
    ({}, 1),
])
def test_the_cost_of_an_attest_batch_counts_its_items(params: dict[str, object],
                                                       cost: int) -> None:
    assert BATCH_COST.of(params) == cost


@pytest.mark.parametrize(("params", "cost"), [
    ({}, 1 + PAGE_DEFAULT // 4),
    ({"limit": 500}, 1 + 500 // 4),
    ({"limit": 3}, 1),
    ({"limit": 10**9}, 1 + 500 // 4),  # refused later; priced at most
    ({"limit": -5}, 1),
    ({"limit": True}, 1),
    ({"limit": "500"}, 1),
    ({"limit": 500.0}, 1),
])
def test_the_cost_of_a_listing_counts_the_page_asked_for(params: dict[str, object],
                                                         cost: int) -> None:
    assert LIST_COST.of(params) == cost


def test_the_workflow_listings_are_priced_by_their_page() -> None:
    dispatcher = Dispatcher()
    node = SimpleNamespace(workflows=None, genesis=None, court=SimpleNamespace(id="spc"))
    register_workflow_methods(dispatcher, node)
    methods = {m["name"]: m for m in dispatcher.discover()["methods"]}
    for name in ("case.list", "enforcement.expiring", "enforcement.trail", "agency.orders"):
        assert methods[name]["x-rate-cost"] == {"tokens": 1, "plus_one_per": 4,
                                                "of": "items per page (limit)"}, name
    assert methods["case.get"]["x-rate-cost"] == {"tokens": 1}
