"""Ed25519 signing and SHA-256 hashing, with a domain tag on everything signed.

All primitives come from ``cryptography``.  Verification goes through a
``Verifier`` object so the simulator can memoise results: every replica in a
simulated cluster verifies the same broadcast signature, and a memo keyed by
(key, bytes, signature) gives the exact same answer once per distinct triple.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SIGNATURE_BYTES",
    "CachingVerifier",
    "Signer",
    "Verifier",
    "sha256",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Signer:
    """Holds one node's private key; signs already-domain-tagged bytes."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        """Deterministic key from 32 seed bytes (tests and the simulator)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


class Verifier:
    """Checks Ed25519 signatures; keeps parsed public keys."""

    def __init__(self) -> None:
        self._keys: dict[bytes, Ed25519PublicKey] = {}

    def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
            return False
        key = self._keys.get(public_key)
        if key is None:
            key = Ed25519PublicKey.from_public_bytes(public_key)
            self._keys[public_key] = key
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class CachingVerifier(Verifier):
    """A Verifier that remembers results; shared by simulated replicas."""

    def __init__(self, entries_max: int = 200_000) -> None:
        super().__init__()
        self._memo: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._entries_max = entries_max

    def verify(self, public_key: bytes, data: bytes, signature: bytes) -> bool:
        key = (public_key, data, signature)
        result = self._memo.get(key)
        if result is None:
            result = super().verify(public_key, data, signature)
            if len(self._memo) >= self._entries_max:
                self._memo.clear()
            self._memo[key] = result
        return result
