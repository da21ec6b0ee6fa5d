"""The daemon's answers to the RPC layer (rpc.node_api.NodeApi).

Reads only state the daemon already holds or one store lookup, from the
same trio thread as the replica's owner task, so no lock is needed.
"""

from __future__ import annotations

from typing import Any

from .daemon import Node

__all__ = ["DaemonApi"]

HEX64_CHARS = 64


class DaemonApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    def status(self) -> dict[str, Any]:
        node, r = self.node, self.node.replica
        tip = node.chain.tip()
        return {
            "node_id": node.court.id, "court": node.court.name, "tier": node.court.tier,
            "role": node.court.role, "view": r.view, "view_active": r.active,
            "primary": r.primary, "height": tip.height, "last_block_hash": tip.block_hash.hex(),
            "last_block_time_ms": tip.time_ms, "stable_checkpoint": r.stable_seq,
            "peers": sorted(node.runtime.mesh.connected_peers()), "chain_id": node.genesis.chain_id,
        }

    def health(self) -> dict[str, Any]:
        node = self.node
        store = node.store
        vals = node.replica.vals
        connected = node.runtime.mesh.connected_peers()
        peers = len(connected)
        linked = sum(1 for p in connected if p in vals)
        if node.court.role == "observer":
            quorum_reachable = linked >= vals.weak_quorum   # f+1: at least one honest
        else:
            quorum_reachable = linked + 1 >= vals.quorum
        read_only = node.runtime.read_only_reason
        ok = read_only is None and not store.failed and quorum_reachable
        return {"ok": ok, "read_only": read_only is not None, "read_only_reason": read_only,
                "store_failed": store.failed,
                "peers_connected": peers, "quorum_reachable": quorum_reachable,
                "height": node.chain.tip().height}

    def block(self, height: int) -> dict[str, Any] | None:
        return self.node.chain.block_json(height) if height >= 1 else None

    def tx(self, tx_id: str) -> dict[str, Any] | None:
        if len(tx_id) != HEX64_CHARS:
            return None
        return self.node.chain.tx_json(bytes.fromhex(tx_id))
