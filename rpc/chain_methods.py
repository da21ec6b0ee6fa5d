"""The read methods of SPEC: node.status, chain.getBlock, chain.getTx.

Thin adapters from JSON-RPC params to the daemon's NodeApi. The schemas here
are the published contract (rpc.discover) and the enforced one: params are
validated before a call, results after it.

Access: node.status is public (SPEC lists it among the anonymous reads);
chain.getBlock and chain.getTx need the `evidence:read` scope. The `admin`
scope implies every scope (RpcContext.has_scope), so the testnet's
admin.token can call everything.
"""

from __future__ import annotations

from typing import Any

from .errors import NOT_FOUND, RpcError
from .jsonrpc import Dispatcher, RateCost, RpcContext
from .node_api import NodeApi

__all__ = [
    "BLOCK_SCHEMA",
    "EVIDENCE_READ",
    "HEX64",
    "STATUS_SCHEMA",
    "TX_SCHEMA",
    "register_chain_methods",
]

EVIDENCE_READ = "evidence:read"
HEIGHT_MAX = 2**63 - 1

HEX64: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$",
                         "description": "SHA-256, lowercase hex"}
_HEIGHT: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": HEIGHT_MAX}
_NODE_ID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 128}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["node_id", "court", "tier", "role", "view", "primary", "height",
                 "last_block_hash", "stable_checkpoint", "peers"],
    "properties": {
        "node_id": _NODE_ID,
        "court": {"type": "string", "description": "this node's court id"},
        "tier": {"enum": ["supreme", "high", "intermediate", "basic"]},
        "role": {"enum": ["validator", "observer"]},
        "view": {"type": "integer", "minimum": 0},
        "primary": {**_NODE_ID, "description": "node id of the current view's primary"},
        "height": {**_HEIGHT, "description": "last committed block"},
        "last_block_hash": HEX64,
        "stable_checkpoint": {**_HEIGHT, "description": "height of the last stable checkpoint"},
        "peers": {"type": "array", "items": _NODE_ID, "maxItems": 10_000,
                  "description": "node ids of the peers currently connected"},
    },
}

HEADER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["chain_id", "height", "prev_hash", "time_ms", "tx_root", "state_root",
                 "proposer", "view"],
    "properties": {
        "chain_id": {"type": "string"},
        "height": _HEIGHT,
        "prev_hash": HEX64,
        "time_ms": {"type": "integer", "minimum": 0, "description": "block time, Unix ms"},
        "batch_time_ms": {"type": "integer", "minimum": 0},
        "tx_root": {**HEX64, "description": "Merkle root of the block's transactions"},
        "tx_count": {"type": "integer", "minimum": 0},
        "state_root": HEX64,
        "proposer": _NODE_ID,
        "view": {"type": "integer", "minimum": 0},
    },
}

BLOCK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["header", "tx_ids", "commit_certificate"],
    "properties": {
        "header": HEADER_SCHEMA,
        "block_hash": HEX64,
        "tx_ids": {"type": "array", "items": HEX64},
        "commit_certificate": {
            "type": "object",
            "description": "2f+1 validator COMMIT signatures over the block's batch digest",
        },
    },
}

TX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tx_id", "status", "height", "tx"],
    "properties": {
        "tx_id": HEX64,
        "status": {"enum": ["pending", "committed"]},
        "height": {"type": ["integer", "null"], "minimum": 1,
                   "description": "block height once committed, else null"},
        "tx": {"type": "object", "description": "the transaction as submitted"},
    },
}

_NOT_FOUND = (NOT_FOUND, "not found")

# Rate costs, in tokens of about 0.5 ms of the node's CPU (node.status): on
# the development machine a chain.getTx took 0.95-1.5 ms and a
# chain.getBlock of a 1,000-transaction block 6.8-8.8 ms (docs/OPERATIONS.md,
# section 9).
TX_READ_COST = RateCost(base=2)
BLOCK_READ_COST = RateCost(base=14)


def register_chain_methods(dispatcher: Dispatcher, node_api: NodeApi) -> None:
    """Register node.status, chain.getBlock and chain.getTx on `dispatcher`."""

    @dispatcher.method(
        "node.status", public=True, result_schema=STATUS_SCHEMA, result_name="status",
        summary="One screen about this node: identity, view, height, peers.")
    def node_status(_params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        return node_api.status()

    @dispatcher.method(
        "chain.getBlock", scope=EVIDENCE_READ, result_schema=BLOCK_SCHEMA, result_name="block",
        params_schema={"type": "object", "required": ["height"], "additionalProperties": False,
                       "properties": {"height": _HEIGHT}},
        summary="A committed block: header, transaction ids, commit certificate.",
        errors=[_NOT_FOUND], cost=BLOCK_READ_COST)
    def get_block(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        block = node_api.block(params["height"])
        if block is None:
            raise RpcError(NOT_FOUND, "not found", {"height": params["height"]})
        return block

    @dispatcher.method(
        "chain.getTx", scope=EVIDENCE_READ, result_schema=TX_SCHEMA, result_name="transaction",
        params_schema={"type": "object", "required": ["tx_id"], "additionalProperties": False,
                       "properties": {"tx_id": {"type": "string",
                                                "pattern": "^[0-9a-fA-F]{64}$",
                                                "description": "SHA-256 tx id, hex"}}},
        summary="A transaction, its height and status.",
        description="tx_id is accepted in either case and answered in lowercase.",
        errors=[_NOT_FOUND], cost=TX_READ_COST)
    def get_tx(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        tx_id = params["tx_id"].lower()
        tx = node_api.tx(tx_id)
        if tx is None:
            raise RpcError(NOT_FOUND, "not found", {"tx_id": tx_id})
        return tx
