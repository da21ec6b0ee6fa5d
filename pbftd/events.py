"""Chain events for subscribers: events.subscribe / events.unsubscribe over /ws.

Topics:
- "blocks": one event per block, the header summary
  {height, block_hash, time_ms, tx_count};
- "attestations": one event per attestation executed in the block, the
  record evidence.verify returns plus its sha256 (hex); documents the
  workflows generated (申请执行书, 生效证明) included;
- the judicial workflow topics (workflows.EVENT_TOPICS: case.due,
  enforcement.termExpiring, enforcement.resumed, ...): the engine's events
  as stored with the block (docs/WORKFLOWS.md lists their payloads).

Each topic needs its read scope: blocks and attestations evidence:read,
case.* case:read, enforcement.* and agency.* enforcement:read.

Delivery is at least once and in block order. Each subscription is one task
with one cursor, `next_height`: it reads blocks from the store, at most
PAGE_BLOCKS at a time, and sends their events; when it reaches the tip it
waits for the hub's signal. Replay (from_height) and live delivery are the
same loop, so there is no gap and no reordering between them, and a
subscriber that falls behind simply reads further back from the store.

The live signal: the runtime calls `EventHub.publish(height)` after each
block is durably stored. publish only records the height and wakes waiters
(an Event swap): the consensus task never waits on a subscriber.

A subscriber whose connection does not take frames within the socket's
stall limit is disconnected (close 1008) with a reason naming the height to
resubscribe from (the lowest next height of its subscriptions).

Notification shape (a JSON-RPC notification, no id):
  {"jsonrpc": "2.0", "method": "events.notify",
   "params": {"subscription": ID, "height": H, "topic": T, "event": {...}}}
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from rpc.errors import RpcError
from rpc.jsonrpc import Dispatcher, RpcContext

from . import evidence
from .chainstore import stored_txs
from .core.chain import BlockHeader
from .workflows import EVENT_TOPICS

__all__ = ["PAGE_BLOCKS", "READ_PER_TOKEN", "SENT_PER_TOKEN", "TOPICS", "BlockSource",
           "ChainEventSource", "EventHub", "register_event_methods"]

TOPICS = ("blocks", "attestations", *EVENT_TOPICS)
PAGE_BLOCKS = 100
# What a subscription's deliveries spend from its caller's rate bucket
# (rpc/jsonrpc.py RateCost: tokens of about 0.5 ms of the node's CPU).  In
# process, reading a stored block's events costs about 23 us an event (a
# 1,000-attestation block: 22-27 ms) and sending one about 11 us to encode
# plus the websocket frame.  Without a price a token could replay the whole
# chain from height 1, on up to 16 subscriptions a connection, for nothing.
# A subscription over its rate is paced (it waits for tokens), not dropped.
SENT_PER_TOKEN = 10
READ_PER_TOKEN = 20
CACHE_BLOCKS = 256
CACHE_EVENTS_MAX = 20_000  # also bounded by events: a block can hold 10,000 attestations
EVENTS_READ = "evidence:read"
FORBIDDEN = -32001
USE_WS = -32006  # application error: this method needs the /ws transport
SUBSCRIPTIONS_FULL = -32007
NOT_FOUND = -32004
HEIGHT_MAX = 2**63 - 1

Event = tuple[str, dict[str, Any]]  # (topic, event)


class BlockSource(Protocol):
    def tip_height(self) -> int: ...

    def events_at(self, height: int) -> list[Event] | None:
        """The events of block `height` in order (the block first), None if absent."""


def topic_scope(topic: str) -> str:
    """The scope a subscriber needs for ``topic``."""
    if topic.startswith("case."):
        return "case:read"
    if topic.startswith(("enforcement.", "agency.")):
        return "enforcement:read"
    return EVENTS_READ


class ChainEventSource:
    """Events read from the daemon's ChainStore, the evidence index and the
    workflow events stored with each block (``workflows``: a WorkflowApp)."""

    def __init__(self, chain: Any, workflows: Any = None) -> None:
        self.chain = chain
        self.workflows = workflows

    def tip_height(self) -> int:
        return int(self.chain.tip().height)

    def events_at(self, height: int) -> list[Event] | None:
        record = self.chain.block_record(height)
        if record is None:
            return None
        header = BlockHeader(*record["header"])
        out: list[Event] = [("blocks", {"height": header.height,
                                        "block_hash": header.hash().hex(),
                                        "time_ms": header.time_ms,
                                        "tx_count": header.tx_count})]
        get_state = self.chain.store.get_state
        seen: set[bytes] = set()
        for tx in stored_txs(record["batch"]):
            body = evidence.parse_payload(tx.payload)
            if body is None:
                continue
            tx_id = tx.tx_id
            # A request repeated in its submission is the same transaction
            # (same id, one index record), executed once: one event.
            if tx_id in seen:
                continue
            seen.add(tx_id)
            # Indexed at this height iff executed here (a replayed request is not).
            key = evidence.index_key(body["sha256"], tx_id)
            raw = get_state(key)
            if raw is None:
                continue
            rec = evidence.decode_record(key, raw)
            if rec["height"] != height:
                continue
            out.append(("attestations", {**rec, "tx_id": tx_id.hex(),
                                         "sha256": body["sha256"].hex()}))
        if self.workflows is not None:
            out += self._workflow_events(height)
        return out

    def _workflow_events(self, height: int) -> list[Event]:
        stored = self.workflows.block_events(height)
        out: list[Event] = []
        for att in stored["attestations"]:
            key = evidence.index_key(bytes.fromhex(att["sha256"]), bytes.fromhex(att["tx_id"]))
            rec = evidence.decode_record(key, self.chain.store.get_state(key))
            out.append(("attestations", {**rec, "tx_id": att["tx_id"], "sha256": att["sha256"]}))
        out += [(event["topic"], event) for event in stored["events"]]
        return out


class EventHub:
    """The live signal plus a small cache of recent blocks' events."""

    def __init__(self, source: BlockSource, cache_blocks: int = CACHE_BLOCKS,
                 cache_events_max: int = CACHE_EVENTS_MAX) -> None:
        self.source = source
        self._changed = trio.Event()
        self._cache: OrderedDict[int, list[Event]] = OrderedDict()
        self._cache_blocks = cache_blocks
        self._cache_events_max = cache_events_max
        self._cached_events = 0
        self.subscriptions = 0  # live ones, for metrics and tests

    def publish(self, height: int) -> None:
        """A block is durably stored: wake subscribers. Never blocks."""
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def tip_height(self) -> int:
        return self.source.tip_height()

    async def wait_beyond(self, height: int) -> None:
        """Return once the tip is above `height`."""
        while self.source.tip_height() <= height:
            await self._changed.wait()

    def read(self, height: int) -> tuple[list[Event] | None, bool]:
        """Block ``height``'s events, and whether they were read from the
        store for this call (False: the recent blocks' cache had them)."""
        cached = self._cache.get(height)
        if cached is not None:
            return cached, False
        events = self.source.events_at(height)
        if events is not None and height > self.source.tip_height() - self._cache_blocks \
                and len(events) <= self._cache_events_max:
            self._cache[height] = events  # only recent blocks: live subscribers share them
            self._cached_events += len(events)
            while len(self._cache) > self._cache_blocks or \
                    self._cached_events > self._cache_events_max:
                self._cached_events -= len(self._cache.popitem(last=False)[1])
        return events, True


@dataclass
class Subscription:
    id: str
    topics: frozenset[str]
    next_height: int
    cancel: trio.CancelScope | None = None
    delivered: int = field(default=0)


def _subs(conn: Any) -> dict[str, Subscription]:
    return conn.state.setdefault("subscriptions", {})  # type: ignore[no-any-return]


def _resume_hint(conn: Any) -> Callable[[], str | None]:
    def hint() -> str | None:
        subs = _subs(conn)
        if not subs:
            return None
        return f"resubscribe from_height={min(s.next_height for s in subs.values())}"
    return hint


async def _pump(hub: EventHub, conn: Any, sub: Subscription) -> None:
    hub.subscriptions += 1
    owed = 0.0  # rate tokens of work done and not yet spent (below one)
    try:
        while True:
            tip = hub.tip_height()
            if sub.next_height > tip:
                await hub.wait_beyond(sub.next_height - 1)
                continue
            last = min(tip, sub.next_height + PAGE_BLOCKS - 1)
            for height in range(sub.next_height, last + 1):
                events, from_store = hub.read(height)
                if events is None:  # the store lost a block it reported: a bug
                    raise RuntimeError(f"block {height} missing below tip {tip}")
                delivered = 0
                for topic, event in events:
                    if topic in sub.topics:
                        await conn.notify("events.notify", {
                            "subscription": sub.id, "height": height, "topic": topic,
                            "event": event})
                        delivered += 1
                sub.delivered += delivered
                sub.next_height = height + 1
                owed += delivered / SENT_PER_TOKEN + \
                    (len(events) / READ_PER_TOKEN if from_store else 0.0)
                if owed >= 1:
                    tokens = int(owed)
                    owed -= tokens
                    await conn.spend(tokens)
            await trio.lowlevel.checkpoint()
    finally:
        hub.subscriptions -= 1


SUBSCRIBE_PARAMS: dict[str, Any] = {
    "type": "object", "required": ["topics"], "additionalProperties": False,
    "properties": {
        "topics": {"type": "array", "minItems": 1, "maxItems": len(TOPICS),
                   "items": {"enum": list(TOPICS)},
                   "description": "blocks: one event per block (height, block_hash, time_ms, "
                                  "tx_count); attestations: one per attestation record; "
                                  "case.*, enforcement.*, agency.*: the judicial workflows' "
                                  "events (docs/WORKFLOWS.md)"},
        "from_height": {"type": "integer", "minimum": 1, "maximum": HEIGHT_MAX,
                        "description": "replay from this height (stored blocks first, then "
                                       "live); omitted: only blocks after the current tip"},
    },
}
SUBSCRIBE_RESULT: dict[str, Any] = {
    "type": "object", "required": ["subscription", "next_height"],
    "properties": {
        "subscription": {"type": "string", "minLength": 1, "maxLength": 64},
        "next_height": {"type": "integer", "minimum": 1,
                        "description": "the first height whose events will be delivered"},
    },
}
UNSUBSCRIBE_PARAMS: dict[str, Any] = {
    "type": "object", "required": ["subscription"], "additionalProperties": False,
    "properties": {"subscription": {"type": "string", "minLength": 1, "maxLength": 64}},
}
UNSUBSCRIBE_RESULT: dict[str, Any] = {
    "type": "object", "required": ["unsubscribed", "next_height"],
    "properties": {"unsubscribed": {"const": True},
                   "next_height": {"type": "integer", "minimum": 1,
                                   "description": "the first height not delivered"}},
}
NOTIFY_DOC = ("Notifications arrive as events.notify with params {subscription, height, "
              "topic, event}, each event at least once, in block order. A client that "
              "reconnects resubscribes with from_height = last height seen (or + 1 when "
              "that height was complete) and dedupes by height.")


def register_event_methods(dispatcher: Dispatcher, hub: EventHub, *,
                           subscriptions_max: int = 16) -> None:
    def need_ws(ctx: RpcContext) -> Any:
        session = ctx.session
        if session is None or not hasattr(session, "start_after_answer"):
            raise RpcError(USE_WS, "use /ws", {
                "reason": "subscriptions push notifications: connect a WebSocket to /ws"})
        return session

    @dispatcher.method(
        "events.subscribe", params_schema=SUBSCRIBE_PARAMS,
        result_schema=SUBSCRIBE_RESULT, result_name="subscription",
        summary="Subscribe to new blocks, attestations and workflow events (WebSocket /ws "
                "only).",
        description=NOTIFY_DOC + " Each topic needs its read scope: blocks and attestations "
                                 "evidence:read, case.* case:read, enforcement.* and agency.* "
                                 "enforcement:read. Deliveries spend the caller's rate tokens "
                                 f"(1 per {SENT_PER_TOKEN} events sent, 1 per "
                                 f"{READ_PER_TOKEN} read from stored blocks); over its rate "
                                 "a subscription waits for tokens rather than being dropped.",
        errors=[(USE_WS, "use /ws"), (SUBSCRIPTIONS_FULL, "too many subscriptions"),
                (FORBIDDEN, "forbidden")])
    def subscribe(params: dict[str, Any], ctx: RpcContext) -> dict[str, Any]:
        for topic in params["topics"]:
            if not ctx.has_scope(topic_scope(topic)):
                raise RpcError(FORBIDDEN, "forbidden", {
                    "method": "events.subscribe", "required_scope": topic_scope(topic),
                    "topic": topic})
        session = need_ws(ctx)
        conn = session.connection
        subs = _subs(conn)
        if len(subs) >= subscriptions_max:
            raise RpcError(SUBSCRIPTIONS_FULL, "too many subscriptions",
                           {"subscriptions_max": subscriptions_max})
        conn.resume_hint = _resume_hint(conn)
        start = params.get("from_height", hub.tip_height() + 1)
        sub = Subscription(secrets.token_hex(8), frozenset(params["topics"]), start)
        subs[sub.id] = sub

        async def run() -> None:
            await _pump(hub, conn, sub)
        sub.cancel = session.start_after_answer(run)
        if sub.cancel.cancel_called:  # the connection is closing
            subs.pop(sub.id, None)
        return {"subscription": sub.id, "next_height": start}

    @dispatcher.method(
        "events.unsubscribe", params_schema=UNSUBSCRIBE_PARAMS,
        result_schema=UNSUBSCRIBE_RESULT, result_name="unsubscribed",
        summary="Stop a subscription of this connection (WebSocket /ws only).",
        description="Notifications already queued for it may still arrive.",
        errors=[(USE_WS, "use /ws"), (NOT_FOUND, "no such subscription")])
    def unsubscribe(params: dict[str, Any], ctx: RpcContext) -> dict[str, Any]:
        conn = need_ws(ctx).connection
        sub = _subs(conn).pop(params["subscription"], None)
        if sub is None:
            raise RpcError(NOT_FOUND, "no such subscription",
                           {"subscription": params["subscription"][:64]})
        if sub.cancel is not None:
            sub.cancel.cancel()
        return {"unsubscribed": True, "next_height": sub.next_height}
