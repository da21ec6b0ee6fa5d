"""TLS for p2p links: contexts, an in-memory self-signed certificate, and the
channel binding each side feeds into the handshake.

TLS here gives confidentiality and a channel to bind to; it does not
authenticate anyone. The client therefore skips CA and hostname checks, and
the Ed25519 handshake (see `p2p.handshake`) proves identity and binds itself
to the server certificate actually used on this connection.
"""

from __future__ import annotations

import datetime
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2p.handshake import tls_server_end_point

__all__ = ["TlsSetup", "accept_tls", "dial_tls", "make_tls"]

_CERT_VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class TlsSetup:
    """Server and client contexts plus the binding our server certificate gives."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    server_binding: bytes


def _self_signed(node_id: str) -> tuple[bytes, bytes]:
    """A throwaway P-256 certificate (PEM cert, PEM key) for one process run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pbftd-p2p {node_id}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=_CERT_VALID_DAYS))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load_generated(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # The stdlib ssl module loads keys only from files, so the generated pair
    # lives for a moment in a private (0700) directory that is then removed.
    with tempfile.TemporaryDirectory(prefix="pbftd-p2p-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert_path, key_path)


def make_tls(node_id: str, cert_file: Path | None, key_file: Path | None) -> TlsSetup:
    """Build both contexts; generate a certificate when none is configured."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.options |= ssl.OP_NO_RENEGOTIATION
    if cert_file is None or key_file is None:
        cert_pem, key_pem = _self_signed(node_id)
        _load_generated(server, cert_pem, key_pem)
    else:
        cert_pem = cert_file.read_bytes()
        server.load_cert_chain(cert_file, key_file)
    leaf_der = x509.load_pem_x509_certificates(cert_pem)[0].public_bytes(
        serialization.Encoding.DER
    )
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE  # identity is proven by the handshake
    return TlsSetup(server=server, client=client,
                    server_binding=tls_server_end_point(leaf_der))


async def dial_tls(tcp: trio.SocketStream, ctx: ssl.SSLContext) -> tuple[trio.SSLStream, bytes]:
    """Run the client TLS handshake; return the stream and its channel binding."""
    stream = trio.SSLStream(tcp, ctx, https_compatible=True)
    await stream.do_handshake()
    peer_cert = stream.getpeercert(binary_form=True)
    if not peer_cert:
        raise trio.BrokenResourceError("server presented no certificate")
    return stream, tls_server_end_point(peer_cert)


async def accept_tls(tcp: trio.abc.Stream, setup: TlsSetup) -> tuple[trio.SSLStream, bytes]:
    """Run the server TLS handshake; the binding is our own certificate's."""
    stream = trio.SSLStream(tcp, setup.server, server_side=True, https_compatible=True)
    await stream.do_handshake()
    return stream, setup.server_binding
