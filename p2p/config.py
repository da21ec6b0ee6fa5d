"""Mesh configuration: who we are, whom we trust, and the limits we keep.

Validated once at construction so that a misconfigured node fails at start
rather than half-way through a view change. Every limit carries its unit in
its name. Plaintext links are refused unless explicitly allowed, because an
unencrypted link lets an on-path attacker hijack an authenticated session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["NODE_ID_CHARS_MAX", "MeshConfig", "PeerInfo", "raw_public_key"]

NODE_ID_CHARS_MAX = 128
ED25519_PUBLIC_KEY_BYTES = 32


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    """The 32-byte raw public key, the form peers list us under."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_node_id(node_id: object, what: str) -> None:
    if type(node_id) is not str or not 0 < len(node_id) <= NODE_ID_CHARS_MAX:
        raise ValueError(f"{what} must be a non-empty str of at most {NODE_ID_CHARS_MAX} chars")


def _check_key(key: object, what: str) -> None:
    if type(key) is not bytes or len(key) != ED25519_PUBLIC_KEY_BYTES:
        raise ValueError(f"{what} must be a raw 32-byte Ed25519 public key")


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A validator we dial and accept: its court id, key, and address."""

    node_id: str
    public_key: bytes
    host: str
    port: int

    def __post_init__(self) -> None:
        _check_node_id(self.node_id, "peer node_id")
        _check_key(self.public_key, f"public_key of {self.node_id}")
        if not self.host:
            raise ValueError(f"host of {self.node_id} must not be empty")
        if type(self.port) is not int or not 0 < self.port < 65536:
            raise ValueError(f"port of {self.node_id} must be in 1..65535")


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Everything the mesh needs; see the module docstring for the rules."""

    chain_id: str
    node_id: str
    private_key: Ed25519PrivateKey
    listen_host: str
    listen_port: int
    peers: tuple[PeerInfo, ...]
    tls: bool
    plaintext_ok: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Nodes allowed to connect in (observers) but never dialed by us.
    extra_known: Mapping[str, bytes] = field(default_factory=dict)
    frame_bytes_max: int = 4 * 1024 * 1024
    send_queue_frames_max: int = 1024
    # Websocket messages (each up to batch_frames_max frames) waiting in
    # Mesh.inbox, all peers together; the byte bound below is what bounds memory.
    inbox_messages_max: int = 4096
    # Bytes of one peer's frames in the inbox (and beyond it, until the
    # consumer calls Mesh.release); a peer over it waits, others do not.
    inbox_bytes_per_peer_max: int = 16 * 1024 * 1024
    batch_frames_max: int = 256
    heartbeat_interval_ms: int = 1000
    peer_dead_after_ms: int = 5000
    handshake_timeout_ms: int = 5000
    close_timeout_ms: int = 1000
    # Inbound connections not yet authenticated; each may buffer one message.
    handshakes_pending_max: int = 16
    reconnect_backoff_min_ms: int = 200
    reconnect_backoff_max_ms: int = 10000

    def __post_init__(self) -> None:
        if not self.tls and not self.plaintext_ok:
            raise ValueError("tls=False requires plaintext_ok=True (links would be unencrypted)")
        if type(self.chain_id) is not str or not 0 < len(self.chain_id) <= NODE_ID_CHARS_MAX:
            raise ValueError("chain_id must be a non-empty str")
        _check_node_id(self.node_id, "node_id")
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise ValueError("private_key must be an Ed25519PrivateKey")
        if type(self.listen_port) is not int or not 0 <= self.listen_port < 65536:
            raise ValueError("listen_port must be in 0..65535 (0 picks a free port)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        self._check_identities()
        self._check_limits()
        object.__setattr__(self, "extra_known", MappingProxyType(dict(self.extra_known)))

    def _check_identities(self) -> None:
        ids = [p.node_id for p in self.peers]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate node_id in peers")
        if self.node_id in ids or self.node_id in self.extra_known:
            raise ValueError("our own node_id must not be listed as a peer")
        for node_id, key in self.extra_known.items():
            _check_node_id(node_id, "extra_known node_id")
            _check_key(key, f"extra_known key of {node_id}")
            if node_id in ids:
                raise ValueError(f"{node_id} is both a peer and an extra_known node")

    def _check_limits(self) -> None:
        for name in (
            "frame_bytes_max", "send_queue_frames_max", "inbox_messages_max",
            "inbox_bytes_per_peer_max", "batch_frames_max",
            "heartbeat_interval_ms", "peer_dead_after_ms", "handshake_timeout_ms",
            "close_timeout_ms", "handshakes_pending_max", "reconnect_backoff_min_ms",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive int")
        if self.batch_frames_max > 65535:
            raise ValueError("batch_frames_max must be at most 65535")
        if self.peer_dead_after_ms <= self.heartbeat_interval_ms:
            raise ValueError("peer_dead_after_ms must exceed heartbeat_interval_ms")
        if self.reconnect_backoff_max_ms < self.reconnect_backoff_min_ms:
            raise ValueError("reconnect_backoff_max_ms must be >= reconnect_backoff_min_ms")

    def known_keys(self) -> dict[str, bytes]:
        """Who may connect: validators plus observers, node_id -> raw key."""
        keys = {p.node_id: p.public_key for p in self.peers}
        keys.update(self.extra_known)
        return keys
