"""Test doubles and helpers shared by the rpc tests: a fake NodeApi, tokens,
and a way to run the async engine from plain test functions (no pytest-trio)."""

from __future__ import annotations

import json
from typing import Any

import trio

from rpc.chain_methods import register_chain_methods
from rpc.jsonrpc import ANONYMOUS, Dispatcher, RpcContext

HASH_A = "a" * 64
HASH_B = "b" * 64
TX_ID = "0123456789abcdef" * 4

TOKENS = {
    "reader-token": frozenset({"evidence:read"}),
    "admin-token": frozenset({"admin"}),
    "case-token": frozenset({"case:read"}),
}
READER = RpcContext(TOKENS["reader-token"], authenticated=True)
ADMIN = RpcContext(TOKENS["admin-token"], authenticated=True)
CASE_ONLY = RpcContext(TOKENS["case-token"], authenticated=True)


class FakeNode:
    """Satisfies rpc.node_api.NodeApi with fixed, schema-valid answers."""

    def __init__(self) -> None:
        self.healthy = True
        self.status_override: dict[str, Any] | None = None
        self.blocks = {1: {
            "header": {"chain_id": "court-chain", "height": 1, "prev_hash": HASH_A,
                       "time_ms": 1_700_000_000_000, "batch_time_ms": 1_700_000_000_000,
                       "tx_root": HASH_B, "tx_count": 1, "state_root": HASH_A,
                       "proposer": "n0", "view": 0},
            "block_hash": HASH_B,
            "tx_ids": [TX_ID],
            "commit_certificate": {"signatures": []},
        }}
        self.txs = {TX_ID: {"tx_id": TX_ID, "status": "committed", "height": 1,
                            "tx": {"kind": "judgment"}}}
        self.asked: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return self.status_override or {
            "node_id": "n0", "court": "supreme-1", "tier": "supreme", "role": "validator",
            "view": 0, "primary": "n0", "height": 1, "last_block_hash": HASH_B,
            "stable_checkpoint": 0, "peers": ["n1", "n2", "n3"]}

    def health(self) -> dict[str, Any]:
        return {"ok": self.healthy, "height": 1}

    def block(self, height: int) -> dict[str, Any] | None:
        self.asked.append(("block", height))
        return self.blocks.get(height)

    def tx(self, tx_id: str) -> dict[str, Any] | None:
        self.asked.append(("tx", tx_id))
        return self.txs.get(tx_id)


def chain_dispatcher(node: FakeNode | None = None) -> Dispatcher:
    dispatcher = Dispatcher()
    register_chain_methods(dispatcher, node or FakeNode())
    return dispatcher


def call(dispatcher: Dispatcher, body: str | bytes, ctx: RpcContext = ANONYMOUS) -> Any:
    """Run one body through the engine; the decoded answer, or None for no body."""
    raw = body.encode() if isinstance(body, str) else body

    async def run() -> bytes | None:
        with trio.fail_after(10):
            return await dispatcher.handle_body(raw, ctx)
    answer = trio.run(run)
    return None if answer is None else json.loads(answer)


def request(method: str, params: Any = None, id_: Any = 1, **extra: Any) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_, **extra}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def without_data(response: Any) -> Any:
    """The spec's examples show no `data`; ours may add it, so compare without."""
    if isinstance(response, list):
        return [without_data(r) for r in response]
    if isinstance(response, dict) and "error" in response:
        error = {k: v for k, v in response["error"].items() if k != "data"}
        return {**response, "error": error}
    return response
