"""Node keys and API tokens.

Each court's node signs consensus messages with one Ed25519 key. The private
key lives in its own PEM (PKCS#8) file with mode 0600, named by config.toml;
its raw 32-byte public key, in hex, is what genesis.json lists. API bearer
tokens are random strings shown once to the operator; the config keeps only
their SHA-256, so the config file itself is not a secret.
"""

import hashlib
import secrets
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from config.errors import ConfigError
from config.secret_files import read_secret_file, write_secret_file

TOKEN_BYTES = 32


def generate_key_file(path: str | Path) -> Ed25519PrivateKey:
    """Create a new key file (mode 0600, never overwriting) and return the key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(path, pem)
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Load a node key, refusing a file others can read or a key of another kind."""
    pem = read_secret_file(path)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ConfigError(f"{path}: not an unencrypted PEM private key: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: expected an Ed25519 key, got {type(key).__name__}")
    return key


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key in lowercase hex, as genesis.json lists it."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    """The inverse of ``public_key_hex``, for verifying signatures from genesis keys."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"public key is not hex: {text!r}") from None
    if len(raw) != 32:
        raise ValueError(f"public key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def token_sha256(token: str) -> str:
    """The hash stored in ``[[rpc.tokens]] sha256`` for a bearer token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def generate_token() -> tuple[str, str]:
    """A new bearer token and its SHA-256: show the first once, store the second.

    base64url has '-' in its alphabet, so one token in 64 would start with it
    and read as an option on a command line (``pbftd status --token -Xy..``);
    such draws are thrown away. That costs 0.02 of the token's 256 bits.
    """
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token, token_sha256(token)
