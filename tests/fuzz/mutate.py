"""Near-valid peer frames: one valid frame with one node of its CBOR tree
replaced by hostile bytes, at any depth (ByzzFuzz's small-scope mutations).

A frame is ``[signed, sig, extra]`` and bodies hold more envelopes
``[signed, sig]`` (checkpoint proofs, prepared certificates, view changes in
a NEW-VIEW, commits in BLOCKS, submissions in batches).  ``paths`` lists
every node, descending into each envelope's signed bytes (``SIGNED``), and
``rebuild`` re-encodes the tree with the hostile bytes spliced in at one
path and **re-signs every envelope on the way up** with its sender's real
key, so only the encoding and field checks can refuse the result.

The splice is exact: the node is replaced by a unique byte-string sentinel,
the parent is encoded canonically (map order depends on keys only) and the
sentinel's encoding is swapped for the raw bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

import cbor2

from pbftd.core.messages import DOMAIN

__all__ = ["ENCODING_FAULTS", "SIGNED", "TYPE_FAULTS", "encoding_fault", "paths", "rebuild",
           "type_fault"]

SIGNED = "<signed>"
_SENTINEL = b"\xfe\xed" + b"splice-sentinel!"
Path = tuple[Any, ...]


def _head(node: Any) -> list[Any] | None:
    """The decoded signed part if ``node`` is an envelope or frame, else None."""
    if type(node) is not list or len(node) not in (2, 3):
        return None
    if type(node[0]) is not bytes or type(node[1]) is not bytes or len(node[1]) != 64:
        return None
    try:
        head = cbor2.loads(node[0])
    except Exception:  # only our own valid frames come here
        return None
    if type(head) is list and len(head) == 5 and head[0] == DOMAIN:
        return head
    return None


def paths(node: Any, path: Path = ()) -> Iterator[Path]:
    """Every node of the tree (the root too), envelopes opened via SIGNED."""
    yield path
    head = _head(node)
    if head is not None:
        yield from paths(head, (*path, SIGNED))
        for i in range(1, len(node)):  # the signature and (for frames) extra
            yield from paths(node[i], (*path, i))
    elif type(node) is list:
        for i, item in enumerate(node):
            yield from paths(item, (*path, i))
    elif type(node) is dict:
        for key in node:
            yield from paths(node[key], (*path, key))


def get(node: Any, path: Path) -> Any:
    for step in path:
        node = _head(node) if step == SIGNED else node[step]
    return node


def rebuild(node: Any, path: Path, raw: bytes, sign: Callable[[str, bytes], bytes]) -> bytes:
    """The CBOR of ``node`` with the node at ``path`` encoded as ``raw``."""
    if not path:
        return raw
    step, rest = path[0], path[1:]
    if step == SIGNED:
        head = _head(node)
        assert head is not None
        signed = rebuild(head, rest, raw, sign)
        sender = head[3]
        return cbor2.dumps([signed, sign(sender, signed), *node[2:]], canonical=True)
    child = rebuild(node[step], rest, raw, sign)
    parent = list(node) if type(node) is list else dict(node)
    parent[step] = _SENTINEL
    encoded = cbor2.dumps(parent, canonical=True)
    marker = cbor2.dumps(_SENTINEL)
    assert encoded.count(marker) == 1
    return encoded.replace(marker, child)


# --------------------------------------------------------------------------
# hostile encodings: refused by the codec whatever field they are in


def _uint_forms(value: int, major: int) -> list[bytes]:
    """Every non-shortest spelling of an unsigned/negative int argument."""
    forms = []
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            forms.append(bytes([major << 5 | ai]) + value.to_bytes(size, "big"))
    shortest = cbor2.dumps(value if major == 0 else -1 - value)
    return [f for f in forms if f != shortest]


def _indefinite(value: Any) -> bytes | None:
    if type(value) is list:
        return b"\x9f" + b"".join(cbor2.dumps(v, canonical=True) for v in value) + b"\xff"
    if type(value) is dict:
        body = cbor2.dumps(value, canonical=True)
        return b"\xbf" + body[_head_len(body):] + b"\xff"
    if type(value) is bytes:
        return b"\x5f" + cbor2.dumps(value) + b"\xff"
    if type(value) is str:
        return b"\x7f" + cbor2.dumps(value) + b"\xff"
    return None


def _head_len(encoded: bytes) -> int:
    ai = encoded[0] & 0x1F
    return 1 + {24: 1, 25: 2, 26: 4, 27: 8}.get(ai, 0)


def _map_entries(value: dict[str, Any]) -> list[bytes]:
    return sorted((cbor2.dumps(k) + cbor2.dumps(v, canonical=True) for k, v in value.items()),
                  key=lambda e: (len(cbor2.dumps(next(iter(cbor2.loads(b"\xa1" + e))))), e))


def _dup_key(value: Any) -> bytes | None:
    if type(value) is not dict or not value:
        return None
    key, item = next(iter(sorted(value.items())))
    entries = [cbor2.dumps(k) + cbor2.dumps(v, canonical=True) for k, v in value.items()]
    entries.append(cbor2.dumps(key) + cbor2.dumps(item, canonical=True))
    return _map_head(len(entries)) + b"".join(entries)


def _unsorted(value: Any) -> bytes | None:
    if type(value) is not dict or len(value) < 2:
        return None
    canonical = cbor2.dumps(value, canonical=True)
    keys = sorted(value, key=lambda k: (len(cbor2.dumps(k)), cbor2.dumps(k)))
    entries = [cbor2.dumps(k) + cbor2.dumps(value[k], canonical=True) for k in reversed(keys)]
    out = _map_head(len(entries)) + b"".join(entries)
    return out if out != canonical else None


def _map_head(n: int) -> bytes:
    return bytes([0xA0 + n]) if n < 24 else bytes([0xB8, n])


def _non_canonical_int(value: Any) -> bytes | None:
    if type(value) is not int:
        return None
    forms = _uint_forms(value, 0) if value >= 0 else _uint_forms(-1 - value, 1)
    return forms[0] if forms else None


ENCODING_FAULTS = [
    "float_half", "float_nan", "float_inf", "float_double", "undefined", "simple",
    "int_2^63", "int_2^64-1", "int_-2^64", "bignum_tag", "tag_datetime", "tag_self_describe",
    "tag_unknown", "shareable", "shared_ref_dangling", "cyclic_shareable", "cyclic_map",
    "indefinite", "duplicate_key", "unsorted_keys", "non_canonical_int", "truncated",
    "trailing",
]


def encoding_fault(name: str, value: Any) -> bytes | None:
    """Hostile bytes for a node holding ``value`` (None: not applicable)."""
    orig = cbor2.dumps(value, canonical=True)
    table: dict[str, Callable[[], bytes | None]] = {
        "float_half": lambda: b"\xf9\x3c\x00",
        "float_nan": lambda: b"\xf9\x7e\x00",
        "float_inf": lambda: b"\xfa\x7f\x80\x00\x00",
        "float_double": lambda: b"\xfb" + struct.pack(">d", 2.5),
        "undefined": lambda: b"\xf7",
        "simple": lambda: b"\xf8\x20",
        "int_2^63": lambda: b"\x1b\x80" + bytes(7),
        "int_2^64-1": lambda: b"\x1b" + b"\xff" * 8,
        "int_-2^64": lambda: b"\x3b" + b"\xff" * 8,
        "bignum_tag": lambda: b"\xc2\x41\x01",
        "tag_datetime": lambda: b"\xc1" + orig,
        "tag_self_describe": lambda: b"\xd9\xd9\xf7" + orig,
        "tag_unknown": lambda: b"\xc6" + orig,
        "shareable": lambda: b"\xd8\x1c" + orig,
        "shared_ref_dangling": lambda: b"\xd8\x1d\x05",
        "cyclic_shareable": lambda: b"\xd8\x1c\x81\xd8\x1d\x00",          # a = [a]
        "cyclic_map": lambda: b"\xd8\x1c\xa1\x61k\xd8\x1d\x00",           # m = {"k": m}
        "indefinite": lambda: _indefinite(value),
        "duplicate_key": lambda: _dup_key(value),
        "unsorted_keys": lambda: _unsorted(value),
        "non_canonical_int": lambda: _non_canonical_int(value),
        "truncated": lambda: orig[:-1] if len(orig) > 1 else None,
        "trailing": lambda: orig + b"\x00",
    }
    return table[name]()


# --------------------------------------------------------------------------
# type confusion: canonical, but the wrong kind of value for most fields

TYPE_FAULTS: list[Any] = [
    True, False, None, 0, -1, 2**63 - 1, -(2**63), b"", b"\x00" * 31, b"\x00" * 33,
    b"\x00" * 70_000, "", "x", "x" * 200, [], [0], [[]], {}, {"a": 1}, "n0", "pbftd/1",
]


def type_fault(index: int) -> bytes:
    return cbor2.dumps(TYPE_FAULTS[index], canonical=True)
