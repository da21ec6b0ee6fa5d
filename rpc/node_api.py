"""What the RPC layer needs from the daemon, as a Protocol.

The RPC package must not reach into the replica, the store or the mesh: the
daemon owns those (one task owns the replica, STYLE.md). Instead the daemon
hands the server one object with these methods. Every method is synchronous
and cheap: it reads state the daemon already holds (or one store lookup), so
calling it from a request task needs no lock and no thread.

Return plain JSON values (dict, list, str, int, float, bool, None; hashes as
lowercase hex strings). Results are validated against the schemas in
chain_methods.py; a mismatch is reported as the daemon's bug (-32603 with an
incident id in the log), never passed to callers half-formed.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["NodeApi"]


@runtime_checkable
class NodeApi(Protocol):
    def status(self) -> dict[str, Any]:
        """node_id, court, tier, role, view, primary, height, last_block_hash,
        stable_checkpoint, peers (see chain_methods.STATUS_SCHEMA)."""
        ...

    def health(self) -> dict[str, Any]:
        """{"ok": bool, ...}: ok is false when the node cannot serve (no quorum,
        disk full, read-only). Other members are shown on GET /health."""
        ...

    def block(self, height: int) -> dict[str, Any] | None:
        """{header, tx_ids, commit_certificate} of a committed block, or None."""
        ...

    def tx(self, tx_id: str) -> dict[str, Any] | None:
        """{tx_id, status, height, tx} for a lowercase hex tx id, or None."""
        ...
