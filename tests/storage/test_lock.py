"""One data directory, one owner: a second open fails fast with StoreLockedError."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from storage import NodeStore, StoreLockedError, wipe
from tests.storage.children import LineReader, spawn
from tests.storage.conftest import reopen

# Prints one line: "locked <message>" or "opened".
_TRY_OPEN = """
import sys
from pathlib import Path
from storage import NodeStore, StoreLockedError
try:
    NodeStore.open(Path(sys.argv[1]), ballast_bytes=0).close()
except StoreLockedError as exc:
    print("locked", exc)
else:
    print("opened")
"""

# Opens the store, says so, then holds it until stdin closes.
_HOLD_OPEN = """
import sys
from pathlib import Path
from storage import NodeStore
store = NodeStore.open(Path(sys.argv[1]), ballast_bytes=0)
print("open", flush=True)
sys.stdin.read()
"""


def _try_open_in_subprocess(data_dir: Path) -> str:
    child = spawn(_TRY_OPEN, [str(data_dir)])
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return out.decode().strip()


def test_second_open_in_process_is_refused(store: NodeStore, data_dir: Path) -> None:
    with pytest.raises(StoreLockedError, match="another pbftd holds the data directory"):
        reopen(data_dir)
    # The refused attempt must not have disturbed the holder.
    store.put_meta_sync("still", b"works")
    assert store.get_meta("still") == b"works"


def test_error_names_the_holder_pid(store: NodeStore, data_dir: Path) -> None:
    with pytest.raises(StoreLockedError, match=f"holder pid {os.getpid()}"):
        reopen(data_dir)


def test_second_open_from_another_process_is_refused(store: NodeStore, data_dir: Path) -> None:
    result = _try_open_in_subprocess(data_dir)
    assert result.startswith("locked another pbftd holds the data directory"), result


def test_close_releases_the_lock(store: NodeStore, data_dir: Path) -> None:
    store.close()
    assert _try_open_in_subprocess(data_dir) == "opened"
    reopen(data_dir).close()


def test_wipe_refuses_a_directory_in_use(store: NodeStore, data_dir: Path) -> None:
    with pytest.raises(StoreLockedError):
        wipe(data_dir)
    assert store.get_meta("anything") is None  # still open and readable


def test_lock_held_by_a_child_is_freed_when_it_is_killed(data_dir: Path) -> None:
    child = spawn(_HOLD_OPEN, [str(data_dir)], stdin=subprocess.PIPE)
    reader = LineReader(child)
    try:
        assert reader.readline(time.monotonic() + 30) == "open"
        with pytest.raises(StoreLockedError):
            reopen(data_dir)
        child.kill()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        reader.close()
    reopen(data_dir).close()
