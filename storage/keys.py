"""Key and value layout of the store: pure byte encoding, no I/O.

Every record lives in RocksDB's single default column family under a two-byte
prefix. Prefixes rather than column families, because:

* a batch must be atomic across keyspaces, and one column family gives that
  with the plainest WriteBatch;
* every column family has its own memtable, so `write_buffer_bytes` (and the
  WAL it pins, which sets how much free space a reopen after ENOSPC needs)
  would be multiplied by the number of keyspaces;
* opening never depends on a list of column families that must match the
  code's version.

Heights are 8-byte big-endian so that byte order is height order and range
scans over ``b/`` walk blocks in sequence. Every part of a key is checked
here, because a malformed key silently aliases another record.
"""

from __future__ import annotations

import json
import struct

__all__ = [
    "APP_KEY_LENGTH_MAX",
    "FORMAT_KEY",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FORMAT_VERSIONS_READ",
    "HASH_LENGTH",
    "HEIGHT_MAX",
    "NAME_LENGTH_MAX",
    "PREFIX_BLOCK",
    "PREFIX_CERT",
    "PREFIX_CONSENSUS",
    "PREFIX_HASH",
    "PREFIX_META",
    "PREFIX_STATE",
    "PREFIX_TX",
    "PREFIX_VERSION",
    "TX_ID_LENGTH_MAX",
    "block_key",
    "cert_key",
    "check_value",
    "consensus_key",
    "decode_height",
    "decode_tx_value",
    "encode_format_marker",
    "encode_height",
    "encode_tx_index",
    "encode_tx_value",
    "hash_key",
    "meta_key",
    "prefix_end",
    "state_key",
    "tx_key",
]

PREFIX_BLOCK = b"b/"  # height -> block bytes
PREFIX_CERT = b"c/"  # height -> commit certificate bytes
PREFIX_HASH = b"h/"  # 32-byte block hash -> height
PREFIX_CONSENSUS = b"m/"  # name -> consensus state bytes (e.g. "replica")
PREFIX_STATE = b"s/"  # application key -> value
PREFIX_TX = b"t/"  # tx id -> height, index (format 1 also held the tx bytes)
PREFIX_VERSION = b"v/"  # store format marker, kept apart from caller keyspaces
PREFIX_META = b"x/"  # name -> metadata bytes

FORMAT_KEY = PREFIX_VERSION + b"format"
FORMAT_NAME = "pbftd-store"
# 2: a ``t/`` record no longer repeats the transaction's bytes (the block
# holds them), and the evidence index record is an array without the tx id
# (pbftd/evidence.py).  This build reads format 1 stores too (a format 1
# ``t/`` record is the same header followed by the bytes, which are
# ignored; evidence.decode_record reads both index shapes) and marks them 2
# on open, so an older build refuses them from then on.
FORMAT_VERSION = 2
FORMAT_VERSIONS_READ = (1, 2)

HEIGHT_MAX = 2**64 - 1
HASH_LENGTH = 32
TX_INDEX_MAX = 2**32 - 1
TX_ID_LENGTH_MAX = 128
APP_KEY_LENGTH_MAX = 1024
NAME_LENGTH_MAX = 256

_TX_HEADER = struct.Struct(">QI")


def encode_format_marker() -> bytes:
    """The marker value: JSON so that an operator can read it with any RocksDB tool."""
    marker = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
    return json.dumps(marker, sort_keys=True).encode()


def encode_height(height: int) -> bytes:
    if type(height) is not int or not 0 <= height <= HEIGHT_MAX:
        raise ValueError(f"height must be an int in 0..2**64-1, got {height!r}")
    return height.to_bytes(8, "big")


def decode_height(raw: bytes) -> int:
    assert len(raw) == 8, f"stored height has {len(raw)} bytes, want 8"
    return int.from_bytes(raw, "big")


def block_key(height: int) -> bytes:
    return PREFIX_BLOCK + encode_height(height)


def cert_key(height: int) -> bytes:
    return PREFIX_CERT + encode_height(height)


def hash_key(block_hash: bytes) -> bytes:
    _check_bytes("block hash", block_hash, HASH_LENGTH, HASH_LENGTH)
    return PREFIX_HASH + block_hash


def tx_key(tx_id: bytes) -> bytes:
    _check_bytes("tx id", tx_id, 1, TX_ID_LENGTH_MAX)
    return PREFIX_TX + tx_id


def state_key(key: bytes) -> bytes:
    _check_bytes("state key", key, 1, APP_KEY_LENGTH_MAX)
    return PREFIX_STATE + key


def consensus_key(name: str) -> bytes:
    return PREFIX_CONSENSUS + _encode_name(name)


def meta_key(name: str) -> bytes:
    return PREFIX_META + _encode_name(name)


def encode_tx_value(height: int, index: int) -> bytes:
    return encode_height(height) + encode_tx_index(index)


def encode_tx_index(index: int) -> bytes:
    if type(index) is not int or not 0 <= index <= TX_INDEX_MAX:
        raise ValueError(f"tx index must be an int in 0..2**32-1, got {index!r}")
    return index.to_bytes(4, "big")


def decode_tx_value(raw: bytes) -> tuple[int, int]:
    """(height, index); a format 1 record's trailing tx bytes are ignored."""
    assert len(raw) >= _TX_HEADER.size, "stored tx record is shorter than its header"
    height, index = _TX_HEADER.unpack_from(raw)
    return height, index


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix`, or None if unbounded."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_value(what: str, value: bytes) -> None:
    """Values are opaque bytes; anything else is a caller bug that would be stored wrongly."""
    if type(value) is not bytes:
        raise TypeError(f"{what} must be bytes, got {type(value).__name__}")


def _check_bytes(what: str, value: bytes, length_min: int, length_max: int) -> None:
    check_value(what, value)
    if not length_min <= len(value) <= length_max:
        raise ValueError(f"{what} must be {length_min}..{length_max} bytes, got {len(value)}")


def _encode_name(name: str) -> bytes:
    if type(name) is not str:
        raise TypeError(f"name must be str, got {type(name).__name__}")
    raw = name.encode("utf-8")
    if not 1 <= len(raw) <= NAME_LENGTH_MAX:
        raise ValueError(f"name must be 1..{NAME_LENGTH_MAX} UTF-8 bytes, got {len(raw)}")
    return raw
