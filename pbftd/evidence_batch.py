"""``evidence.attestBatch``: thousands of attestations in one round trip.

Items are checked one by one; an item the attestation checks refuse (a
case number holding an identity or phone number, a control character) gets
an error object in its slot and the others go ahead, because a court system
sending 10,000 e-file hashes should not lose 9,999 of them to one bad case
number.  An item that breaks the published item schema (a wrong type, an
unknown kind, a field too long) is a caller's bug rather than bad data, and
refuses the whole call, naming the member (``items/N/field``).  Valid items are
split into submissions no larger than a batch may carry, each signed once by
this node (not once per item), so the primary can put whole submissions in
blocks and 10,000 items commit in a handful of blocks.
"""

from __future__ import annotations

import uuid
from typing import Any

import trio

from rpc.jsonrpc import Dispatcher, RateCost, RpcContext

from . import evidence
from .core.crypto import sha256
from .core.messages import Request, encode_tx
from .daemon import Node

__all__ = ["BATCH_COST", "ITEMS_MAX", "batch_items", "register_batch_methods"]

ITEMS_MAX = 10_000
INVALID_PARAMS = -32602
UNAVAILABLE = -32010

_ITEM = {
    "type": "object", "required": ["sha256", "kind", "case_no"], "additionalProperties": False,
    "properties": {
        "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "kind": {"enum": list(evidence.KINDS)},
        "case_no": {"type": "string", "minLength": 1, "maxLength": evidence.CASE_NO_CHARS_MAX},
        "title": {"type": "string", "minLength": 1, "maxLength": evidence.TITLE_CHARS_MAX},
        "request_id": {"type": "string", "minLength": 1, "maxLength": 128},
    },
}
PARAMS = {
    "type": "object", "required": ["items"], "additionalProperties": False,
    "properties": {"items": {"type": "array", "items": _ITEM, "maxItems": ITEMS_MAX},
                   "wait": {"type": "boolean"}},
}
RESULT = {
    "type": "object", "required": ["results"],
    "properties": {"results": {"type": "array", "items": {"type": "object"}}},
}


def _chunks(items: list[tuple[int, Request]], count_max: int,
            bytes_max: int) -> list[list[tuple[int, Request]]]:
    """Split into submissions that fit a batch (count and approximate bytes;
    a submission over batch_bytes_max is refused whole, every item in it
    answered "not accepted")."""
    out: list[list[tuple[int, Request]]] = [[]]
    size = 0
    for item in items:
        cost = item[1].size_bytes()
        if out[-1] and (len(out[-1]) >= count_max or size + cost > bytes_max * 0.9):
            out.append([])
            size = 0
        out[-1].append(item)
        size += cost
    return [c for c in out if c]


def batch_items(params: dict[str, Any]) -> int:
    """How many items an attestBatch call carries, before validation."""
    items = params.get("items")
    return len(items) if type(items) is list else 0


# Rate cost (rpc/jsonrpc.py RateCost), priced against evidence.attest's one
# token: an item costs each node about a fifth of what a single call does
# (0.057 against 0.31 ms, docs/PERFORMANCE.md, session 11's cost model).
ITEMS_PER_TOKEN = 5
BATCH_COST = RateCost(base=1, per=ITEMS_PER_TOKEN, unit="items", measure=batch_items)


def register_batch_methods(dispatcher: Dispatcher, node: Node, client_of: Any) -> None:
    runtime, chain = node.runtime, node.chain
    court = node.court.id
    cfg = node.replica.cfg
    timeout_s = node.settings.rpc.request_timeout_ms / 1000

    @dispatcher.method(
        "evidence.attestBatch", scope="evidence:write", params_schema=PARAMS,
        result_schema=RESULT, result_name="batch",
        summary="Attest up to 10,000 document hashes in one call; one result per item.",
        description="An item that breaks the item schema refuses the whole call (-32602, "
                    "data.member names it, e.g. items/3/kind). Otherwise each item is checked "
                    "on its own: one the attestation checks refuse (personal data or control "
                    "characters in case_no or title) gets an error object "
                    "{error: {code, message, data: {reason, index}}} in its place and the "
                    "others proceed. wait: true answers once every accepted item has "
                    "committed.", cost=BATCH_COST)
    async def attest_batch(params: dict[str, Any], ctx: RpcContext) -> dict[str, Any]:
        client = client_of(ctx)
        results: list[dict[str, Any]] = [{} for _ in params["items"]]
        valid: list[tuple[int, Request]] = []
        for i, item in enumerate(params["items"]):
            try:
                payload = evidence.attest_payload(item["sha256"], item["kind"],
                                                  item["case_no"], item.get("title"))
            except evidence.EvidenceError as exc:
                results[i] = {"error": {"code": INVALID_PARAMS, "message": "Invalid params",
                                        "data": {"reason": str(exc), "index": i}}}
                continue
            rid = item.get("request_id") or f"auto-{uuid.uuid4().hex}"
            valid.append((i, Request(client, rid, payload)))
        fresh: list[tuple[int, Request]] = []
        for (i, req), done in zip(valid, _committed(chain, court, valid), strict=True):
            if done is None:
                fresh.append((i, req))
            else:
                results[i] = done
        waiters = []
        for chunk in _chunks(fresh, cfg.batch_requests_max, cfg.batch_bytes_max):
            waiter = await runtime.submit([req for _, req in chunk])
            await waiter.accepted.wait()
            waiters.append((chunk, waiter))
        if params.get("wait") and waiters:
            with trio.move_on_after(timeout_s):
                for _chunk, waiter in waiters:
                    await waiter.done.wait()
        for chunk, waiter in waiters:
            committed = _waited(chain, court, chunk, waiter) if params.get("wait") else \
                [None] * len(chunk)
            for (i, req), done in zip(chunk, committed, strict=True):
                if done is not None:
                    results[i] = done
                elif waiter.error:
                    results[i] = {"error": {"code": UNAVAILABLE, "message": "not accepted",
                                            "data": {"reason": waiter.error, "index": i}}}
                else:
                    # the id the transaction will have (Tx.tx_id), without a Tx
                    tx_id = sha256(encode_tx(court, waiter.sid, req.client, req.rid,
                                             req.payload))
                    results[i] = {"tx_id": tx_id.hex(), "status": "pending"}
        return {"results": results}


def _waited(chain: Any, court: str, items: list[tuple[int, Request]],
            waiter: Any) -> list[dict[str, Any] | None]:
    """``_committed`` after a wait: what the waiter knows (``CommitWaiter.known``:
    the runtime records each key's height and tx_id at execution), else one
    multi-get for the lot (a wait that timed out, a refusal)."""
    known = [waiter.known((court, req.client, req.rid)) for _, req in items]
    if all(done is not None for done in known):
        return [_answer(done) for done in known]
    return _committed(chain, court, items)


def _answer(done: tuple[int, bytes]) -> dict[str, Any]:
    return {"tx_id": done[1].hex(), "status": "committed", "height": done[0]}


def _committed(chain: Any, court: str,
               items: list[tuple[int, Request]]) -> list[dict[str, Any] | None]:
    """The committed result of each item's request, None where it has none
    yet: one multi-get for the lot rather than a lookup per item."""
    found = chain.request_results([(court, req.client, req.rid) for _, req in items])
    return [None if done is None else _answer(done) for done in found]
