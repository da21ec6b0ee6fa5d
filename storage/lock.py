"""Exclusive ownership of a data directory through `flock` on ``pbftd.lock``.

Two daemons writing one RocksDB would corrupt it, and RocksDB's own ``LOCK``
file only says "lock hold by ..." deep in an IO error. Taking our own lock
first gives a clear StoreLockedError before RocksDB is touched. `flock` is
tied to the open file description, so it also conflicts between two opens in
one process, and the kernel drops it when the holder dies (even by SIGKILL):
there is no stale-lock cleanup to get wrong. The holder's pid is written into
the file only to make the error message useful.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from storage.errors import StoreLockedError

__all__ = ["LOCK_FILE_NAME", "DirLock"]

LOCK_FILE_NAME = "pbftd.lock"


class DirLock:
    """A held lock on one data directory; `release()` is idempotent."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path) -> DirLock:
        path = data_dir / LOCK_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreLockedError(
                f"another pbftd holds the data directory {data_dir} "
                f"(lock file {path}, holder pid {holder})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Closing the descriptor drops the flock; the file stays so that the
        # next holder reuses it and never races on unlink.
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text or "unknown"
