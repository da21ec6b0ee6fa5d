"""Block contents derived from height, so any reader (even after a crash) can check them."""

from __future__ import annotations

import hashlib

__all__ = ["block_bytes", "block_hash", "cert_bytes", "tx_list"]


def block_hash(height: int) -> bytes:
    return hashlib.sha256(b"hash-%d" % height).digest()


def block_bytes(height: int, size: int = 256) -> bytes:
    seed = hashlib.sha256(b"block-%d" % height).digest()
    return (seed * (size // len(seed) + 1))[:size]


def cert_bytes(height: int) -> bytes:
    return b"cert-%d" % height


def tx_list(height: int, count: int) -> list[bytes]:
    """Transaction ids of a test block."""
    return [b"tx-%d-%d" % (height, index) for index in range(count)]
