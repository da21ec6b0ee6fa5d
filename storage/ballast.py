"""A ballast file: disk space reserved now so that a full disk can be survived later.

When the disk fills, RocksDB cannot even reopen: recovery replays the WAL into
a new table file, which needs about twice the WAL's size free (measured in
shared/faults/README.md §4). The ballast is a preallocated file of known size
that the store deletes on ENOSPC, giving the database room to recover while the
operator frees real space. It is recreated only when there is room again,
because taking the last free bytes back would cause the very failure it guards
against.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

import structlog

__all__ = ["BALLAST_FILE_NAME", "create_ballast", "delete_ballast", "free_bytes"]

BALLAST_FILE_NAME = "ballast"
_ZERO_CHUNK_BYTES = 1 << 20

log = structlog.get_logger(__name__)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    return shutil.disk_usage(path).free


def create_ballast(path: Path, size_bytes: int, headroom_bytes: int) -> bool:
    """Make `path` a fully allocated file of `size_bytes`; return whether it exists after.

    Skipped (with a warning) unless `headroom_bytes` stay free after the
    ballast is taken. A partial ballast is removed rather than kept, so that
    its size always says how much deleting it will give back.
    """
    if size_bytes == 0:
        return False
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size == size_bytes:
            return True
    existing = path.stat().st_size if path.exists() else 0
    needed = size_bytes - existing + headroom_bytes
    available = free_bytes(path.parent)
    if available < needed:
        log.warning(
            "ballast_skipped_low_space",
            path=str(path),
            ballast_bytes=size_bytes,
            free_bytes=available,
            needed_bytes=needed,
        )
        return False
    try:
        _allocate(path, size_bytes)
    except OSError as exc:
        delete_ballast(path)
        log.warning("ballast_create_failed", path=str(path), error=str(exc))
        return False
    return True


def delete_ballast(path: Path) -> int:
    """Remove the ballast; return the bytes it held (0 if there was none)."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def _allocate(path: Path, size_bytes: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, 0)
        try:
            os.posix_fallocate(fd, 0, size_bytes)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            _write_zeros(fd, size_bytes)
        # A ballast that vanished in a crash would leave the node unprotected.
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_zeros(fd: int, size_bytes: int) -> None:
    """Fallback for filesystems without fallocate: real blocks, not a sparse hole."""
    chunk = bytes(_ZERO_CHUNK_BYTES)
    written = 0
    while written < size_bytes:
        count = min(len(chunk), size_bytes - written)
        written += os.pwrite(fd, chunk[:count], written)
