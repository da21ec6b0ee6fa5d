"""Shared fixtures: a small store in a fresh directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import NodeStore
from tests.storage.blocks import block_bytes, block_hash, cert_bytes

__all__ = ["block_bytes", "block_hash", "cert_bytes", "reopen"]

SMALL_BUFFER_BYTES = 1 << 20
SMALL_BALLAST_BYTES = 1 << 20


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node"


@pytest.fixture
def store(data_dir: Path) -> Iterator[NodeStore]:
    opened = NodeStore.open(
        data_dir, write_buffer_bytes=SMALL_BUFFER_BYTES, ballast_bytes=SMALL_BALLAST_BYTES
    )
    try:
        yield opened
    finally:
        opened.close()


def reopen(data_dir: Path) -> NodeStore:
    return NodeStore.open(
        data_dir, write_buffer_bytes=SMALL_BUFFER_BYTES, ballast_bytes=SMALL_BALLAST_BYTES
    )
