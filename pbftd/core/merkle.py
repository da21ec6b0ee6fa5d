"""Merkle trees over transaction ids, as RFC 6962 (Certificate Transparency).

Leaves and inner nodes are hashed with different prefixes (0x00 / 0x01) so a
leaf can never be passed off as an inner node.  The same construction is
specified in docs/PROOFS.md so that verifiers in other languages agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from .crypto import sha256

__all__ = ["EMPTY_ROOT", "leaf_hash", "merkle_path", "merkle_root", "verify_path"]

EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    level = list(hashes)
    # Bottom-up pairing gives the same root as RFC 6962's recursive split.
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    return _root_of_hashes([leaf_hash(x) for x in leaves])


def merkle_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for ``leaves[index]``, nearest sibling first."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    hashes = [leaf_hash(x) for x in leaves]
    path: list[bytes] = []
    _collect(hashes, index, path)
    return path


def _collect(hashes: list[bytes], index: int, path: list[bytes]) -> None:
    n = len(hashes)
    if n == 1:
        return
    k = _split(n)
    if index < k:
        _collect(hashes[:k], index, path)
        path.append(_root_of_hashes(hashes[k:]))
    else:
        _collect(hashes[k:], index - k, path)
        path.append(_root_of_hashes(hashes[:k]))


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
