"""NodeStore: one node's durable state in a RocksDB under its data directory.

Theory of operation
-------------------
* Layout of ``data_dir``: ``db/`` (RocksDB), ``pbftd.lock`` (flock, held while
  open), ``ballast`` (reserved space, see ballast.py). Key layout: keys.py.
* Durability contract: when ``with store.batch() as b: ...`` returns, or
  ``put_meta_sync``/``put_consensus_sync`` returns, the write is in the WAL and
  the WAL is fsynced (with ``sync_writes=True``, the default). The daemon may
  acknowledge only then. Nothing is durable before that point.
* Group commit: inside ``with store.group_commit():`` batches are written to
  the WAL without an fsync each, and one WAL fsync on a clean exit makes them
  all durable together. The WAL is replayed in order, so a crash before that
  fsync loses a suffix of the group, never a write in its middle. The caller
  must not acknowledge or send anything that depends on the group's writes
  before the ``with`` block has returned.
* Disk full: a write that fails with ENOSPC raises StoreFullError and makes the
  store read-only (reads keep working). ``try_recover_space()`` deletes the
  ballast, checks free space and reopens RocksDB; ``ensure_ballast()`` puts the
  ballast back once the operator has freed space.
* Any other write error raises StoreIOError and marks the store failed: the
  write is indeterminate (it may be on disk after a restart even though it
  raised), RocksDB's in-memory state can no longer be trusted, and the only
  safe move for the daemon is to stop and restart from what is on disk.
* The store has no knowledge of consensus rules and no thread safety: one
  thread (the daemon's storage worker) owns it, as one task owns the replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import structlog
from rocksdict import Rdict, WriteBatch, WriteOptions

from storage import keys
from storage._rocks import open_rdict
from storage.ballast import BALLAST_FILE_NAME, create_ballast, delete_ballast, free_bytes
from storage.batch import Batch
from storage.datadir import DB_DIR_NAME, open_db
from storage.errors import (
    StoreError,
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
    is_enospc,
)
from storage.lock import DirLock

__all__ = ["NodeStore"]

MIB = 1 << 20

log = structlog.get_logger(__name__)


class NodeStore:
    """The store of one data directory. Create with `NodeStore.open`."""

    def __init__(
        self,
        data_dir: Path,
        lock: DirLock,
        db: Rdict,
        *,
        sync_writes: bool,
        write_buffer_bytes: int,
        ballast_bytes: int,
    ) -> None:
        self.data_dir = data_dir
        self.read_only = False
        self.read_only_reason: str | None = None
        self.failed = False
        self._lock = lock
        self._db: Rdict | None = db
        self._sync_writes = sync_writes
        self._write_options = WriteOptions()
        self._write_options.sync = sync_writes
        self._unsynced_options = WriteOptions()
        self._unsynced_options.sync = False
        self._grouping = False
        self._group_dirty = False
        self._write_buffer_bytes = write_buffer_bytes
        self._ballast_bytes = ballast_bytes
        self._last_height: int | None = _scan_last_height(db)

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        sync_writes: bool = True,
        write_buffer_bytes: int = 64 * MIB,
        ballast_bytes: int = 128 * MIB,
    ) -> NodeStore:
        """Lock `data_dir`, open or initialise its database, and reserve the ballast."""
        if write_buffer_bytes < MIB or ballast_bytes < 0:
            raise ValueError("write_buffer_bytes must be >= 1 MiB and ballast_bytes >= 0")
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = DirLock.acquire(data_dir)
        try:
            db = open_db(data_dir, write_buffer_bytes)
        except BaseException:
            lock.release()
            raise
        store = cls(
            data_dir,
            lock,
            db,
            sync_writes=sync_writes,
            write_buffer_bytes=write_buffer_bytes,
            ballast_bytes=ballast_bytes,
        )
        try:
            store.ensure_ballast()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Flush memtables, close RocksDB and release the lock; idempotent.

        Closing a store that hit a write error is expected to fail inside
        RocksDB ("Writer has previous error"); that is logged, not raised,
        since every acknowledged write is already in the synced WAL.
        """
        db, self._db = self._db, None
        if db is None:
            return
        try:
            db.close()
        except Exception as exc:
            if not (self.read_only or self.failed):
                raise StoreIOError(f"closing {self.data_dir} failed: {exc}") from exc
            log.warning("store_close_error_ignored", data_dir=str(self.data_dir), error=str(exc))
        finally:
            self._lock.release()

    def __enter__(self) -> NodeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------

    def memory_bytes(self) -> dict[str, int]:
        """RocksDB's own memory by kind, for /metrics: memtables, the block
        cache (data, index and filter blocks) and table readers outside it.
        Why: RSS alone cannot tell the database's bounded caches filling up
        from a leak (issue 6's long run)."""
        db = self._require_db()
        return {kind: int(db.property_int_value(prop) or 0) for kind, prop in (
            ("memtables", "rocksdb.cur-size-all-mem-tables"),
            ("block_cache", "rocksdb.block-cache-usage"),
            ("table_readers", "rocksdb.estimate-table-readers-mem"))}

    def last_height(self) -> int | None:
        """Highest stored block height, or None before the first block."""
        self._require_db()
        return self._last_height

    def get_block(self, height: int) -> bytes | None:
        return self._require_db().get(keys.block_key(height))

    def get_cert(self, height: int) -> bytes | None:
        return self._require_db().get(keys.cert_key(height))

    def get_block_height_by_hash(self, block_hash: bytes) -> int | None:
        raw = self._require_db().get(keys.hash_key(block_hash))
        return None if raw is None else keys.decode_height(raw)

    def get_tx(self, tx_id: bytes) -> tuple[int, int] | None:
        """(height, index within the block) or None; the bytes are the block's."""
        raw = self._require_db().get(keys.tx_key(tx_id))
        return None if raw is None else keys.decode_tx_value(raw)

    def get_state(self, key: bytes) -> bytes | None:
        return self._require_db().get(keys.state_key(key))

    def get_states(self, app_keys: list[bytes]) -> list[bytes | None]:
        """``get_state`` of each key, in order, as one RocksDB multi-get: a
        block checks a thousand request keys at once, and one call into
        RocksDB costs far less than a thousand."""
        if not app_keys:
            return []
        found: list[bytes | None] = self._require_db().get([keys.state_key(k) for k in app_keys])
        return found

    def get_meta(self, name: str) -> bytes | None:
        return self._require_db().get(keys.meta_key(name))

    def get_consensus(self, name: str) -> bytes | None:
        return self._require_db().get(keys.consensus_key(name))

    def iter_blocks(self, from_height: int, to_height: int) -> Iterator[tuple[int, bytes]]:
        """(height, block bytes) for stored heights in from_height..to_height inclusive."""
        start = keys.block_key(from_height)
        end = keys.block_key(to_height)
        for key, value in self._require_db().items(from_key=start):
            if key > end:
                return
            yield keys.decode_height(key[len(keys.PREFIX_BLOCK) :]), value

    def iter_state(self, prefix: bytes = b"",
                   start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(app key, value) for every state key starting with `prefix`, in key
        order; with `start`, only keys >= `start` (RocksDB seeks there: a page
        of a long listing costs the page, not what comes before it)."""
        keys.check_value("state prefix", prefix)
        within = keys.PREFIX_STATE + prefix
        begin = within if start is None or start <= prefix else keys.PREFIX_STATE + start
        for key, value in self._require_db().items(from_key=begin):
            if not key.startswith(within):
                return
            yield key[len(keys.PREFIX_STATE) :], value

    def iter_consensus(self) -> Iterator[tuple[str, bytes]]:
        """(name, value) of every consensus record: what a replica restarts from."""
        start = keys.PREFIX_CONSENSUS
        for key, value in self._require_db().items(from_key=start):
            if not key.startswith(start):
                return
            yield key[len(start) :].decode(), value

    # -- writes --------------------------------------------------------------

    def batch(self) -> Batch:
        """A batch committed atomically and durably when its ``with`` block exits."""
        self._check_writable()
        return Batch(self._commit)

    def put_meta_sync(self, name: str, value: bytes) -> None:
        """One durable metadata write, outside any batch."""
        with self.batch() as b:
            b.put_meta(name, value)

    def put_consensus_sync(self, name: str, value: bytes) -> None:
        """One durable consensus-state write (view, checkpoint, ...), outside any batch."""
        with self.batch() as b:
            b.put_consensus(name, value)

    @contextlib.contextmanager
    def group_commit(self) -> Iterator[None]:
        """Make every write inside durable with one WAL fsync at the end (see
        the module doc). Not re-entrant; an exception inside skips the fsync."""
        assert not self._grouping, "group_commit is not re-entrant"
        self._grouping, self._group_dirty = True, False
        try:
            yield
        finally:
            self._grouping = False
        if self._group_dirty and self._sync_writes:
            db = self._check_writable()
            try:
                db.flush_wal(True)
            except Exception as exc:
                self._on_write_error(exc)
        self._group_dirty = False

    def _commit(self, batch: WriteBatch, height_max: int | None) -> None:
        db = self._check_writable()
        options = self._unsynced_options if self._grouping else self._write_options
        try:
            db.write(batch, options)
        except Exception as exc:
            self._on_write_error(exc)
        self._group_dirty = self._grouping
        if height_max is not None and (self._last_height is None or height_max > self._last_height):
            self._last_height = height_max

    def _on_write_error(self, exc: Exception) -> None:
        if is_enospc(exc):
            self.read_only = True
            self.read_only_reason = f"disk full: {exc}"
            log.error("store_read_only_disk_full", data_dir=str(self.data_dir), error=str(exc))
            raise StoreFullError(f"write failed, store is now read-only: {exc}") from exc
        self.failed = True
        log.critical("store_failed_write_error", data_dir=str(self.data_dir), error=str(exc))
        raise StoreIOError(
            f"write failed with an I/O error; its outcome is unknown, restart the daemon: {exc}"
        ) from exc

    def _check_writable(self) -> Rdict:
        db = self._require_db()
        if self.failed:
            raise StoreIOError("an earlier write failed; the store must be reopened")
        if self.read_only:
            raise StoreReadOnlyError(f"store is read-only: {self.read_only_reason}")
        return db

    def _require_db(self) -> Rdict:
        if self._db is None:
            raise StoreError(f"store {self.data_dir} is closed")
        return self._db

    # -- disk space ----------------------------------------------------------

    def try_recover_space(self) -> bool:
        """Leave read-only mode if the disk allows; return whether writes work again.

        Deletes the ballast, then requires free space of at least twice the
        write buffer (and twice the live WAL): RocksDB must be closed and
        reopened to clear its error, and reopening replays the WAL into a new
        table file. The ballast is not put back here; call ``ensure_ballast()``
        once space has been freed.
        """
        self._require_db()
        if self.failed:
            raise StoreIOError("the store failed on an I/O error; restart instead")
        if not self.read_only:
            return True
        freed_bytes = delete_ballast(self._ballast_path)
        available = free_bytes(self.data_dir)
        needed = max(2 * self._write_buffer_bytes, 2 * _wal_bytes(self._db_dir))
        log.warning(
            "store_recover_space",
            freed_ballast_bytes=freed_bytes,
            free_bytes=available,
            needed_bytes=needed,
        )
        if available < needed:
            self.read_only_reason = f"disk full: {available} bytes free, need {needed}"
            return False
        self._reopen()
        self.read_only = False
        self.read_only_reason = None
        return True

    def space_returned(self) -> bool:
        """Whether real free space is back: enough to reopen after ENOSPC and
        to rebuild the ballast, without spending the ballast itself.  A node
        that resumed on its ballast alone would have no reserve next time."""
        needed = (self._ballast_bytes + 2 * self._write_buffer_bytes
                  + 2 * _wal_bytes(self._db_dir))
        return free_bytes(self.data_dir) >= needed

    def ensure_ballast(self) -> bool:
        """Create the ballast if it is missing and the disk has room; return whether it exists.

        "Room" leaves a second ballast's worth plus the reopen reserve free
        after creating it. Without that margin a node just recovered from
        ENOSPC would take the space straight back and flap between full and
        recovered until the operator acts; with it, the ballast returns only
        once space has really been freed.
        """
        headroom_bytes = self._ballast_bytes + 2 * self._write_buffer_bytes
        return create_ballast(self._ballast_path, self._ballast_bytes, headroom_bytes)

    def _reopen(self) -> None:
        """Replace the RocksDB handle, which stays in an error state after ENOSPC."""
        db, self._db = self._db, None
        assert db is not None
        with contextlib.suppress(Exception):
            db.close()  # "Writer has previous error" is expected; the handle closes anyway.
        try:
            self._db = open_rdict(self._db_dir, self._write_buffer_bytes)
        except StoreError:
            self.failed = True
            log.critical("store_reopen_failed", data_dir=str(self.data_dir))
            self._db = None
            self._lock.release()
            raise
        self._last_height = _scan_last_height(self._db)

    @property
    def _db_dir(self) -> Path:
        return self.data_dir / DB_DIR_NAME

    @property
    def _ballast_path(self) -> Path:
        return self.data_dir / BALLAST_FILE_NAME


def _scan_last_height(db: Rdict) -> int | None:
    """Highest block height on disk: the last key under the block prefix."""
    it = db.iter()
    end = keys.prefix_end(keys.PREFIX_BLOCK)
    assert end is not None
    it.seek_for_prev(end)
    if not it.valid():
        return None
    key = it.key()
    if not key.startswith(keys.PREFIX_BLOCK):
        return None
    return keys.decode_height(key[len(keys.PREFIX_BLOCK) :])


def _wal_bytes(db_dir: Path) -> int:
    try:
        return sum(p.stat().st_size for p in db_dir.glob("*.log"))
    except OSError:
        return 0
