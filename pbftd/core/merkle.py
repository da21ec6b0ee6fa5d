"""Merkle trees over transaction ids, as RFC 6962 (Certificate Transparency).

Leaves and inner nodes are hashed with different prefixes (0x00 / 0x01) so a
leaf can never be passed off as an inner node.  The same construction is
specified in docs/PROOFS.md so that verifiers in other languages agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .crypto import sha256

__all__ = ["EMPTY_ROOT", "leaf_hash", "merkle_root", "merkle_root_and_path", "verify_path"]

EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


# Trees over a whole block hash with hashlib inline, not through leaf_hash
# and _node: a Python call fewer per hash, and every node builds two trees
# over a block's transactions (tx_root, and the executed tx ids in the state
# root): 1.29 -> 1.10 ms for 1,000 leaves.
_SHA256 = hashlib.sha256


def _next_level(level: list[bytes]) -> list[bytes]:
    """Pair a level's nodes left to right; an odd last node moves up as it is.
    Bottom-up pairing gives the same tree as RFC 6962's recursive split."""
    pairs = iter(level)  # zip takes two at a time; an odd last node is left over
    up = [_SHA256(b"\x01" + left + right).digest()
          for left, right in zip(pairs, pairs, strict=False)]
    if len(level) % 2:
        up.append(level[-1])
    return up


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    level = list(hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    return _root_of_hashes([_SHA256(b"\x00" + x).digest() for x in leaves])


def merkle_root_and_path(leaves: Sequence[bytes], index: int) -> tuple[bytes, list[bytes]]:
    """The root and the audit path of ``leaves[index]`` (nearest sibling
    first), from one pass that hashes each leaf and inner node once.

    Computed apart, a proof from a 1,000-transaction block hashed every leaf
    twice and about half the inner nodes again (evidence.getProof)."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    level = [_SHA256(b"\x00" + x).digest() for x in leaves]
    path: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):  # else the node moves up unpaired: no sibling here
            path.append(level[sibling])
        level = _next_level(level)
        index //= 2
    return level[0], path


def verify_path(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2 inclusion check."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    node = leaf_hash(leaf)
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = _node(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = _node(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root
