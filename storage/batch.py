"""A write batch: everything one step of the daemon persists, applied atomically.

The daemon acknowledges a commit only after the batch's ``with`` block has
returned, so all records of a step (block, certificate, transactions, state
changes, metadata) must land together or not at all. The batch collects
operations in one rocksdict WriteBatch and hands it to the store on a clean
exit; an exception inside the block drops it, and nothing is written.

Each method validates all its arguments before adding anything, so a caller
that catches a ValueError inside the block cannot commit half a block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

from rocksdict import WriteBatch

from storage import keys

__all__ = ["Batch"]

CommitFn = Callable[[WriteBatch, "int | None"], None]


class Batch:
    """Operations to commit together; obtain one with ``NodeStore.batch()``."""

    def __init__(self, commit: CommitFn) -> None:
        self._commit = commit
        self._batch = WriteBatch(raw_mode=True)
        self._height_max: int | None = None
        self._done = False

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._check_open()
        self._done = True
        if exc_type is not None:
            self._batch.clear()
            return
        if len(self._batch) == 0:
            return
        self._commit(self._batch, self._height_max)

    def put_block(
        self,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        cert_bytes: bytes,
        tx_ids: Iterable[bytes] = (),
    ) -> None:
        """Store a block, its commit certificate, its hash index and where
        each of its transactions is.

        ``tx_ids`` are the block's transactions in order; each gets a record
        of its height and position, not a copy of its bytes (the block holds
        them: they would be about a third of what a block writes). Writing a
        height again overwrites it: whether that is allowed is a consensus
        rule, not ours.
        """
        self._check_open()
        height_raw = keys.encode_height(height)
        keys.check_value("block", block_bytes)
        keys.check_value("cert", cert_bytes)
        records = [
            (keys.block_key(height), block_bytes),
            (keys.cert_key(height), cert_bytes),
            (keys.hash_key(block_hash), height_raw),
        ]
        # A thousand transactions a block: the height is encoded once, and
        # each value is spliced as keys.encode_tx_value would make it.
        tx_key, encode_tx_index = keys.tx_key, keys.encode_tx_index
        for index, tx_id in enumerate(tx_ids):
            records.append((tx_key(tx_id), height_raw + encode_tx_index(index)))
        for key, value in records:
            self._batch.put(key, value)
        if self._height_max is None or height > self._height_max:
            self._height_max = height

    def put_state(self, key: bytes, value: bytes) -> None:
        self._put(keys.state_key(key), "state value", value)

    def delete_state(self, key: bytes) -> None:
        self._check_open()
        self._batch.delete(keys.state_key(key))

    def put_meta(self, name: str, value: bytes) -> None:
        self._put(keys.meta_key(name), "meta value", value)

    def put_consensus(self, name: str, value: bytes) -> None:
        self._put(keys.consensus_key(name), "consensus value", value)

    def delete_consensus(self, name: str) -> None:
        self._check_open()
        self._batch.delete(keys.consensus_key(name))

    def _put(self, key: bytes, what: str, value: bytes) -> None:
        self._check_open()
        keys.check_value(what, value)
        self._batch.put(key, value)

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError("batch already committed or discarded; start a new one")
