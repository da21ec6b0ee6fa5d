"""Mutual authentication of a new link: pure checks, no I/O.

Theory of operation. Each side sends HELLO {chain_id, node_id, nonce} and then
AUTH {sig}. The signature covers the transcript

    CBOR [ "pbftd-p2p-handshake-v1", signer_role, chain_id,
           dialer_id, acceptor_id, dialer_nonce, acceptor_nonce, tls_binding ]

* both fresh 32-byte nonces make a signature useless on any other link
  (no replay);
* signer_role ("dialer" / "acceptor") stops a signature being reflected back
  to the side that made it;
* chain_id keeps a test net and the production chain apart;
* tls_binding is "tls-server-end-point" (RFC 5929): SHA-256 of the server's
  TLS certificate, computed by the client from the certificate it was shown
  and by the server from its own. A man in the middle who terminates TLS must
  show the client its own certificate, so the two sides sign different
  bindings and both signatures fail. This is why the client need not verify a
  CA or hostname: identity comes from the Ed25519 key listed for the node id,
  and the signature ties that identity to this very TLS channel. (tls-unique
  is not used: it is undefined for TLS 1.3, see cpython issue 95341, and
  Python exposes no RFC 9266 exporter.) The binding holds as long as each
  node's TLS key is its own; the default is a fresh key per process.

A peer is refused when its chain id differs, its node id is unknown or is our
own, it is not the node we dialed, it echoes our nonce, or its signature does
not verify under the key listed for the id it claims.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from p2p.wire import NONCE_BYTES, Auth, Hello

__all__ = [
    "DOMAIN_TAG",
    "HandshakeRejected",
    "Handshaker",
    "tls_server_end_point",
]

DOMAIN_TAG = "pbftd-p2p-handshake-v1"


class HandshakeRejected(Exception):
    """The peer failed to prove an identity we accept; the text says why."""


def tls_server_end_point(server_cert_der: bytes) -> bytes:
    """Channel binding value both sides compute from the server certificate."""
    return b"tls-server-end-point:" + hashlib.sha256(server_cert_der).digest()


@dataclass(frozen=True, slots=True)
class Handshaker:
    """One side of one handshake. Build a fresh one per link (fresh nonce).

    `expected_peer` is the node we dialed, or None when we accepted.
    `tls_binding` is b"" on plaintext links, which therefore only resist
    passive eavesdroppers on identity, not on-path hijacking.
    """

    chain_id: str
    node_id: str
    private_key: Ed25519PrivateKey
    known_keys: dict[str, bytes]
    expected_peer: str | None
    tls_binding: bytes
    nonce: bytes

    @classmethod
    def new(cls, *, chain_id: str, node_id: str, private_key: Ed25519PrivateKey,
            known_keys: dict[str, bytes], expected_peer: str | None,
            tls_binding: bytes) -> Handshaker:
        # Nonces come from the OS CSPRNG, never from the injected Random.
        return cls(chain_id, node_id, private_key, known_keys, expected_peer,
                   tls_binding, secrets.token_bytes(NONCE_BYTES))

    @property
    def is_dialer(self) -> bool:
        return self.expected_peer is not None

    def hello(self) -> Hello:
        return Hello(chain_id=self.chain_id, node_id=self.node_id, nonce=self.nonce)

    def check_hello(self, theirs: Hello) -> None:
        """Refuse a claimed identity before any signature work is done."""
        if theirs.chain_id != self.chain_id:
            raise HandshakeRejected(f"wrong chain_id {theirs.chain_id!r}")
        if theirs.node_id == self.node_id:
            raise HandshakeRejected("peer claims our own node_id")
        if theirs.node_id not in self.known_keys:
            raise HandshakeRejected(f"unknown node_id {theirs.node_id!r}")
        if self.expected_peer is not None and theirs.node_id != self.expected_peer:
            raise HandshakeRejected(f"dialed {self.expected_peer!r}, {theirs.node_id!r} answered")
        if theirs.nonce == self.nonce:
            raise HandshakeRejected("peer echoed our nonce")

    def _transcript(self, theirs: Hello, signer_is_dialer: bool) -> bytes:
        if self.is_dialer:
            dialer, acceptor = self.hello(), theirs
        else:
            dialer, acceptor = theirs, self.hello()
        role = "dialer" if signer_is_dialer else "acceptor"
        return cbor2.dumps([
            DOMAIN_TAG, role, self.chain_id, dialer.node_id, acceptor.node_id,
            dialer.nonce, acceptor.nonce, self.tls_binding,
        ])

    def auth(self, theirs: Hello) -> Auth:
        transcript = self._transcript(theirs, signer_is_dialer=self.is_dialer)
        return Auth(signature=self.private_key.sign(transcript))

    def check_auth(self, theirs: Hello, auth: Auth) -> str:
        """Verify the peer's signature; return its authenticated node id."""
        transcript = self._transcript(theirs, signer_is_dialer=not self.is_dialer)
        key = Ed25519PublicKey.from_public_bytes(self.known_keys[theirs.node_id])
        try:
            key.verify(auth.signature, transcript)
        except InvalidSignature:
            raise HandshakeRejected(f"bad signature for {theirs.node_id!r}") from None
        return theirs.node_id

    def dialer_id(self, theirs: Hello) -> str:
        return self.node_id if self.is_dialer else theirs.node_id
