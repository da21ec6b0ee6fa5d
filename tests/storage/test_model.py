"""The store against a dict model: random batches, aborted batches and reopens.

Checks that what a reader sees (point reads, prefix scans, block ranges,
last_height) equals the model after every step, including across a reopen.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from storage import NodeStore
from tests.storage.blocks import block_hash

# A tiny alphabet so that keys share prefixes and byte-order edges (0x00, 0xff).
KEYS = st.lists(st.sampled_from(b"ab\x00\xff"), min_size=1, max_size=3).map(bytes)
STATE_OP = st.tuples(st.sampled_from(["put", "delete"]), KEYS, st.binary(max_size=4))
BLOCK_OP = st.tuples(st.just("block"), st.integers(0, 300), st.binary(max_size=4))
BATCH = st.tuples(st.booleans(), st.lists(st.one_of(STATE_OP, BLOCK_OP), max_size=6))
PREFIXES = [b"", b"a", b"ab", b"\xff", b"\x00a"]


class _Abort(Exception):
    pass


def _apply(store: NodeStore, ops: list, state: dict, blocks: dict) -> None:
    with store.batch() as b:
        for op, key, value in ops:
            if op == "put":
                b.put_state(key, value)
                state[key] = value
            elif op == "delete":
                b.delete_state(key)
                state.pop(key, None)
            elif op == "block":
                b.put_block(key, block_hash(key), value, b"cert")
                blocks[key] = value
            else:
                raise _Abort


def _check(store: NodeStore, state: dict, blocks: dict) -> None:
    for prefix in PREFIXES:
        expected = sorted((k, v) for k, v in state.items() if k.startswith(prefix))
        assert list(store.iter_state(prefix)) == expected
    assert store.last_height() == (max(blocks) if blocks else None)
    assert list(store.iter_blocks(50, 250)) == sorted(
        (h, v) for h, v in blocks.items() if 50 <= h <= 250
    )


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(BATCH, max_size=8), reopen_after=st.integers(0, 8))
def test_store_matches_model(batches: list, reopen_after: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        state: dict[bytes, bytes] = {}
        blocks: dict[int, bytes] = {}
        store = NodeStore.open(data_dir, write_buffer_bytes=1 << 20, ballast_bytes=0)
        try:
            for index, (commit, ops) in enumerate(batches):
                if commit:
                    _apply(store, ops, state, blocks)
                else:
                    with contextlib.suppress(_Abort):
                        _apply(store, [*ops, ("abort", 0, b"")], dict(state), dict(blocks))
                _check(store, state, blocks)
                if index == reopen_after:
                    store.close()
                    store = NodeStore.open(data_dir, write_buffer_bytes=1 << 20, ballast_bytes=0)
                    _check(store, state, blocks)
        finally:
            store.close()
