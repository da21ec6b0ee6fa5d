"""Merkle trees (RFC 6962/9162) and blocks built from committed batches."""

from __future__ import annotations

import dataclasses

import pytest

from pbftd.core.chain import BlockHeader, ChainTip, batch_txs, execute_batch
from pbftd.core.crypto import sha256
from pbftd.core.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    merkle_root,
    merkle_root_and_path,
    verify_path,
)
from pbftd.core.messages import Batch, Request, Submit
from tests.core.harness import CHAIN_ID, GENESIS_HASH, GENESIS_TIME_MS, Peers

SIZES = range(1, 41)


def merkle_path(leaves: list[bytes], index: int) -> list[bytes]:
    return merkle_root_and_path(leaves, index)[1]


def _leaves(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written from the text as an independent oracle."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + _rfc6962_root(leaves[:k]) + _rfc6962_root(leaves[k:]))


def _rfc6962_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n]), from the text: the oracle for
    the one-pass, bottom-up path."""
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if index < k:
        return [*_rfc6962_path(index, leaves[:k]), _rfc6962_root(leaves[k:])]
    return [*_rfc6962_path(index - k, leaves[k:]), _rfc6962_root(leaves[:k])]


def _directions(index: int, size: int) -> list[str]:
    """Which side each audit-path sibling sits on, leaf first (RFC 6962 PATH)."""
    if size == 1:
        return []
    k = 1
    while k * 2 < size:
        k *= 2
    if index < k:
        return [*_directions(index, k), "right"]
    return [*_directions(index - k, size - k), "left"]


# --------------------------------------------------------------------------
# merkle


def test_empty_tree_root_is_hash_of_nothing():
    assert merkle_root([]) == EMPTY_ROOT == sha256(b"")


@pytest.mark.parametrize("n", SIZES)
def test_merkle_root_matches_rfc6962(n):
    assert merkle_root(_leaves(n)) == _rfc6962_root(_leaves(n))


def test_leaf_and_node_hashes_are_domain_separated():
    a, b = b"a", b"b"
    root2 = merkle_root([a, b])
    # a single leaf whose bytes are the two child hashes must not collide
    assert merkle_root([leaf_hash(a) + leaf_hash(b)]) != root2
    assert leaf_hash(a) != sha256(a)


@pytest.mark.parametrize("n", [*SIZES, 63, 64, 65, 100, 127, 129])
def test_root_and_path_in_one_pass_match_rfc6962(n):
    leaves = _leaves(n)
    for i in range(n):
        assert merkle_root_and_path(leaves, i) == (_rfc6962_root(leaves),
                                                   _rfc6962_path(i, leaves)), (n, i)


@pytest.mark.parametrize("n", SIZES)
def test_merkle_path_verifies_for_every_index(n):
    leaves = _leaves(n)
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        path = merkle_path(leaves, i)
        assert verify_path(leaf, i, n, path, root), (n, i)


@pytest.mark.parametrize("n", SIZES)
def test_merkle_path_fails_for_changed_leaf_index_or_size(n):
    leaves = _leaves(n)
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        path = merkle_path(leaves, i)
        assert not verify_path(leaf + b"!", i, n, path, root)
        for j in range(n):
            if j != i and leaves[j] != leaf:
                assert not verify_path(leaf, j, n, path, root), (n, i, j)
        for size in range(1, 2 * n + 2):
            if size == n:
                continue
            # A size is only bound through the shape of the path it implies: a
            # size with the same left/right shape for this index computes the
            # very same root (RFC 9162 verifiers trust the size signed with the
            # root).  Any other size must fail.
            same_shape = i < size and _directions(i, size) == _directions(i, n)
            assert verify_path(leaf, i, size, path, root) == same_shape, (n, i, size)
        assert not verify_path(leaf, i, n, path, sha256(root))
        if path:
            assert not verify_path(leaf, i, n, path[:-1], root)
            assert not verify_path(leaf, i, n, [*path, path[-1]], root)
            flipped = bytes([path[0][0] ^ 1]) + path[0][1:]
            assert not verify_path(leaf, i, n, [flipped, *path[1:]], root)


@pytest.mark.parametrize("index", [-1, 5, 6])
def test_merkle_path_refuses_out_of_range_index(index):
    leaves = _leaves(5)
    with pytest.raises(IndexError):
        merkle_path(leaves, index)
    assert not verify_path(b"leaf-0", index, 5, [], merkle_root(leaves))


def test_single_leaf_tree_has_an_empty_path():
    leaves = _leaves(1)
    assert merkle_path(leaves, 0) == []
    assert verify_path(leaves[0], 0, 1, [], merkle_root(leaves))
    assert not verify_path(leaves[0], 0, 0, [], merkle_root(leaves))


# --------------------------------------------------------------------------
# blocks


PEERS = Peers(4)
GENESIS = ChainTip.genesis(GENESIS_HASH, GENESIS_TIME_MS)


def _sub(origin: str, sid: int, *reqs: tuple[str, str, bytes]) -> Submit:
    return Submit.create(PEERS.signers[origin], CHAIN_ID, origin, sid,
                         tuple(Request(c, r, p) for c, r, p in reqs))


def _never(_key: object) -> bool:
    return False


def test_block_executes_every_new_request_in_order():
    batch = Batch(1, 0, "n0", 5_000, (_sub("n1", 1, ("c", "r1", b"a"), ("c", "r2", b"b")),
                                      _sub("n2", 1, ("d", "r1", b"c"))))
    block = execute_batch(CHAIN_ID, GENESIS, batch, _never)
    assert [(t.origin, t.client, t.rid) for t in block.fresh] == [
        ("n1", "c", "r1"), ("n1", "c", "r2"), ("n2", "d", "r1")]
    assert block.header.tx_count == 3
    assert block.header.tx_root == batch.tx_root()
    assert block.header.prev_hash == GENESIS_HASH
    assert block.header.height == 1


def test_duplicate_request_within_a_batch_is_kept_but_not_executed_twice():
    batch = Batch(1, 0, "n0", 5_000, (_sub("n1", 1, ("c", "r1", b"a")),
                                      _sub("n1", 2, ("c", "r1", b"other payload"))))
    block = execute_batch(CHAIN_ID, GENESIS, batch, _never)
    assert [t.payload for t in block.fresh] == [b"a"]
    assert len(block.txs) == 2 and block.header.tx_count == 2


def test_same_client_and_request_id_from_another_origin_is_not_a_duplicate():
    batch = Batch(1, 0, "n0", 5_000, (_sub("n1", 1, ("c", "r1", b"a")),
                                      _sub("n2", 1, ("c", "r1", b"a"))))
    assert len(execute_batch(CHAIN_ID, GENESIS, batch, _never).fresh) == 2


def test_request_executed_in_an_earlier_block_is_skipped():
    first = Batch(1, 0, "n0", 5_000, (_sub("n1", 1, ("c", "r1", b"a")),))
    b1 = execute_batch(CHAIN_ID, GENESIS, first, _never)
    seen = {t.key for t in b1.fresh}
    second = Batch(2, 0, "n0", 6_000, (_sub("n1", 7, ("c", "r1", b"a"), ("c", "r2", b"b")),))
    b2 = execute_batch(CHAIN_ID, b1.tip, second, seen.__contains__)
    assert [t.rid for t in b2.fresh] == ["r2"]
    # the skipped duplicate changes the state root exactly as if it were absent
    alone = Batch(2, 0, "n0", 6_000, (_sub("n1", 7, ("c", "r2", b"b")),))
    b2_alone = execute_batch(CHAIN_ID, b1.tip, alone, seen.__contains__)
    assert b2.header.state_root == b2_alone.header.state_root
    assert b2.header.tx_root != b2_alone.header.tx_root


def test_a_blocks_results_name_the_transaction_that_executed_each_key():
    """What an RPC caller is answered: a key executed in this block gets
    this block's height and its first transaction; a duplicate of a key
    executed earlier gets the earlier result, not the duplicate's tx id."""
    first = Batch(1, 0, "n0", 5_000, (_sub("n1", 1, ("c", "r1", b"a")),))
    b1 = execute_batch(CHAIN_ID, GENESIS, first, _never)
    earlier = {t.key: (1, t.tx_id) for t in b1.fresh}
    second = Batch(2, 0, "n0", 6_000, (_sub("n1", 7, ("c", "r1", b"a"), ("c", "r2", b"b")),
                                       _sub("n1", 8, ("c", "r2", b"b"))))
    b2 = execute_batch(CHAIN_ID, b1.tip, second, earlier.__contains__)
    keys = [t.key for t in b2.txs]
    r2 = next(t for t in b2.txs if t.rid == "r2")
    assert b2.results(keys, earlier.get) == {("n1", "c", "r1"): earlier[("n1", "c", "r1")],
                                             ("n1", "c", "r2"): (2, r2.tx_id)}
    assert r2.sid == 7  # the first of its two copies
    assert b2.results([("n1", "c", "r9")], earlier.get) == {}


@pytest.mark.parametrize(("batch_time", "prev_time", "expected"), [
    (5_000, 1_000, 5_000),   # the primary's time when it moves forward
    (1_000, 1_000, 1_001),   # never equal to the previous block's
    (500, 1_000, 1_001),     # never before it
    (0, 7_000, 7_001),       # a null batch from a NEW-VIEW has no time
])
def test_block_time_is_max_of_batch_time_and_previous_plus_one(batch_time, prev_time,
                                                              expected):
    tip = ChainTip(3, b"\x01" * 32, prev_time, b"\x02" * 32)
    batch = Batch(4, 1, "n1", batch_time, ())
    header = execute_batch(CHAIN_ID, tip, batch, _never).header
    assert header.time_ms == expected
    assert header.batch_time_ms == batch_time


def test_block_height_must_follow_the_tip():
    with pytest.raises(AssertionError):
        execute_batch(CHAIN_ID, GENESIS, Batch(2, 0, "n0", 5_000, ()), _never)


def test_blocks_are_hash_linked_and_deterministic():
    batches = [Batch(s, 0, "n0", 5_000 + s, (_sub("n1", s, ("c", f"r{s}", b"x")),))
               for s in (1, 2, 3)]
    def build() -> list[bytes]:
        tip, hashes = GENESIS, []
        for b in batches:
            blk = execute_batch(CHAIN_ID, tip, b, _never)
            assert blk.header.prev_hash == tip.block_hash
            tip = blk.tip
            hashes.append(blk.block_hash)
        return hashes
    assert build() == build()
    assert len(set(build())) == 3


def _header() -> BlockHeader:
    batch = Batch(1, 2, "n2", 5_000, (_sub("n1", 1, ("c", "r1", b"a")),))
    return execute_batch(CHAIN_ID, GENESIS, batch, _never).header


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(BlockHeader)])
def test_header_hash_changes_when_any_field_changes(field):
    header = _header()
    value = getattr(header, field)
    if isinstance(value, bytes):
        changed = bytes([value[0] ^ 1]) + value[1:]
    elif isinstance(value, int):
        changed = value + 1
    else:
        changed = value + "x"
    assert dataclasses.replace(header, **{field: changed}).hash() != header.hash()


def test_header_batch_digest_equals_the_batch_digest_commits_sign():
    for batch in (Batch(1, 2, "n2", 5_000, (_sub("n1", 1, ("c", "r1", b"a")),)),
                  Batch.null(1, 3, "n3")):
        header = execute_batch(CHAIN_ID, GENESIS, batch, _never).header
        assert header.batch_digest() == batch.digest(CHAIN_ID)
        assert header.batch_digest() != batch.digest("another-chain")


def test_batch_txs_are_the_canonical_transaction_bytes():
    batch = Batch(1, 0, "n0", 5_000, (_sub("n1", 1, ("c", "r1", b"a")),))
    assert [t.encode() for t in batch_txs(batch)] == batch.txs()
