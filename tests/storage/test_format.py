"""Opening a directory that holds something else must fail loudly and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from storage import NodeStore, StoreFormatError
from storage.keys import FORMAT_KEY
from tests.storage.conftest import block_hash, reopen


def _raw_db(db_dir: Path, items: dict[bytes, bytes]) -> None:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(db_dir), options)
    for key, value in items.items():
        db[key] = value
    db.close()


def _raw_items(db_dir: Path) -> dict[bytes, bytes]:
    db = Rdict(str(db_dir), Options(raw_mode=True))
    try:
        return dict(db.items())
    finally:
        db.close()


def test_empty_directory_is_initialised_with_the_marker(data_dir: Path) -> None:
    reopen(data_dir).close()
    marker = json.loads(_raw_items(data_dir / "db")[FORMAT_KEY])
    assert marker == {"format": "pbftd-store", "version": 2}
    reopen(data_dir).close()  # and our own marker is accepted


def test_newer_version_is_refused(data_dir: Path) -> None:
    marker = json.dumps({"format": "pbftd-store", "version": 3}).encode()
    _raw_db(data_dir / "db", {FORMAT_KEY: marker, b"b/\x00": b"future"})
    with pytest.raises(StoreFormatError, match="version 3, newer than this build"):
        reopen(data_dir)
    assert json.loads(_raw_items(data_dir / "db")[FORMAT_KEY])["version"] == 3


def test_format_1_store_is_read_and_marked_2(data_dir: Path) -> None:
    """Format 1 repeated each transaction's bytes after its (height, index);
    this build reads such records as they stand, and marks the store 2 so
    that a format-1 build, which would look for those bytes in the records
    written from now on, refuses it."""
    marker = json.dumps({"format": "pbftd-store", "version": 1}).encode()
    tx_record = (7).to_bytes(8, "big") + (2).to_bytes(4, "big") + b"the tx bytes"
    _raw_db(data_dir / "db", {FORMAT_KEY: marker, b"t/tx-old": tx_record})
    with reopen(data_dir) as store:
        assert store.get_tx(b"tx-old") == (7, 2)
        with store.batch() as b:
            b.put_block(8, block_hash(8), b"block-8", b"cert-8", tx_ids=[b"tx-new"])
        assert store.get_tx(b"tx-new") == (8, 0)
    items = _raw_items(data_dir / "db")
    assert json.loads(items[FORMAT_KEY]) == {"format": "pbftd-store", "version": 2}
    assert items[b"t/tx-new"] == (8).to_bytes(8, "big") + (0).to_bytes(4, "big")


@pytest.mark.parametrize("marker, message", [
    (json.dumps({"format": "pbftd-store", "version": 0}).encode(),
     "invalid pbftd-store version 0"),
    (json.dumps({"format": "other-chain", "version": 1}).encode(), "'other-chain'"),
    (b"\x00garbage", "unreadable format marker"),
], ids=["version-0", "foreign-format", "unreadable"])
def test_bad_marker_is_refused(data_dir: Path, marker: bytes, message: str) -> None:
    _raw_db(data_dir / "db", {FORMAT_KEY: marker})
    with pytest.raises(StoreFormatError, match=message):
        reopen(data_dir)


def test_non_empty_database_without_marker_is_refused_and_left_alone(data_dir: Path) -> None:
    foreign = {b"account/1": b"100", b"account/2": b"200"}
    _raw_db(data_dir / "db", foreign)
    with pytest.raises(StoreFormatError, match="without a pbftd-store format marker"):
        reopen(data_dir)
    assert _raw_items(data_dir / "db") == foreign


def test_rocksdict_pickle_mode_database_is_refused(data_dir: Path) -> None:
    db = Rdict(str(data_dir / "db"))
    db["key"] = "value"
    db.close()
    with pytest.raises(StoreFormatError, match="non-raw mode"):
        reopen(data_dir)


def test_extra_column_families_are_refused(data_dir: Path) -> None:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(data_dir / "db"), options)
    db.create_column_family("ledger", Options(raw_mode=True))
    db.close()
    with pytest.raises(StoreFormatError, match="column families"):
        reopen(data_dir)


def test_directory_of_other_files_is_refused(data_dir: Path) -> None:
    (data_dir / "db").mkdir(parents=True)
    (data_dir / "db" / "notes.txt").write_text("not a database")
    with pytest.raises(StoreFormatError, match="holds no RocksDB database"):
        reopen(data_dir)


def test_empty_rocksdb_without_marker_is_initialised(data_dir: Path) -> None:
    """A first open that crashed before writing the marker left an empty database."""
    _raw_db(data_dir / "db", {})
    with reopen(data_dir) as store:
        assert store.last_height() is None
    assert FORMAT_KEY in _raw_items(data_dir / "db")


def test_refused_open_releases_the_lock(data_dir: Path) -> None:
    _raw_db(data_dir / "db", {b"x": b"y"})
    for _ in range(2):  # the second attempt would hit StoreLockedError if the first leaked it
        with pytest.raises(StoreFormatError):
            NodeStore.open(data_dir, ballast_bytes=0)


def test_interrupted_first_creation_is_initialised(data_dir: Path) -> None:
    """RocksDB writes LOCK, LOG and IDENTITY before CURRENT commits the new database."""
    db_dir = data_dir / "db"
    db_dir.mkdir(parents=True)
    for name in ("LOCK", "LOG", "IDENTITY"):
        (db_dir / name).write_bytes(b"")
    with reopen(data_dir) as store:
        assert store.last_height() is None
    assert FORMAT_KEY in _raw_items(db_dir)


def test_interrupted_wipe_is_finished_on_open(data_dir: Path) -> None:
    leftover = data_dir / "db.deleted"
    leftover.mkdir(parents=True)
    (leftover / "000009.sst").write_bytes(b"half-deleted")
    reopen(data_dir).close()
    assert not leftover.exists()


def test_the_store_uses_partitioned_bloom_filters_in_a_bounded_cache(data_dir: Path) -> None:
    """The at-most-once lookups miss almost always: a filter answers them.
    RocksDB writes the options it opened with to an OPTIONS file; read it."""
    reopen(data_dir).close()
    latest = max((data_dir / "db").glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    table = latest.read_text().split("[TableOptions/BlockBasedTable")[1]
    settings = dict(line.strip().split("=", 1) for line in table.splitlines() if "=" in line)
    assert "bloomfilter" in settings["filter_policy"].lower()
    assert settings["partition_filters"] == "true"
    assert settings["index_type"] == "kTwoLevelIndexSearch"
    assert settings["cache_index_and_filter_blocks"] == "true"
