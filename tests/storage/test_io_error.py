"""fsync failing with EIO (libfiu): the store fails closed and the write is indeterminate.

Needs ``fiu-run``/``fiu-ctrl`` (Debian package fiu-utils); skipped otherwise.
The child is started under fiu-run so that the test can switch the fault on
and off at chosen moments through libfiu's control FIFO.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.storage.blocks import block_bytes, block_hash, cert_bytes
from tests.storage.children import LineReader, spawn
from tests.storage.conftest import reopen

DEADLINE_S = 30
HEIGHTS_BEFORE = 5
# Every sync call fails with EIO (errno 5) while enabled.
FAULT = "enable name=posix/io/sync/*,failinfo=5"

_CHILD = """
from pathlib import Path
from storage import NodeStore, StoreError, StoreIOError
from tests.storage.blocks import block_bytes, block_hash, cert_bytes

def put(store, h):
    with store.batch() as b:
        b.put_block(h, block_hash(h), block_bytes(h), cert_bytes(h))

store = NodeStore.open(Path(sys.argv[1]), write_buffer_bytes=1 << 20, ballast_bytes=0)
for h in range(int(sys.argv[2])):
    put(store, h)
print("ready", flush=True)
sys.stdin.readline()  # the test has enabled the fault
try:
    put(store, int(sys.argv[2]))
except StoreIOError as exc:
    print("ioerror", store.failed, store.read_only, "restart" in str(exc), flush=True)
else:
    print("no error", flush=True)
sys.stdin.readline()  # the test has disabled the fault
try:
    store.put_meta_sync("after", b"x")
except StoreIOError:
    print("refused", flush=True)
else:
    print("accepted", flush=True)
store.close()
print("closed", flush=True)
"""


def _fiu_ctrl(prefix: Path, command: str, pid: int) -> None:
    subprocess.run(["fiu-ctrl", "-f", str(prefix), "-c", command, str(pid)], check=True)


@pytest.mark.skipif(
    shutil.which("fiu-run") is None or shutil.which("fiu-ctrl") is None,
    reason="fsync fault injection needs fiu-run/fiu-ctrl (apt-get install fiu-utils)",
)
def test_fsync_eio_fails_the_store_and_keeps_acked_data(data_dir: Path, tmp_path: Path) -> None:
    fifo_prefix = tmp_path / "fiu"
    child = spawn(
        _CHILD,
        [str(data_dir), str(HEIGHTS_BEFORE)],
        prefix=["fiu-run", "-x", "-f", str(fifo_prefix)],
        stdin=subprocess.PIPE,
    )
    reader = LineReader(child)
    assert child.stdin is not None
    try:
        deadline = time.monotonic() + DEADLINE_S
        assert reader.readline(deadline) == "ready", reader.stderr_tail()
        _fiu_ctrl(fifo_prefix, FAULT, child.pid)
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert reader.readline(deadline) == "ioerror True False True", reader.stderr_tail()
        _fiu_ctrl(fifo_prefix, "disable name=posix/io/sync/*", child.pid)
        child.stdin.write(b"go\n")
        child.stdin.flush()
        # Even with the disk healthy again, a failed store refuses writes until restarted.
        assert reader.readline(deadline) == "refused"
        assert reader.readline(deadline) == "closed", reader.stderr_tail()
        assert child.wait(timeout=DEADLINE_S) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=DEADLINE_S)
        reader.close()

    with reopen(data_dir) as store:
        for height in range(HEIGHTS_BEFORE):
            assert store.get_block(height) == block_bytes(height)
            assert store.get_cert(height) == cert_bytes(height)
        # The failed write is indeterminate: present in full or absent, never partial.
        failed = HEIGHTS_BEFORE
        present = store.get_block(failed) is not None
        assert present == (store.get_block_height_by_hash(block_hash(failed)) == failed)
        assert store.last_height() == (failed if present else failed - 1)
        assert store.get_meta("after") is None
