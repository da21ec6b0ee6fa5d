"""ENOSPC on a real (tiny tmpfs) filesystem: read-only, readable, recoverable, nothing lost.

Needs root and a working ``mount``; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import NodeStore, StoreFullError, StoreReadOnlyError
from tests.storage.blocks import block_hash, cert_bytes

FS_BYTES = 16 << 20
BUFFER_BYTES = 1 << 20
BALLAST_BYTES = 4 << 20
BLOCK_SIZE = 4000
# Far more blocks than fit: the loop is bounded even if ENOSPC never comes.
BLOCKS_MAX = 2 * FS_BYTES // BLOCK_SIZE


def _block(height: int) -> bytes:
    """Incompressible, so that RocksDB's compression cannot postpone ENOSPC."""
    return hashlib.shake_256(b"%d" % height).digest(BLOCK_SIZE)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("disk-full test needs root to mount a 16 MiB tmpfs")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs for the disk-full test: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def _open(data_dir: Path) -> NodeStore:
    return NodeStore.open(data_dir, write_buffer_bytes=BUFFER_BYTES, ballast_bytes=BALLAST_BYTES)


def _write_until_full(store: NodeStore, first: int) -> list[int]:
    """Acknowledged heights, in order, up to the write that hit ENOSPC."""
    acked = []
    for height in range(first, first + BLOCKS_MAX):
        try:
            with store.batch() as b:
                b.put_block(height, block_hash(height), _block(height), cert_bytes(height))
        except StoreFullError:
            return acked
        acked.append(height)
    pytest.fail(f"no ENOSPC after {BLOCKS_MAX} blocks on a {FS_BYTES}-byte filesystem")


def test_disk_full_goes_read_only_and_recovers(tiny_fs: Path) -> None:
    data_dir = tiny_fs / "node"
    store = _open(data_dir)
    try:
        assert (data_dir / "ballast").stat().st_size == BALLAST_BYTES
        acked = _write_until_full(store, first=0)
        assert len(acked) > 100
        assert store.read_only
        assert "No space left on device" in (store.read_only_reason or "")
        assert not store.failed

        # Reads keep working; writes are refused up front, without touching RocksDB.
        assert store.get_block(acked[-1]) == _block(acked[-1])
        assert store.last_height() == acked[-1]
        with pytest.raises(StoreReadOnlyError):
            store.put_meta_sync("x", b"y")

        assert store.try_recover_space()
        assert not store.read_only and store.read_only_reason is None
        assert not (data_dir / "ballast").exists()
        # The failed write was never acknowledged; it may or may not be there.
        assert store.last_height() in (acked[-1], acked[-1] + 1)
        # No room for a new ballast yet: it must not take the space back.
        assert not store.ensure_ballast()

        resume = store.last_height() + 1  # type: ignore[operator]
        for height in range(resume, resume + 20):
            with store.batch() as b:
                b.put_block(height, block_hash(height), _block(height), cert_bytes(height))
            acked.append(height)
    finally:
        store.close()

    with _open(data_dir) as again:
        for height in acked:
            assert again.get_block(height) == _block(height), height
        assert again.last_height() == acked[-1]
        assert not again.ensure_ballast()
        _operator_frees_space(tiny_fs)
        assert again.ensure_ballast()
        assert (data_dir / "ballast").stat().st_size == BALLAST_BYTES


def test_recovery_refuses_when_space_is_still_short(tiny_fs: Path) -> None:
    """Without a ballast there is nothing to give back: stay read-only, report why."""
    data_dir = tiny_fs / "node"
    store = NodeStore.open(data_dir, write_buffer_bytes=BUFFER_BYTES, ballast_bytes=0)
    try:
        acked = _write_until_full(store, first=0)
        assert store.read_only
        assert not store.try_recover_space()
        assert store.read_only
        assert "need" in (store.read_only_reason or "")
        assert store.get_block(acked[-1]) == _block(acked[-1])
    finally:
        store.close()
    # Reopen needs room to replay the WAL; making that room is the operator's job.
    _operator_frees_space(tiny_fs)
    with _open(data_dir) as again:
        for height in acked:
            assert again.get_block(height) == _block(height), height


def _fill(path: Path) -> None:
    """Take every free byte, as another process on the same disk would."""
    try:
        with path.open("wb") as f:
            for chunk_bytes in (1 << 16, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(bytes(chunk_bytes))
                        f.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    assert shutil.disk_usage(path.parent).free < BUFFER_BYTES


def _operator_frees_space(mount_point: Path) -> None:
    """Stand-in for the operator freeing space: grow the filesystem in place."""
    subprocess.run(["mount", "-o", f"remount,size={4 * FS_BYTES}", str(mount_point)], check=True)


def test_restart_on_a_full_disk_gives_up_the_ballast(tiny_fs: Path) -> None:
    """A daemon restarted by systemd on a full disk must come up, not fail forever."""
    data_dir = tiny_fs / "node"
    store = _open(data_dir)
    try:
        acked = _write_until_full(store, first=0)
    finally:
        store.close()  # still read-only: simulates a crash/restart without recovery
    assert (data_dir / "ballast").exists()
    _fill(tiny_fs / "filler")  # whatever RocksDB freed on close is taken too

    with _open(data_dir) as again:
        assert not (data_dir / "ballast").exists()
        assert not again.read_only
        for height in acked:
            assert again.get_block(height) == _block(height), height
        height = again.last_height() + 1  # type: ignore[operator]
        with again.batch() as b:
            b.put_block(height, block_hash(height), _block(height), cert_bytes(height))
