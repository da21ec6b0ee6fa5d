"""The data directory's database: find it, check it is ours, create it, wipe it.

Layout of ``data_dir``: ``db/`` (RocksDB), ``pbftd.lock`` (see lock.py),
``ballast`` (see ballast.py), and transiently ``db.deleted/`` during a wipe.
Every function here runs with the directory lock held, so nothing races.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
from pathlib import Path

import structlog
from rocksdict import Rdict, WriteOptions

from storage import keys
from storage._rocks import open_rdict, probe_format
from storage.ballast import BALLAST_FILE_NAME, delete_ballast
from storage.errors import StoreFormatError, StoreFullError, StoreIOError, is_enospc
from storage.lock import DirLock

__all__ = ["DB_DIR_NAME", "open_db", "wipe"]

DB_DIR_NAME = "db"
_WIPE_DIR_NAME = "db.deleted"
# Files RocksDB (and rocksdict) write while creating a database, before the
# atomic creation of CURRENT commits it. A directory holding only these is an
# interrupted first open, with nothing acknowledged in it.
_CREATION_FILES = (
    "LOCK",
    "LOG",
    "LOG.old.*",
    "IDENTITY",
    "MANIFEST-*",
    "OPTIONS-*",
    "*.dbtmp",
    "*.log",
    "rocksdict-config.json",
)

log = structlog.get_logger(__name__)


def open_db(data_dir: Path, write_buffer_bytes: int) -> Rdict:
    """Open the database; if the disk is too full to replay the WAL, give up the ballast once.

    Without the retry a daemon restarted by systemd on a full disk would fail
    the same way forever; with it, it comes up and serves reads while the
    operator frees space.
    """
    try:
        return _open_or_create(data_dir, write_buffer_bytes)
    except StoreFullError as exc:
        freed_bytes = delete_ballast(data_dir / BALLAST_FILE_NAME)
        if freed_bytes == 0:
            raise
        log.warning("store_open_used_ballast", freed_bytes=freed_bytes, error=str(exc))
        return _open_or_create(data_dir, write_buffer_bytes)


def wipe(data_dir: Path) -> None:
    """Remove the database of a stopped node (the wiped-replica scenario).

    The directory is first renamed aside and the rename made durable, so a
    crash mid-wipe leaves either the whole database or none of it, never a
    half-deleted one that would fail to open. Raises StoreLockedError if a
    daemon is using the directory.
    """
    data_dir = Path(data_dir)
    lock = DirLock.acquire(data_dir)
    try:
        db_dir = data_dir / DB_DIR_NAME
        shutil.rmtree(data_dir / _WIPE_DIR_NAME, ignore_errors=True)
        if db_dir.exists():
            db_dir.rename(data_dir / _WIPE_DIR_NAME)
            _fsync_dir(data_dir)
        shutil.rmtree(data_dir / _WIPE_DIR_NAME, ignore_errors=True)
    finally:
        lock.release()


def _open_or_create(data_dir: Path, write_buffer_bytes: int) -> Rdict:
    shutil.rmtree(data_dir / _WIPE_DIR_NAME, ignore_errors=True)  # an interrupted wipe
    db_dir = data_dir / DB_DIR_NAME
    version = _check_existing(db_dir, write_buffer_bytes)
    db = open_rdict(db_dir, write_buffer_bytes)
    if version is None:
        _write_marker(data_dir, db, "store_initialised")
    elif version < keys.FORMAT_VERSION:
        # This build reads the older format as it stands and writes the new
        # one from now on; the marker makes an older build refuse the store.
        _write_marker(data_dir, db, "store_format_upgraded", from_version=version)
    return db


def _check_existing(db_dir: Path, write_buffer_bytes: int) -> int | None:
    """The format version of our marked database in `db_dir`; None if it is
    absent or safe to create."""
    names = [p.name for p in db_dir.iterdir()] if db_dir.exists() else []
    if "CURRENT" in names:
        return probe_format(db_dir, write_buffer_bytes)
    foreign = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in _CREATION_FILES)]
    if foreign:
        raise StoreFormatError(
            f"{db_dir} is not empty but holds no RocksDB database (found {sorted(foreign)[:5]})"
        )
    return None


def _write_marker(data_dir: Path, db: Rdict, event: str, **fields: int) -> None:
    options = WriteOptions()
    options.sync = True
    try:
        db.put(keys.FORMAT_KEY, keys.encode_format_marker(), options)
        _fsync_dir(data_dir)  # make the new db/ entry itself durable
    except Exception as exc:
        with contextlib.suppress(Exception):
            db.close()
        if is_enospc(exc):
            raise StoreFullError(f"cannot write the format marker in {data_dir}: {exc}") from exc
        raise StoreIOError(f"cannot write the format marker in {data_dir}: {exc}") from exc
    log.info(event, data_dir=str(data_dir), version=keys.FORMAT_VERSION, **fields)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
