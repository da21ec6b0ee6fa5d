"""JSON-RPC methods for proofs: evidence.getProof (public) and chain.getHeaders.

Registered by ``register_proof_methods`` from build_rpc.  The result
schemas are the ones the offline verifier enforces (rpc.verify), so what
rpc.discover publishes is exactly what ``pbftd verify-proof`` accepts.
"""

from __future__ import annotations

from typing import Any

from rpc.chain_methods import EVIDENCE_READ
from rpc.errors import INVALID_PARAMS, NOT_FOUND, RpcError
from rpc.jsonrpc import Dispatcher, RateCost, RpcContext
from rpc.verify import HEADER_ENTRY_SCHEMA, PROOF_SCHEMA

from .proofs import HEADERS_PER_CALL_MAX, build_proof, headers

__all__ = ["HEADERS_COST", "HEADERS_RESULT", "PROOF_COST", "register_proof_methods",
           "requested_headers"]

# Rate costs (rpc/jsonrpc.py RateCost; tokens of about 0.5 ms of the node's
# CPU): on the development machine a proof from a 1,000-transaction block
# took 7.2-7.9 ms, mostly re-encoding and hashing the block's leaves, and headers
# about 0.17 ms each (docs/OPERATIONS.md, section 9).
PROOF_COST = RateCost(base=14)
HEADERS_PER_TOKEN = 3


def requested_headers(params: dict[str, Any]) -> int:
    """How many headers a chain.getHeaders call asks for, before validation
    (0 for params that validation will refuse anyway)."""
    lo, hi = params.get("from_height"), params.get("to_height")
    if type(lo) is not int or type(hi) is not int:
        return 0
    return min(max(hi - lo + 1, 0), HEADERS_PER_CALL_MAX)


HEADERS_COST = RateCost(base=1, per=HEADERS_PER_TOKEN, unit="requested headers",
                        measure=requested_headers)

_HEIGHT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}

HEADERS_PARAMS: dict[str, Any] = {
    "type": "object", "required": ["from_height", "to_height"], "additionalProperties": False,
    "properties": {
        "from_height": {**_HEIGHT, "description": "first block height, at least 1"},
        "to_height": {**_HEIGHT, "description": f"last block height: from_height <= to_height "
                                                f"< from_height + {HEADERS_PER_CALL_MAX}"},
    },
}
HEADERS_RESULT: dict[str, Any] = {
    "type": "object", "required": ["headers", "height"], "additionalProperties": False,
    "properties": {
        "headers": {"type": "array", "maxItems": HEADERS_PER_CALL_MAX,
                    "items": HEADER_ENTRY_SCHEMA,
                    "description": "in height order; stops at this node's last block"},
        "height": {"type": "integer", "minimum": 0,
                   "description": "this node's last committed height"},
    },
}
PROOF_PARAMS: dict[str, Any] = {
    "type": "object", "required": ["tx_id"], "additionalProperties": False,
    "properties": {"tx_id": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                             "description": "SHA-256 transaction id, hex (either case)"}},
}


def register_proof_methods(dispatcher: Dispatcher, node: Any) -> None:
    """``node`` needs ``chain`` (a ChainStore) and ``genesis`` (a config.Genesis)."""

    @dispatcher.method(
        "evidence.getProof", public=True, params_schema=PROOF_PARAMS,
        result_schema=PROOF_SCHEMA, result_name="proof",
        summary="A self-contained proof that a transaction is in a committed block.",
        description="The transaction, its Merkle path to the block's transaction root, the "
                    "block header, the commit certificate of a quorum of validator signatures "
                    "and the validator set; verifiable offline (pbftd verify-proof, "
                    "docs/PROOFS.md).",
        errors=[(NOT_FOUND, "not found")], cost=PROOF_COST)
    def get_proof(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        tx_id = params["tx_id"].lower()
        proof = build_proof(node.chain, node.genesis, bytes.fromhex(tx_id))
        if proof is None:
            raise RpcError(NOT_FOUND, "not found", {"tx_id": tx_id})
        return proof

    @dispatcher.method(
        "chain.getHeaders", scope=EVIDENCE_READ, params_schema=HEADERS_PARAMS,
        result_schema=HEADERS_RESULT, result_name="headers",
        summary="Block headers with their commit certificates, for light clients.",
        description=f"At most {HEADERS_PER_CALL_MAX} per call; the list stops at this node's "
                    "last block. A light client checks each certificate, block hash, "
                    "prev_hash link and time rule from genesis (docs/PROOFS.md).",
        cost=HEADERS_COST)
    def get_headers(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        lo, hi = params["from_height"], params["to_height"]
        if hi < lo:
            raise RpcError(INVALID_PARAMS, data={
                "member": "to_height", "reason": "to_height must not be below from_height"})
        if hi - lo + 1 > HEADERS_PER_CALL_MAX:
            raise RpcError(INVALID_PARAMS, data={
                "member": "to_height",
                "reason": f"at most {HEADERS_PER_CALL_MAX} headers per call "
                          f"(to_height - from_height + 1 <= {HEADERS_PER_CALL_MAX})"})
        return {"headers": headers(node.chain, lo, hi), "height": node.chain.tip().height}
