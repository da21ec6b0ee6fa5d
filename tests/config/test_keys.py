"""Key files, the secret-file mode check and bearer tokens."""

import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config import (
    ConfigError,
    check_secret_file,
    generate_key_file,
    generate_token,
    load_private_key,
    public_key_from_hex,
    public_key_hex,
    read_secret_file,
    token_sha256,
    write_secret_file,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generated_key_file_is_private_pem_and_loads_back(tmp_path):
    path = tmp_path / "node.key"
    key = generate_key_file(path)
    assert _mode(path) & 0o077 == 0
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    assert public_key_hex(loaded) == public_key_hex(key)
    signature = loaded.sign(b"pre-prepare")
    public_key_from_hex(public_key_hex(key)).verify(signature, b"pre-prepare")


def test_generate_key_file_never_overwrites(tmp_path):
    path = tmp_path / "node.key"
    first = generate_key_file(path)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate_key_file(path)
    assert public_key_hex(load_private_key(path)) == public_key_hex(first)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o610, 0o601, 0o660])
def test_key_readable_by_others_is_refused_with_the_fix(tmp_path, mode):
    path = tmp_path / "node.key"
    generate_key_file(path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError) as info:
        load_private_key(path)
    assert str(info.value) == (
        f"{path}: mode {mode:04o} lets group or others access this secret; run: chmod 600 {path}"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path, mode):
    path = tmp_path / "node.key"
    generate_key_file(path)
    os.chmod(path, mode)
    check_secret_file(path)
    load_private_key(path)


def test_missing_secret_file(tmp_path):
    with pytest.raises(ConfigError, match="secret file is missing"):
        load_private_key(tmp_path / "absent.key")


def test_directory_is_not_a_secret_file(tmp_path):
    secret_dir = tmp_path / "dir"
    secret_dir.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        check_secret_file(secret_dir)


def test_garbage_key_file_is_refused(tmp_path):
    path = tmp_path / "node.key"
    write_secret_file(path, b"not a key\n")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_private_key(path)


def test_key_of_another_algorithm_is_refused(tmp_path):
    path = tmp_path / "node.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(path, pem)
    with pytest.raises(ConfigError, match="expected an Ed25519 key"):
        load_private_key(path)


def test_public_key_hex_is_raw_32_bytes(tmp_path):
    key = generate_key_file(tmp_path / "k")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public_key_hex(key) == raw.hex()
    assert public_key_hex(key.public_key()) == raw.hex()
    assert len(public_key_hex(key)) == 64


@pytest.mark.parametrize("bad", ["zz" * 32, "ab" * 31])
def test_public_key_from_hex_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        public_key_from_hex(bad)


def test_secret_file_round_trip(tmp_path):
    path = tmp_path / "admin.token"
    write_secret_file(path, b"s3cret\n")
    assert _mode(path) & 0o077 == 0
    assert read_secret_file(path) == b"s3cret\n"


def test_token_hash_is_sha256_of_the_token():
    assert token_sha256("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_generated_tokens_are_random_and_hashed():
    tokens = [generate_token() for _ in range(50)]
    assert len({token for token, _ in tokens}) == 50
    for token, digest in tokens:
        assert digest == hashlib.sha256(token.encode()).hexdigest()
        assert len(token) >= 43  # 32 random bytes, base64url
        assert token.isascii() and " " not in token
