"""Proofs served by a node: evidence.getProof and chain.getHeaders (docs/PROOFS.md).

Pure functions over the chain store: they read the stored block record,
its commit certificate and the transaction index, and return plain JSON.
Nothing here is trusted by a verifier; ``rpc.verify`` checks every byte.
Before answering, the proof is checked for internal consistency (the stored
transaction is the leaf at its index, the leaves hash to the header's
transaction root) so a damaged store yields an error, never a bad proof.
"""

from __future__ import annotations

from typing import Any

from .chainstore import ChainStore, TxIndexError, cert_json, header_json, stored_leaves
from .core import codec
from .core.chain import BlockHeader
from .core.merkle import merkle_root_and_path

__all__ = ["HEADERS_PER_CALL_MAX", "PROOF_VERSION", "ProofBuildError", "build_proof",
           "cert_json", "header_entry", "header_json", "headers"]

PROOF_VERSION = 1
HEADERS_PER_CALL_MAX = 1_000
SIZE_MAX = 64 * 1024 * 1024

# The store does not hold a consistent block for a transaction it indexes.
ProofBuildError = TxIndexError


def header_entry(chain: ChainStore, height: int) -> dict[str, Any] | None:
    """One chain.getHeaders entry: header, block hash, commit certificate."""
    record = chain.block_record(height)
    if record is None:
        return None
    header = BlockHeader(*record["header"])
    entry = {"header": header_json(header), "block_hash": header.hash().hex(),
             "commit_certificate": cert_json(chain.cert_envelopes(height))}
    checkpoint = chain.checkpoint_proof(height)
    if checkpoint:
        entry["checkpoint"] = {"seq": height, "block_hash": entry["block_hash"],
                               "signatures": [{"validator": _signer(s), "signed_hex": s.hex(),
                                               "sig_hex": sig.hex()} for s, sig in checkpoint]}
    return entry


def _signer(signed: bytes) -> str:
    return codec.decode(signed, size_max=SIZE_MAX)[3]


def headers(chain: ChainStore, from_height: int, to_height: int) -> list[dict[str, Any]]:
    """Headers from_height..to_height that exist (the list stops at the tip)."""
    if from_height < 1 or to_height < from_height:
        raise ValueError("need 1 <= from_height <= to_height")
    if to_height - from_height + 1 > HEADERS_PER_CALL_MAX:
        raise ValueError(f"at most {HEADERS_PER_CALL_MAX} headers per call")
    out = []
    for height in range(from_height, min(to_height, chain.tip().height) + 1):
        entry = header_entry(chain, height)
        if entry is None:
            break
        out.append(entry)
    return out


def build_proof(chain: ChainStore, genesis: Any, tx_id: bytes) -> dict[str, Any] | None:
    """The self-contained proof of ``tx_id``, or None if this chain lacks it.

    ``genesis`` is a config.Genesis: it names the chain and the validator set
    that signed (the proof carries it so a reader sees which keys to trust;
    the verifier compares it with its own copy).
    """
    found = chain.find_tx(tx_id)
    if found is None:
        return None
    height, index = found.height, found.index
    header = BlockHeader(*found.record["header"])
    leaves = stored_leaves(found.record["batch"])
    if len(leaves) != header.tx_count or not 0 <= index < len(leaves):
        raise ProofBuildError(f"block {height}'s transactions do not match its header")
    root, path = merkle_root_and_path(leaves, index)
    if root != header.tx_root:
        raise ProofBuildError(f"block {height}'s transactions do not match its header")
    tx, tx_bytes = found.tx, leaves[index]
    return {
        "version": PROOF_VERSION,
        "chain_id": genesis.chain_id,
        "genesis_hash": genesis.genesis_hash().hex(),
        "tx": {"origin": tx.origin, "submission": tx.sid, "client": tx.client,
               "request_id": tx.rid, "payload_hex": tx.payload.hex(), "tx_hex": tx_bytes.hex()},
        "tx_id": tx_id.hex(),
        "merkle": {"index": index, "size": len(leaves),
                   "path": [p.hex() for p in path]},
        "header": header_json(header),
        "block_hash": header.hash().hex(),
        "commit_certificate": cert_json(chain.cert_envelopes(height)),
        "validators": [{"id": c.id, "public_key": bytes.fromhex(c.public_key).hex()}
                       for c in genesis.validators()],
    }
