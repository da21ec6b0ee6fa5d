"""Round trips, atomicity and ranges of NodeStore in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import NodeStore, StoreError, wipe
from tests.storage.conftest import block_bytes, block_hash, cert_bytes, reopen


def put_blocks(store: NodeStore, heights: range) -> None:
    for height in heights:
        with store.batch() as b:
            b.put_block(height, block_hash(height), block_bytes(height), cert_bytes(height))


def test_empty_store_has_no_height(store: NodeStore) -> None:
    assert store.last_height() is None
    assert store.get_block(0) is None
    assert list(store.iter_blocks(0, 100)) == []


def test_every_keyspace_round_trips(store: NodeStore) -> None:
    with store.batch() as b:
        b.put_block(7, block_hash(7), b"block-7", b"cert-7",
                    tx_ids=[b"tx-a", b"tx-b", b"\x00" * 32])
        b.put_state(b"case/1", b"open")
        b.put_state(b"case/2", b"closed")
        b.put_meta("chain_id", b"court-chain")
        b.put_consensus("replica", b"view=3")

    assert store.get_block(7) == b"block-7"
    assert store.get_cert(7) == b"cert-7"
    assert store.get_block_height_by_hash(block_hash(7)) == 7
    assert store.get_tx(b"tx-a") == (7, 0)
    assert store.get_tx(b"tx-b") == (7, 1)
    assert store.get_tx(b"\x00" * 32) == (7, 2)
    assert store.get_tx(b"tx-missing") is None
    assert store.get_state(b"case/1") == b"open"
    assert store.get_meta("chain_id") == b"court-chain"
    assert store.get_consensus("replica") == b"view=3"
    assert store.last_height() == 7


def test_keyspaces_do_not_alias(store: NodeStore) -> None:
    """The same name in two keyspaces is two records."""
    with store.batch() as b:
        b.put_meta("replica", b"meta")
        b.put_consensus("replica", b"consensus")
        b.put_state(b"replica", b"state")
    assert store.get_meta("replica") == b"meta"
    assert store.get_consensus("replica") == b"consensus"
    assert store.get_state(b"replica") == b"state"


def test_delete_state_and_iter_state_by_prefix(store: NodeStore) -> None:
    with store.batch() as b:
        for key in (b"a/1", b"a/2", b"a/3", b"b/1", b"a\xff"):
            b.put_state(key, key.upper())
    with store.batch() as b:
        b.delete_state(b"a/2")
    assert list(store.iter_state(b"a/")) == [(b"a/1", b"A/1"), (b"a/3", b"A/3")]
    assert [k for k, _ in store.iter_state()] == [b"a/1", b"a/3", b"a\xff", b"b/1"]
    assert list(store.iter_state(b"zz")) == []
    assert store.get_state(b"a/2") is None


def test_iter_state_from_a_start_key_stays_within_the_prefix(store: NodeStore) -> None:
    with store.batch() as b:
        for key in (b"a/1", b"a/2", b"a/3", b"b/1"):
            b.put_state(key, key.upper())
    assert [k for k, _ in store.iter_state(b"a/", b"a/2")] == [b"a/2", b"a/3"]
    assert [k for k, _ in store.iter_state(b"a/", b"a/25")] == [b"a/3"]
    assert [k for k, _ in store.iter_state(b"a/", b"a/9")] == []
    assert [k for k, _ in store.iter_state(b"a/", b"")] == [b"a/1", b"a/2", b"a/3"]


def test_iter_state_does_not_leak_into_next_keyspace(store: NodeStore) -> None:
    """``s/`` is followed by ``t/``; an empty prefix must stop at the boundary."""
    with store.batch() as b:
        b.put_block(1, block_hash(1), b"blk", b"cert", tx_ids=[b"tx"])
    assert list(store.iter_state()) == []


def test_exception_inside_batch_writes_nothing(store: NodeStore) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.batch() as b:
        b.put_block(1, block_hash(1), b"blk", b"cert", tx_ids=[b"tx"])
        b.put_state(b"k", b"v")
        b.put_meta("m", b"v")
        raise RuntimeError("boom")
    assert store.get_block(1) is None
    assert store.get_block_height_by_hash(block_hash(1)) is None
    assert store.get_tx(b"tx") is None
    assert store.get_state(b"k") is None
    assert store.get_meta("m") is None
    assert store.last_height() is None


def test_invalid_argument_adds_nothing_to_the_batch(store: NodeStore) -> None:
    """A caller that swallows a ValueError must not commit half a block."""
    with store.batch() as b:
        with pytest.raises(ValueError, match="block hash"):
            b.put_block(1, b"short", b"blk", b"cert")
        with pytest.raises(ValueError, match="tx id"):
            b.put_block(2, block_hash(2), b"blk", b"cert", tx_ids=[b""])
        with pytest.raises(TypeError, match="bytes"):
            b.put_state(b"k", "not bytes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="height"):
            b.put_block(-1, block_hash(3), b"blk", b"cert")
        with pytest.raises(ValueError, match="height"):
            b.put_block(True, block_hash(3), b"blk", b"cert")
    assert store.get_block(1) is None
    assert store.get_cert(2) is None
    assert store.last_height() is None


def test_batch_cannot_be_reused(store: NodeStore) -> None:
    with store.batch() as b:
        b.put_meta("m", b"1")
    with pytest.raises(RuntimeError, match="already committed"):
        b.put_meta("m", b"2")
    assert store.get_meta("m") == b"1"


def test_sync_helpers_write_durably(store: NodeStore, data_dir: Path) -> None:
    store.put_consensus_sync("replica", b"view=9")
    store.put_meta_sync("note", b"x")
    store.close()
    with reopen(data_dir) as again:
        assert again.get_consensus("replica") == b"view=9"
        assert again.get_meta("note") == b"x"


def test_last_height_is_the_maximum_written(store: NodeStore) -> None:
    put_blocks(store, range(0, 5))
    with store.batch() as b:  # a lower height (e.g. state transfer back-fill) keeps the max
        b.put_block(2, block_hash(2), block_bytes(2), cert_bytes(2))
    assert store.last_height() == 4
    with store.batch() as b:
        b.put_block(9, block_hash(9), b"9", b"c9")
        b.put_block(8, block_hash(8), b"8", b"c8")
    assert store.last_height() == 9


def test_last_height_survives_reopen(store: NodeStore, data_dir: Path) -> None:
    put_blocks(store, range(0, 300))
    store.close()
    with reopen(data_dir) as again:
        assert again.last_height() == 299
        assert again.get_block(299) == block_bytes(299)


def test_last_height_ignores_keys_after_the_block_keyspace(store: NodeStore) -> None:
    """``c/`` keys sort right after ``b/``; the scan must not read one as a block."""
    with store.batch() as b:
        b.put_block(3, block_hash(3), b"b3", b"c3")
        b.put_state(b"\xff" * 8, b"v")
    store.close()
    with reopen(store.data_dir) as again:
        assert again.last_height() == 3


def test_iter_blocks_bounds_are_inclusive(store: NodeStore) -> None:
    put_blocks(store, range(0, 10))
    assert [h for h, _ in store.iter_blocks(3, 6)] == [3, 4, 5, 6]
    assert [h for h, _ in store.iter_blocks(0, 0)] == [0]
    assert [h for h, _ in store.iter_blocks(8, 100)] == [8, 9]
    assert list(store.iter_blocks(6, 3)) == []
    assert list(store.iter_blocks(10, 20)) == []
    assert dict(store.iter_blocks(0, 9)) == {h: block_bytes(h) for h in range(10)}


def test_iter_blocks_orders_by_height_across_byte_boundaries(store: NodeStore) -> None:
    heights = [255, 256, 65535, 65536, 2**32, 2**64 - 1]
    for height in heights:
        with store.batch() as b:
            b.put_block(height, block_hash(height), b"%d" % height, b"c")
    assert [h for h, _ in store.iter_blocks(0, 2**64 - 1)] == heights
    assert [h for h, _ in store.iter_blocks(256, 65536)] == [256, 65535, 65536]
    assert store.last_height() == 2**64 - 1


def test_close_is_idempotent_and_reads_after_close_raise(store: NodeStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_block(0)
    with pytest.raises(StoreError, match="closed"):
        store.batch()


def test_wipe_removes_the_database(store: NodeStore, data_dir: Path) -> None:
    put_blocks(store, range(0, 3))
    store.close()
    wipe(data_dir)
    assert not (data_dir / "db").exists()
    with reopen(data_dir) as fresh:
        assert fresh.last_height() is None
        assert fresh.get_block(0) is None


def test_unsynced_mode_still_round_trips(data_dir: Path) -> None:
    with NodeStore.open(data_dir, sync_writes=False, ballast_bytes=0) as store:
        put_blocks(store, range(0, 3))
    with reopen(data_dir) as again:
        assert again.last_height() == 2


def test_consensus_records_iterate_and_delete(tmp_path):
    from storage import NodeStore

    with NodeStore.open(tmp_path, ballast_bytes=0) as store:
        with store.batch() as b:
            b.put_consensus("view", b"\x01")
            b.put_consensus("entry/00000000000000000001", b"e1")
            b.put_state(b"k", b"v")
        with store.batch() as b:
            b.delete_consensus("view")
        assert dict(store.iter_consensus()) == {"entry/00000000000000000001": b"e1"}


class _CountingDb:
    """Wraps the Rdict to count WAL syncs and synced writes."""

    def __init__(self, db: object) -> None:
        self._db = db
        self.wal_syncs = 0
        self.synced_writes = 0

    def write(self, batch: object, options: object) -> None:
        self.synced_writes += bool(getattr(options, "sync", False))
        self._db.write(batch, options)  # type: ignore[attr-defined]

    def flush_wal(self, sync: bool) -> None:
        self.wal_syncs += 1
        self._db.flush_wal(sync)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def test_a_group_commit_syncs_the_wal_once(store: NodeStore, data_dir: Path) -> None:
    counting = _CountingDb(store._db)
    store._db = counting  # type: ignore[assignment]
    with store.group_commit():
        put_blocks(store, range(1, 6))
        store.put_meta_sync("note", b"inside")
        assert store.get_block(5) == block_bytes(5)  # readable before the sync
        assert counting.wal_syncs == 0
    assert counting.wal_syncs == 1 and counting.synced_writes == 0
    with store.group_commit():
        pass  # nothing written: nothing to sync
    assert counting.wal_syncs == 1
    put_blocks(store, range(6, 7))  # outside a group every write is synced again
    assert counting.synced_writes == 1
    store._db = counting._db  # type: ignore[assignment]
    store.close()
    again = reopen(data_dir)
    try:
        assert again.last_height() == 6
        assert again.get_meta("note") == b"inside"
    finally:
        again.close()


def test_an_exception_in_a_group_skips_the_sync(store: NodeStore) -> None:
    counting = _CountingDb(store._db)
    store._db = counting  # type: ignore[assignment]
    with pytest.raises(RuntimeError), store.group_commit():
        put_blocks(store, range(1, 2))
        raise RuntimeError("boom")
    assert counting.wal_syncs == 0
    with store.group_commit():  # the store is usable, and the next group syncs
        put_blocks(store, range(2, 3))
    assert counting.wal_syncs == 1
    store._db = counting._db  # type: ignore[assignment]


def test_group_commits_do_not_nest(store: NodeStore) -> None:
    with store.group_commit(), pytest.raises(AssertionError), store.group_commit():
        pass


def test_get_states_answers_each_key_in_order(store: NodeStore) -> None:
    """The multi-get a block's at-most-once check uses: one answer per key,
    in the order asked, repeats and misses included."""
    with store.batch() as b:
        b.put_state(b"req/a", b"1")
        b.put_state(b"req/c", b"3")
        b.put_meta("req/b", b"not state")
    assert store.get_states([b"req/c", b"req/b", b"req/a", b"req/c"]) == [b"3", None, b"1", b"3"]
    assert store.get_states([]) == []
    with pytest.raises(ValueError):
        store.get_states([b""])


def test_memory_bytes_reports_rocksdb_memory_by_kind(store: NodeStore) -> None:
    before = store.memory_bytes()
    assert set(before) == {"memtables", "block_cache", "table_readers"}
    put_blocks(store, range(1, 50))
    assert store.memory_bytes()["memtables"] > before["memtables"]
