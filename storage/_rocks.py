"""Opening RocksDB for the store: tuned options and the foreign-format probe.

Kept apart from NodeStore so that every rocksdict option the daemon depends on
is in one place with its reason. Raw mode matters most: rocksdict's default
mode prefixes every key and value with a type tag, which would change key
order and make the data unreadable to other RocksDB tools.
"""

from __future__ import annotations

import json
from pathlib import Path

from rocksdict import AccessType, BlockBasedIndexType, BlockBasedOptions, Cache, Options, Rdict

from storage.errors import StoreFormatError, StoreFullError, StoreIOError, is_enospc
from storage.keys import FORMAT_KEY, FORMAT_NAME, FORMAT_VERSION, FORMAT_VERSIONS_READ

__all__ = ["check_marker", "make_options", "open_rdict", "probe_format"]

# RocksDB's info LOG would otherwise grow for the life of the process and keep
# a file per restart forever; the node runs for years.
_INFO_LOG_BYTES_MAX = 16 << 20
_INFO_LOG_FILES_MAX = 5
# Table files stay open for fast reads; bounded because the same process also
# holds a socket per peer and client under systemd's file limit.
_OPEN_FILES_MAX = 512
_ROCKSDICT_CONFIG = "rocksdict-config.json"
# Compaction cuts table files at 16 MiB, a quarter of RocksDB's default.
# Why: a compaction holds the index and filter partitions of the file it is
# writing in memory until that file is finished, so its transient memory
# grows with the file size.  While the store is smaller than the level base,
# every compaction rewrites all of it into the last level, so with 64 MiB
# files that transient grew with the chain through its first ~100 MB (in
# issue 6's 10-minute run most steps of a node's peak RSS came at compactions).
# One compaction of a 109 MB store into the last level, measured in process
# after a trim: 3.5-4.4 MB with 64 MiB files, 1.8-1.9 MB with 16 MiB (2.2-2.3
# with 32).  Cost: four times the files, so the _OPEN_FILES_MAX table readers
# cover 8 GB of table files instead of 32 GB (TiKV's default is 8 MiB).
_TABLE_FILE_BYTES = 16 << 20
# Index and filter blocks live in one LRU cache of this size, with data
# blocks, so the memory they take is bounded however large the chain grows
# (left to RocksDB's table readers they grow with the number of keys: at
# 10 bits a key, a gigabyte of filters for the SPC's 327 million records).
_BLOCK_CACHE_BYTES = 32 << 20
_BLOOM_BITS_PER_KEY = 10
# How hard RocksDB tries to erase a table file's blocks from the block cache
# once compaction made the file obsolete (a mutable option, RocksDB >= 9.3;
# 0, its default, lets them age out).  Why: the at-most-once lookups touch
# every live file's filter and index partitions, compaction rewrites the
# files every few minutes, and the dead copies then filled the cache for
# good: at 300,000 attestations 17 MB of index and filter blocks were cached
# of which 2.5 MB belonged to live files (issue 6's 600 s run, where the
# cache filling was half of each node's RSS growth).  In the setting of
# tests/storage/test_block_cache.py 100 already erased them all; 300 leaves
# a margin; the work is done when a file becomes obsolete, usually on
# RocksDB's background threads.
_UNCACHE_AGGRESSIVENESS = 300


def _table_options() -> BlockBasedOptions:
    """Partitioned bloom filters, index and filters in the block cache.

    Why: every executed transaction's at-most-once check and every
    ``attestBatch`` item is a point lookup of a request key that is almost
    never there. Without a filter each miss reads index and data blocks of
    every level; with one it is answered from the filter. A filter per SST
    file is one block larger than a cache shard, which cannot be cached and
    is read again on every miss (measured: 80 us a lookup at 2 million
    keys), so the filter and the index are partitioned (two-level index),
    and only their top level is pinned. Measured on this machine (1,000
    synced batches of 1,000 misses then 2,000 puts): lookups 16 us -> 8 us
    on average, peak RSS within 6 MB of no filter at all.
    """
    table = BlockBasedOptions()
    table.set_bloom_filter(_BLOOM_BITS_PER_KEY, False)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_block_cache(Cache(_BLOCK_CACHE_BYTES))
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_top_level_index_and_filter(True)
    return table


def make_options(write_buffer_bytes: int, *, create: bool) -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(create)
    options.set_write_buffer_size(write_buffer_bytes)
    # Two memtables (one filling, one flushing) bound the live WAL to about
    # 2x the write buffer, which is what a reopen after ENOSPC must replay.
    options.set_max_write_buffer_number(2)
    options.set_max_total_wal_size(4 * write_buffer_bytes)
    options.set_max_log_file_size(_INFO_LOG_BYTES_MAX)
    options.set_keep_log_file_num(_INFO_LOG_FILES_MAX)
    options.set_max_open_files(_OPEN_FILES_MAX)
    options.set_target_file_size_base(_TABLE_FILE_BYTES)
    options.set_block_based_table_factory(_table_options())
    return options


def open_rdict(db_dir: Path, write_buffer_bytes: int) -> Rdict:
    """Open (creating if missing) read-write, mapping failures to store errors."""
    try:
        db = Rdict(str(db_dir), make_options(write_buffer_bytes, create=True))
        try:
            db.set_options({"uncache_aggressiveness": str(_UNCACHE_AGGRESSIVENESS)})
        except Exception:
            db.close()
            raise
        return db
    except Exception as exc:
        if is_enospc(exc):
            raise StoreFullError(
                f"cannot open {db_dir}: no space left to replay the WAL; free at least "
                f"{2 * write_buffer_bytes} bytes ({exc})"
            ) from exc
        raise StoreIOError(f"cannot open {db_dir}: {exc}") from exc


def probe_format(db_dir: Path, write_buffer_bytes: int) -> int | None:
    """Check an existing directory without writing to it; return its format version.

    None means an existing but empty RocksDB without a marker (a first open
    that crashed before writing it), which is safe to initialise. Anything
    that is not ours raises StoreFormatError; opening read-only first means a
    foreign database is never modified by the attempt.
    """
    _check_rocksdict_config(db_dir)
    try:
        families = Rdict.list_cf(str(db_dir), make_options(write_buffer_bytes, create=False))
        probe = Rdict(
            str(db_dir),
            make_options(write_buffer_bytes, create=False),
            access_type=AccessType.read_only(False),
        )
    except Exception as exc:
        raise StoreFormatError(f"{db_dir} is not a readable RocksDB database: {exc}") from exc
    try:
        if families != ["default"]:
            raise StoreFormatError(
                f"{db_dir} is a foreign RocksDB database (column families {families}), "
                f"not a {FORMAT_NAME} store"
            )
        marker = probe.get(FORMAT_KEY)
        if marker is None:
            if next(iter(probe.keys()), None) is not None:
                raise StoreFormatError(
                    f"{db_dir} is a non-empty RocksDB database without a {FORMAT_NAME} "
                    "format marker; refusing to use it"
                )
            return None
        return check_marker(db_dir, marker)
    finally:
        probe.close()


def check_marker(db_dir: Path, marker: bytes) -> int:
    """The store's format version, if this build reads it."""
    try:
        decoded = json.loads(marker)
        name, version = decoded["format"], decoded["version"]
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreFormatError(f"{db_dir} has an unreadable format marker {marker!r}") from exc
    if name != FORMAT_NAME or type(version) is not int:
        raise StoreFormatError(
            f"{db_dir} holds format {name!r} version {version!r}, not {FORMAT_NAME!r}"
        )
    if version > FORMAT_VERSION:
        raise StoreFormatError(
            f"{db_dir} is {FORMAT_NAME} version {version}, newer than this build "
            f"supports ({FORMAT_VERSION}); run a newer pbftd"
        )
    if version not in FORMAT_VERSIONS_READ:
        raise StoreFormatError(f"{db_dir} has invalid {FORMAT_NAME} version {version}")
    return int(version)


def _check_rocksdict_config(db_dir: Path) -> None:
    """A database written by rocksdict in its default (pickling) mode is not ours."""
    path = db_dir / _ROCKSDICT_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except ValueError as exc:
        raise StoreFormatError(f"{path} is unreadable: {exc}") from exc
    if config.get("raw_mode") is not True:
        raise StoreFormatError(
            f"{db_dir} was written by rocksdict in non-raw mode; not a {FORMAT_NAME} store"
        )
