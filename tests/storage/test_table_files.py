"""Compaction writes table files of at most ``_TABLE_FILE_BYTES`` (16 MiB),
not RocksDB's 64 MiB (storage/_rocks.py says why: a compaction holds the index
and filter partitions of the file it is writing in memory until the file is
finished, so its transient memory grows with the file size)."""

from __future__ import annotations

import os
from pathlib import Path

from storage import _rocks

MIB = 1 << 20


def _table_files_after_compaction(directory: Path, data_bytes: int) -> list[int]:
    """Write ``data_bytes`` of incompressible values under random keys (so
    the flushed files overlap and compaction must merge them, not move them
    down as they are), compact everything into one level, and return the
    sizes of the table files that hold it."""
    db = _rocks.open_rdict(directory, 4 * MIB)
    try:
        value_bytes = 1000
        for _ in range(data_bytes // value_bytes):
            db[os.urandom(16)] = os.urandom(value_bytes)
        db.flush()
        db.compact_range(None, None)
        return [int(f["size"]) for f in db.live_files()]
    finally:
        db.close()


def test_compaction_cuts_table_files_at_the_configured_size(tmp_path: Path) -> None:
    assert _rocks._TABLE_FILE_BYTES == 16 * MIB
    sizes = _table_files_after_compaction(tmp_path / "db", 40 * MIB)
    assert sum(sizes) > 38 * MIB, sizes  # all of it, uncompressed
    # RocksDB cuts a file once it reaches the target, at a block boundary
    assert max(sizes) <= _rocks._TABLE_FILE_BYTES + MIB, sizes
    assert len(sizes) >= 3, sizes  # with its default (64 MiB) this is one file
