"""/ws end to end: a real server (rpc/http11.py) on loopback, trio-websocket as the
client, rate limits on a hand-driven clock, events from an in-memory chain.
Every wait is bounded with trio.fail_after; nothing sleeps to synchronise."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from pbftd.events import EventHub, register_event_methods
from rpc.jsonrpc import Dispatcher
from rpc.metrics import Registry
from rpc.ratelimit import RateLimiter
from rpc.schema import validate
from rpc.server import RpcLimits, make_app
from rpc.ws import WsLimits
from tests.rpc.fakes import TOKENS, FakeNode, chain_dispatcher, request
from tests.rpc.http_client import fetch, running
from tests.rpc.test_openrpc import OPENRPC_DOCUMENT

WAIT_S = 20
ADMIN = [(b"authorization", b"Bearer admin-token")]
READER = [(b"authorization", b"Bearer reader-token")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeChain:
    """A BlockSource: block h has `per_block` attestations, padded to `pad` chars."""

    height: int = 0
    per_block: int = 2
    pad: int = 0
    reads: list[int] = field(default_factory=list)

    def tip_height(self) -> int:
        return self.height

    def events_at(self, height: int) -> list[tuple[str, dict[str, Any]]] | None:
        if not 1 <= height <= self.height:
            return None
        self.reads.append(height)
        events: list[tuple[str, dict[str, Any]]] = [("blocks", {
            "height": height, "block_hash": f"{height:064x}", "time_ms": 1_700_000_000_000 + height,
            "tx_count": self.per_block})]
        for i in range(self.per_block):
            events.append(("attestations", {"tx_id": f"{height:032x}{i:032x}", "height": height,
                                            "court": "C1", "client": "clerk", "kind": "judgment",
                                            "case_no": "(2024)吉0102民初1号", "index": i,
                                            "sha256": "ab" * 32, "time_ms": height,
                                            "padding": "x" * self.pad}))
        return events


@dataclass
class Server:
    port: int
    app: Any
    hub: EventHub
    chain: FakeChain
    clock: FakeClock
    dispatcher: Dispatcher

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws{query}"

    def append(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.chain.height += 1
            self.hub.publish(self.chain.height)


def serve(test: Callable[[Server], Awaitable[None]], *, ws: WsLimits | None = None,
          rate_anonymous: float = 1000, rate_token: float = 1000, chain: FakeChain | None = None,
          dispatcher: Dispatcher | None = None) -> None:
    clock = FakeClock()
    node = FakeNode()
    dispatcher = dispatcher or chain_dispatcher(node)
    chain = chain or FakeChain()
    hub = EventHub(chain)
    register_event_methods(dispatcher, hub)
    limiter = RateLimiter(rate_per_s_token=rate_token, rate_per_s_anonymous=rate_anonymous,
                          clock=clock)
    app = make_app(dispatcher, node_api=node, metrics=Registry(), auth=TOKENS.get,
                   limits=RpcLimits(body_bytes_max=4096), rate_limiter=limiter, ws=ws)

    async def main() -> None:
        async with running(app) as port:
            with trio.fail_after(WAIT_S):
                await test(Server(port, app, hub, chain, clock, dispatcher))
    trio.run(main)


async def rpc(conn: Any, method: str, params: Any = None, id_: Any = 1) -> Any:
    await conn.send_message(request(method, params, id_=id_))
    return json.loads(await conn.get_message())


# -- plain JSON-RPC over /ws ------------------------------------------------------


def test_round_trip_of_a_call_a_batch_and_a_notification() -> None:
    async def check(s: Server) -> None:
        async with open_websocket_url(s.url()) as conn:
            got = await rpc(conn, "node.status", id_="a")
            assert got["id"] == "a" and got["result"]["node_id"] == "n0"
            # a notification gets nothing back: the next frame answers the next call
            await conn.send_message(json.dumps({"jsonrpc": "2.0", "method": "node.status"}))
            batch = [json.loads(request("node.status", id_=i)) for i in (1, 2)]
            batch.append({"jsonrpc": "2.0", "method": "node.status"})
            batch.append({"jsonrpc": "2.0", "method": "no.such", "id": 3})
            await conn.send_message(json.dumps(batch))
            answers = json.loads(await conn.get_message())
            assert sorted(a["id"] for a in answers) == [1, 2, 3]
            assert next(a for a in answers if a["id"] == 3)["error"]["code"] == -32601
            await conn.send_message("{not json")
            assert json.loads(await conn.get_message())["error"]["code"] == -32700
    serve(check)


def test_auth_is_the_upgrade_requests_bearer_token() -> None:
    async def check(s: Server) -> None:
        async with open_websocket_url(s.url()) as anon:
            assert "result" in await rpc(anon, "node.status")
            for method, params in (("chain.getBlock", {"height": 1}),
                                   ("events.subscribe", {"topics": ["blocks"]})):
                error = (await rpc(anon, method, params))["error"]
                assert error["code"] == -32001 and error["message"] == "unauthorized"
        async with open_websocket_url(s.url(), extra_headers=READER) as reader:
            assert (await rpc(reader, "chain.getBlock", {"height": 1}))["result"]["tx_ids"]
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(s.url(), extra_headers=[
                    (b"authorization", b"Bearer wrong")]):
                pass
        assert rejected.value.status_code == 401
        assert json.loads(rejected.value.body)["error"]["code"] == -32001
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(s.url("?token=admin-token")):
                pass
        assert rejected.value.status_code == 400
        assert b"Authorization" in rejected.value.body
    serve(check)


def test_oversized_and_binary_frames_close_the_connection() -> None:
    async def check(s: Server) -> None:
        async with open_websocket_url(s.url()) as conn:
            await conn.send_message(" " * 4097)
            with pytest.raises(ConnectionClosed) as closed:
                await conn.get_message()
            assert closed.value.reason.code == 1009
        async with open_websocket_url(s.url()) as conn:
            await conn.send_message(b"\x00\x01")
            with pytest.raises(ConnectionClosed) as closed:
                await conn.get_message()
            assert closed.value.reason.code == 1003
    serve(check)


def test_calls_in_flight_per_connection_are_capped() -> None:
    dispatcher = chain_dispatcher()
    release = trio.Event()
    entered: list[int] = []

    @dispatcher.method("test.hold", public=True, summary="waits for the test",
                       params_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
                       result_schema={"type": "integer"})
    async def hold(params: dict[str, Any], _ctx: Any) -> int:
        entered.append(params["n"])
        await release.wait()
        return int(params["n"])

    async def check(s: Server) -> None:
        async with open_websocket_url(s.url()) as conn:
            for n in range(3):
                await conn.send_message(request("test.hold", {"n": n}, id_=n))
            await trio.testing.wait_all_tasks_blocked()
            assert entered == [0, 1]  # the third frame waits, unread
            release.set()
            ids = sorted([json.loads(await conn.get_message())["id"] for _ in range(3)])
            assert ids == [0, 1, 2] and entered == [0, 1, 2]
    serve(check, dispatcher=dispatcher, ws=WsLimits(calls_in_flight_max=2))


# -- rate limits --------------------------------------------------------------------


def test_http_over_the_limit_is_429_with_retry_after_and_a_jsonrpc_error() -> None:
    headers = [("content-type", "application/json")]

    async def check(s: Server) -> None:
        body = request("node.status").encode()
        for _ in range(4):  # burst: 2 x 2/s
            assert (await fetch(s.port, "POST", "/", body=body, headers=headers)).status == 200
        refused = await fetch(s.port, "POST", "/", body=body, headers=headers)
        assert refused.status == 429 and refused.headers["retry-after"] == "1"
        error = json.loads(refused.body)["error"]
        assert error == {"code": -32005, "message": "rate limited",
                         "data": {"retry_after_ms": 500}}
        # a token has its own, larger bucket
        authed = [*headers, ("authorization", "Bearer admin-token")]
        assert (await fetch(s.port, "POST", "/", body=body, headers=authed)).status == 200
        s.clock.now += 1.0  # two tokens back
        batch = json.dumps([json.loads(request("node.status", id_=i)) for i in range(3)])
        refused = await fetch(s.port, "POST", "/", body=batch.encode(), headers=headers)
        assert refused.status == 429  # a batch of 3 costs 3
        assert [a["id"] for a in json.loads(refused.body)] == [0, 1, 2]
        assert json.loads(refused.body)[0]["error"]["data"]["retry_after_ms"] == 500
        s.clock.now += 0.5
        ok = await fetch(s.port, "POST", "/", body=batch.encode(), headers=headers)
        assert ok.status == 200 and len(json.loads(ok.body)) == 3
    serve(check, rate_anonymous=2)


def test_a_call_spends_its_methods_rate_cost_and_a_refused_one_spends_one() -> None:
    reader = [("content-type", "application/json"), ("authorization", "Bearer reader-token")]
    anonymous = [("content-type", "application/json")]

    async def post(s: Server, body: str, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        answer = await fetch(s.port, "POST", "/", body=body.encode(), headers=headers)
        return answer.status, json.loads(answer.body)

    async def check(s: Server) -> None:
        block = request("chain.getBlock", {"height": 1})
        assert (await post(s, block, reader))[0] == 200  # 14 of the burst of 20
        status, refused = await post(s, block, reader)
        assert status == 429 and refused["error"]["data"]["retry_after_ms"] == 800  # 8 at 10/s
        get_tx = request("chain.getTx", {"tx_id": "ab" * 32})
        for _ in range(2):  # 2 tokens each: 2 of the 6 left
            assert (await post(s, get_tx, reader))[0] == 200
        status, refused = await post(s, block, reader)
        assert status == 429 and refused["error"]["data"]["retry_after_ms"] == 1200
        # A caller without the scope is told so (not 429), and that costs one token:
        # the anonymous burst of 4 then still holds three node.status calls.
        status, forbidden = await post(s, block, anonymous)
        assert status == 200 and forbidden["error"]["code"] == -32001
        for _ in range(3):
            assert (await post(s, request("node.status"), anonymous))[0] == 200
        assert (await post(s, request("node.status"), anonymous))[0] == 429
    serve(check, rate_anonymous=2, rate_token=10)


def test_ws_over_the_limit_gets_the_error_for_that_call_and_stays_open() -> None:
    async def check(s: Server) -> None:
        async with open_websocket_url(s.url()) as conn:  # the upgrade costs one call
            for i in range(3):
                assert "result" in await rpc(conn, "node.status", id_=i)
            got = await rpc(conn, "node.status", id_=99)
            assert got["id"] == 99 and got["error"]["code"] == -32005
            assert got["error"]["data"]["retry_after_ms"] == 500
            await conn.send_message(json.dumps([json.loads(request("node.status", id_=i))
                                                for i in (7, 8)]))
            answers = json.loads(await conn.get_message())
            assert [(a["id"], a["error"]["code"]) for a in answers] == [(7, -32005),
                                                                         (8, -32005)]
            with pytest.raises(ConnectionRejected) as rejected:  # no token left to connect
                async with open_websocket_url(s.url()):
                    pass
            assert rejected.value.status_code == 429
            assert json.loads(rejected.value.body)["error"]["code"] == -32005
            s.clock.now += 0.5
            assert "result" in await rpc(conn, "node.status", id_=100)
    serve(check, rate_anonymous=2)


# -- subscriptions -------------------------------------------------------------------


def test_subscribe_over_http_says_use_ws_and_discover_describes_events() -> None:
    async def check(s: Server) -> None:
        response = await fetch(s.port, "POST", "/", body=request(
            "events.subscribe", {"topics": ["blocks"]}).encode(), headers=[
            ("content-type", "application/json"), ("authorization", "Bearer admin-token")])
        error = json.loads(response.body)["error"]
        assert error["code"] == -32006 and error["message"] == "use /ws"
        async with open_websocket_url(s.url()) as conn:
            doc = (await rpc(conn, "rpc.discover"))["result"]
        validate(doc, OPENRPC_DOCUMENT)
        methods = {m["name"]: m for m in doc["methods"]}
        sub = methods["events.subscribe"]
        assert {p["name"] for p in sub["params"]} == {"topics", "from_height"}
        assert sub["result"]["schema"]["required"] == ["subscription", "next_height"]
        assert "events.unsubscribe" in methods
    serve(check)


def test_bad_subscribe_params_are_refused() -> None:
    async def check(s: Server) -> None:
        async with open_websocket_url(s.url(), extra_headers=ADMIN) as conn:
            for params in ({"topics": []}, {"topics": ["blocks", "gossip"]},
                           {"topics": ["blocks"], "from_height": 0},
                           {"topics": ["blocks"], "from_height": 1.5}):
                assert (await rpc(conn, "events.subscribe", params))["error"]["code"] == -32602
            got = await rpc(conn, "events.unsubscribe", {"subscription": "nope"})
            assert got["error"]["code"] == -32004
    serve(check)


async def _subscribe_all(conn: Any, *, from_height: int) -> dict[str, Any]:
    """Subscribe to blocks and attestations from ``from_height``; the result."""
    got = await rpc(conn, "events.subscribe",
                    {"topics": ["blocks", "attestations"], "from_height": from_height})
    return got["result"]


async def _read_events(conn: Any, seen: list[tuple[int, str, dict[str, Any]]], sub: str,
                       until: Callable[[], bool]) -> None:
    while not until():
        message = json.loads(await conn.get_message())
        assert message["method"] == "events.notify" and "id" not in message
        params = message["params"]
        assert params["subscription"] == sub
        seen.append((params["height"], params["topic"], params["event"]))


def _blocks(seen: list[tuple[int, str, dict[str, Any]]]) -> list[int]:
    return [h for h, topic, _ in seen if topic == "blocks"]


def test_replay_then_live_then_resume_after_reconnect_without_loss() -> None:
    chain = FakeChain(height=250, per_block=2)  # replay spans three pages of 100

    async def check(s: Server) -> None:
        first: list[tuple[int, str, dict[str, Any]]] = []
        async with open_websocket_url(s.url(), extra_headers=READER) as conn:
            result = await _subscribe_all(conn, from_height=1)
            sub = result["subscription"]
            assert result["next_height"] == 1
            await _read_events(conn, first, sub, lambda: bool(first) and first[-1][0] == 250
                               and first[-1][1] == "attestations" and first[-1][2]["index"] == 1)
            s.append(30)  # live: 251..280, published after the replay
            await _read_events(conn, first, sub, lambda: 265 in _blocks(first))
        last_seen = first[-1][0]
        s.append(20)  # 281..300 land while nobody listens
        second: list[tuple[int, str, dict[str, Any]]] = []
        async with open_websocket_url(s.url(), extra_headers=READER) as conn:
            sub = (await _subscribe_all(conn, from_height=last_seen))["subscription"]
            s.append(20)  # 301..320
            await _read_events(conn, second, sub, lambda: bool(second) and second[-1][0] == 320
                               and second[-1][1] == "attestations" and second[-1][2]["index"] == 1)
            got = await rpc(conn, "events.unsubscribe", {"subscription": sub}, id_=2)
            assert got["result"] == {"unsubscribed": True, "next_height": 321}
        for seen in (first, second):
            blocks = _blocks(seen)
            assert blocks == sorted(set(blocks))  # strictly increasing per connection
            assert blocks == list(range(blocks[0], blocks[-1] + 1))  # and no gap
            heights = [h for h, _, _ in seen]
            assert heights == sorted(heights)  # every topic in block order
        union = {(h, t, e.get("index")) for h, t, e in first + second}
        expected = {(h, "blocks", None) for h in range(1, 321)} | \
                   {(h, "attestations", i) for h in range(1, 321) for i in range(2)}
        assert union == expected
        duplicates = len(first) + len(second) - len(union)
        assert duplicates <= 3  # at least once: only the resumed height comes twice
    serve(check, chain=chain)


def test_a_replay_spends_the_callers_tokens_and_waits_for_more_without_loss() -> None:
    """Reading stored blocks and sending their events is work for the node, so
    a subscription spends its caller's rate tokens (1 per SENT_PER_TOKEN
    events sent, 1 per READ_PER_TOKEN read from the store); when the bucket
    is empty it waits for the refill instead of being dropped."""
    chain = FakeChain(height=60, per_block=9)  # 10 events a block: 1.5 tokens each

    async def check(s: Server) -> None:
        seen: list[tuple[int, str, dict[str, Any]]] = []
        async with open_websocket_url(s.url(), extra_headers=READER) as conn:
            sub_id = (await _subscribe_all(conn, from_height=1))["subscription"]
            session = _only_session(s)
            sub = session.state["subscriptions"][sub_id]

            async def until(condition: Callable[[], bool]) -> None:
                while not condition():
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read_events, conn, seen, sub_id,
                                   lambda: len(seen) == 60 * 10)
                # a bucket of 2 x 10 tokens, 1 spent on the call: about 13 blocks
                await until(lambda: session.paced > 0)
                stopped_at = sub.next_height
                assert 10 <= stopped_at - 1 <= 14
                await until(lambda: session.paced >= 3)  # it keeps asking, gets nothing
                assert sub.next_height == stopped_at
                while sub.next_height <= 60:  # time passes: the bucket refills
                    s.clock.now += 1
                    await trio.sleep(0.01)
        assert [(h, t) for h, t, _ in seen] == [
            (h, t) for h in range(1, 61) for t in ["blocks"] + ["attestations"] * 9]
    serve(check, chain=chain, rate_token=10)


def test_topics_filter_and_live_only_without_from_height() -> None:
    chain = FakeChain(height=10, per_block=3)

    async def check(s: Server) -> None:
        async with open_websocket_url(s.url(), extra_headers=READER) as conn:
            got = await rpc(conn, "events.subscribe", {"topics": ["blocks"]})
            assert got["result"]["next_height"] == 11
            sub = got["result"]["subscription"]
            s.append(3)
            seen: list[tuple[int, str, dict[str, Any]]] = []
            await _read_events(conn, seen, sub, lambda: len(seen) == 3)
            assert [(h, t) for h, t, _ in seen] == [(11, "blocks"), (12, "blocks"),
                                                     (13, "blocks")]
            assert set(seen[0][2]) == {"height", "block_hash", "time_ms", "tx_count"}
    serve(check, chain=chain)


def _only_session(s: Server) -> Any:
    sessions = list(s.app.ws.sessions)
    assert len(sessions) == 1
    return sessions[0]


def test_a_subscriber_that_does_not_read_is_dropped_and_told_where_to_resume() -> None:
    # 100 KB of events per block: far more than socket buffers hold
    chain = FakeChain(height=400, per_block=50, pad=2000)
    ws = WsLimits(send_queue_frames_max=4, send_stall_ms=300, abort_after_ms=WAIT_S * 1000)

    async def check(s: Server) -> None:
        async with open_websocket_url(s.url(), extra_headers=READER,
                                      max_message_size=1 << 20) as conn:
            got = await rpc(conn, "events.subscribe", {"topics": ["attestations"],
                                                       "from_height": 1})
            sub = got["result"]["subscription"]
            session = _only_session(s)
            await session.closing_started.wait()  # we read nothing meanwhile
            # bounded: the queue held at most its limit and the store was read
            # only a page ahead of what the socket took
            assert session.queued_frames() <= 4
            assert max(chain.reads) < 400
            seen: list[tuple[int, str, dict[str, Any]]] = []
            with pytest.raises(ConnectionClosed) as closed:
                await _read_events(conn, seen, sub, lambda: False)
            assert closed.value.reason.code == 1008
            reason = closed.value.reason.reason
            assert "too slow" in reason
            resume = int(reason.rpartition("from_height=")[2])
            assert seen and seen[-1][0] <= resume  # nothing past it was delivered
            await session.closed.wait()
            assert s.hub.subscriptions == 0 and not s.app.ws.sessions
    serve(check, chain=chain, ws=ws)


def test_a_client_that_never_reads_is_disconnected_and_forgotten() -> None:
    chain = FakeChain(height=400, per_block=50, pad=2000)
    ws = WsLimits(send_queue_frames_max=4, send_stall_ms=300, abort_after_ms=300)

    async def check(s: Server) -> None:
        async with open_websocket_url(s.url(), extra_headers=READER,
                                      max_message_size=1 << 20) as conn:
            await rpc(conn, "events.subscribe", {"topics": ["attestations"], "from_height": 1})
            session = _only_session(s)
            await session.closed.wait()  # closed and the TCP connection aborted
            assert session.close_code == 1008
            assert "resubscribe from_height=" in (session.close_reason or "")
            assert s.app.ws.stats["connections_aborted"] == 1
            assert s.hub.subscriptions == 0 and not s.app.ws.sessions
            with pytest.raises(ConnectionClosed):
                while True:
                    await conn.get_message()
    serve(check, chain=chain, ws=ws)
