"""Durable storage of one pbftd node: blocks, certificates, transactions and state in RocksDB.

Values are opaque bytes here (the daemon encodes them with CBOR); the store
knows nothing of consensus rules. See README.md in this package for the key
layout and the durability contract.
"""

from storage.batch import Batch
from storage.datadir import wipe
from storage.errors import (
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreIOError,
    StoreLockedError,
    StoreReadOnlyError,
)
from storage.store import NodeStore

__all__ = [
    "Batch",
    "NodeStore",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreIOError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "wipe",
]
