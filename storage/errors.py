"""Typed errors of the storage layer, split by what the caller must do next.

The daemon reacts differently to each: a locked or foreign data directory is an
operator mistake (refuse to start), a full disk is survivable (stop accepting
requests, stay up, serve reads), and any other I/O error on write leaves the
outcome of that write unknown, so the only safe move is to stop and restart
from what is on disk.
"""

from __future__ import annotations

import errno

__all__ = [
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreIOError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "is_enospc",
]


class StoreError(Exception):
    """Base class for every error this package raises on purpose."""


class StoreLockedError(StoreError):
    """Another process (or another NodeStore in this one) holds the data directory."""


class StoreFormatError(StoreError):
    """The data directory holds something that is not a store this code can open."""


class StoreFullError(StoreError):
    """A write hit ENOSPC; the store is now read-only until space is recovered.

    The write that raised this was not acknowledged. It is most likely absent,
    but treat it like any unacknowledged write: re-read the store (for example
    `last_height()`) after recovery instead of assuming either outcome.
    """


class StoreReadOnlyError(StoreFullError):
    """A write was refused up front because the store is already read-only.

    A subclass of StoreFullError so that callers handling "disk full" catch the
    refusal too; unlike its parent, nothing was attempted, so nothing is
    indeterminate.
    """


class StoreIOError(StoreError):
    """A write failed for a reason other than a full disk (EIO, fsync failure, ...).

    The write is indeterminate: the fault-injection runs showed a write whose
    fdatasync failed present after reopen. The store marks itself failed and
    refuses further writes; the daemon must stop and restart, then trust only
    what it reads back from disk.
    """


def is_enospc(exc: BaseException) -> bool:
    """True if `exc` looks like "no space left on device".

    rocksdict raises a plain Exception whose text carries RocksDB's status,
    e.g. "IO error: No space left on device: While appending to file: ...",
    so the text is all there is to go on; Python's own OSError has an errno.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text
