"""The one write path of the RPC methods: submit a payload as this court's
transaction, idempotent by request id, optionally waiting for commit.

``evidence.attest`` and every workflow write go through :func:`submit_write`,
so the rules live in one place: the request key is (this court, the bearer
token's client name, request_id); a key already executed answers its first
result and writes nothing; ``wait`` answers once the block is stored (or
with a timeout error that says to retry with the same request_id).
"""

from __future__ import annotations

import uuid
from typing import Any

import trio

from rpc.errors import RpcError
from rpc.jsonrpc import RpcContext

from .core.chain import Tx
from .core.messages import Request

__all__ = ["TIMEOUT", "UNAVAILABLE", "client_of", "submit_write"]

TIMEOUT = -32003
UNAVAILABLE = -32010


def client_of(ctx: RpcContext) -> str:
    """The calling client's name, from its token (``client:<name>``)."""
    names = sorted(s[len("client:"):] for s in ctx.scopes if s.startswith("client:"))
    return names[0] if names else "anonymous"


async def submit_write(node: Any, ctx: RpcContext, payload: bytes, request_id: str | None,
                       wait: bool) -> dict[str, Any]:
    """``{tx_id, status}`` (``pending``/``committed``), plus ``height`` once
    committed.  Raises RpcError when the node cannot accept the write or the
    wait times out."""
    runtime, chain = node.runtime, node.chain
    client = client_of(ctx)
    rid = request_id or f"auto-{uuid.uuid4().hex}"
    key = (node.court.id, client, rid)
    done = chain.request_result(key)
    if done is not None:
        return {"tx_id": done[1].hex(), "status": "committed", "height": done[0]}
    waiter = await runtime.submit([Request(client, rid, payload)])
    if wait:
        # One wake-up per call: ``done`` is set on commit and on refusal alike.
        with trio.move_on_after(node.settings.rpc.request_timeout_ms / 1000):
            await waiter.done.wait()
        if not waiter.accepted.is_set():
            raise RpcError(TIMEOUT, "timeout",
                           {"status": "pending", "retry": "with the same request_id"})
    else:
        await waiter.accepted.wait()
    if waiter.error and not waiter.sid:
        raise RpcError(UNAVAILABLE, "not accepted", {"reason": waiter.error})
    tx_id = Tx(node.court.id, waiter.sid, client, rid, payload).tx_id
    if not wait:
        return {"tx_id": tx_id.hex(), "status": "pending"}
    result = waiter.known(key) or chain.request_result(key)
    if result is None and waiter.error:
        raise RpcError(UNAVAILABLE, "not acknowledged",
                       {"reason": waiter.error, "retry": "with the same request_id"})
    if result is None:
        raise RpcError(TIMEOUT, "timeout", {"tx_id": tx_id.hex(), "status": "pending"})
    return {"tx_id": result[1].hex(), "status": "committed", "height": result[0]}
