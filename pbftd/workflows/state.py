"""The workflow engine's view of chain state: ordered bytes keys, CBOR values.

The engine never touches storage directly.  It reads and writes through the
small :class:`State` interface, so the daemon can back it with the node
store's application state (``NodeStore.get_state`` / ``iter_state`` for
reads, the block's ``WriteBatch.put_state`` / ``delete_state`` for writes)
and tests can back it with :class:`MemoryState`.

A block is executed on an :class:`Overlay` above the committed state: reads
fall through to the base, writes stay in the overlay.  Each transaction runs
on its own overlay above the block's, merged only if it succeeds, so a
refused transaction leaves no trace.  When the block is done the overlay's
write set (sorted ``(key, value or None)``) is what goes into the block's
write batch, and :meth:`Overlay.digest` is the fingerprint of that write set
that the daemon folds into the block's state root (``execute_batch``'s
``app_root``).

Every value written is canonical CBOR (:mod:`pbftd.core.codec`); use
:func:`get_obj` and :func:`put_obj`.  All keys of the engine live under
``wf/`` so they never collide with the attestation index (``ev/``) or the
executed request keys (``req/``).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Any, Protocol

from ..core import codec

__all__ = ["VALUE_SIZE_MAX", "MemoryState", "Overlay", "State", "get_obj", "put_obj"]

VALUE_SIZE_MAX = 1024 * 1024
WRITE_SET_DOMAIN = b"pbftd/workflows/write-set/1"


class State(Protocol):
    """Ordered key-value state.  ``iter_prefix`` yields ``(key, value)`` in
    ascending key order for keys starting with ``prefix`` and not below
    ``start`` (when given); it must be lazy enough that a caller which stops
    early pays only for what it read (RocksDB: an iterator seeked to
    ``max(prefix, start)``)."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def iter_prefix(self, prefix: bytes,
                    start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]: ...


def _check_key(key: bytes) -> None:
    if type(key) is not bytes or not key:
        raise TypeError("state keys are non-empty bytes")


class MemoryState:
    """A dict with a sorted key list: the test and simulator backing."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        _check_key(key)
        if type(value) is not bytes:
            raise TypeError("state values are bytes")
        if key not in self._data:
            insort(self._keys, key)
        self._data[key] = value

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            del self._keys[bisect_left(self._keys, key)]

    def iter_prefix(self, prefix: bytes,
                    start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        lo = prefix if start is None or start < prefix else start
        # lazy and safe against writes during iteration: re-seek after each key
        i = bisect_left(self._keys, lo)
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            key = self._keys[i]
            yield key, self._data[key]
            i = bisect_right(self._keys, key)

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(k, self._data[k]) for k in self._keys]


class Overlay:
    """Buffered writes above a base state; nothing reaches the base until
    :meth:`commit_into` (or the daemon writes :meth:`ops` into its batch)."""

    def __init__(self, base: State) -> None:
        self.base = base
        self._writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        _check_key(key)
        if type(value) is not bytes:
            raise TypeError("state values are bytes")
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        _check_key(key)
        self._writes[key] = None

    def iter_prefix(self, prefix: bytes,
                    start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        lo = prefix if start is None or start < prefix else start
        mine = sorted((k, v) for k, v in self._writes.items()
                      if k.startswith(prefix) and k >= lo)
        base = self.base.iter_prefix(prefix, start)
        j = 0
        for key, value in base:
            while j < len(mine) and mine[j][0] < key:
                if mine[j][1] is not None:
                    yield mine[j]  # type: ignore[misc]
                j += 1
            if j < len(mine) and mine[j][0] == key:
                if mine[j][1] is not None:
                    yield mine[j]  # type: ignore[misc]
                j += 1
                continue
            yield key, value
        for key, value in mine[j:]:
            if value is not None:
                yield key, value

    def ops(self) -> list[tuple[bytes, bytes | None]]:
        """The write set, sorted by key: ``None`` means delete."""
        return sorted(self._writes.items())

    def commit_into(self, target: State) -> None:
        for key, value in self.ops():
            if value is None:
                target.delete(key)
            else:
                target.put(key, value)

    def digest(self, *extra: Any) -> bytes:
        """SHA-256 over the sorted write set (and any ``extra`` values, which
        the engine uses for the block's events and transaction outcomes).
        Equal inputs give equal digests on every node."""
        h = hashlib.sha256(WRITE_SET_DOMAIN)
        for key, value in self.ops():
            h.update(codec.encode([key, value]))
        for item in extra:
            h.update(codec.encode(item))
        return h.digest()


def get_obj(state: State, key: bytes) -> Any:
    """The decoded value at ``key``, or None if absent."""
    raw = state.get(key)
    return None if raw is None else codec.decode(raw, size_max=VALUE_SIZE_MAX)


def put_obj(state: State, key: bytes, value: Any) -> None:
    raw = codec.encode(value)
    if len(raw) > VALUE_SIZE_MAX:
        raise ValueError(f"state value of {len(raw)} bytes exceeds {VALUE_SIZE_MAX}")
    state.put(key, raw)
