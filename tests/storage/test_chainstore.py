"""ChainStore.append against the pure core: same blocks, at most once.

Issue 6 replaced the per-transaction at-most-once lookup by one
multi-get per block and splices the request records by hand.  The blocks
must stay exactly what ``core.chain.execute_batch`` makes with a plain set
of executed keys: same hashes, same state roots, same duplicates skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pbftd import evidence
from pbftd.chainstore import ChainStore, TxIndexError
from pbftd.core import codec
from pbftd.core.chain import ChainTip, execute_batch
from pbftd.core.crypto import Signer, sha256
from pbftd.core.messages import Batch, Request, Submit
from storage import NodeStore, keys

CHAIN_ID = "chainstore-test"
SIGNER = Signer.from_seed(sha256(b"chainstore-test"))
GENESIS = ChainTip.genesis(sha256(b"genesis"), 1_000)


def _batch(seq: int, subs: list[tuple[str, int, list[str]]]) -> Batch:
    """A batch of submissions (origin, sid, request ids), one client."""
    made = tuple(Submit.create(SIGNER, CHAIN_ID, origin, sid, tuple(
        Request("clerk", rid, evidence.attest_payload(sha256(rid.encode()).hex(), "judgment",
                                                      f"case {rid}", None)) for rid in rids))
        for origin, sid, rids in subs)
    return Batch(seq, 0, "spc", 1_000 + seq, made)


BATCHES = [
    _batch(1, [("spc", 1, ["a", "b", "a"]), ("jl-high", 1, ["a"])]),   # "a" twice from spc
    _batch(2, [("spc", 2, ["b", "c"]), ("jl-high", 2, ["a", "d"])]),   # spc b, jl-high a: done
    _batch(3, []),                                                     # a null batch
    _batch(4, [("spc", 3, ["c", "e", "e"])]),
]


def test_blocks_match_the_pure_execution_with_a_set(tmp_path: Path) -> None:
    store = NodeStore.open(tmp_path / "n", write_buffer_bytes=1 << 20, ballast_bytes=0,
                           sync_writes=False)
    try:
        chain = ChainStore(store, CHAIN_ID, GENESIS, indexers=[evidence.index_block])
        tip, executed, fresh_counts = GENESIS, set(), []
        for batch in BATCHES:
            expected = execute_batch(CHAIN_ID, tip, batch, executed.__contains__)
            executed |= {tx.key for tx in expected.fresh}
            tip = expected.tip
            stored = chain.append(batch, ())
            assert stored.block_hash == expected.block_hash
            assert [tx.key for tx in stored.fresh] == [tx.key for tx in expected.fresh]
            fresh_counts.append(len(stored.fresh))
            for tx in stored.fresh:
                raw = store.get_state(b"req/" + codec.encode(list(tx.key)))
                assert raw == codec.encode([batch.seq, tx.tx_id])
        assert fresh_counts == [3, 2, 0, 1]  # the repeats above were really skipped
        assert chain.tip() == tip
        first_a = chain.request_result(("spc", "clerk", "a"))
        assert first_a is not None and first_a[0] == 1
        assert chain.request_results([("jl-high", "clerk", "d"), ("spc", "clerk", "zz"),
                                      ("spc", "clerk", "e")]) == [
            (2, chain.request_result(("jl-high", "clerk", "d"))[1]),  # type: ignore[index]
            None, (4, chain.request_result(("spc", "clerk", "e"))[1])]  # type: ignore[index]
    finally:
        store.close()


def test_a_transaction_is_found_in_its_block_and_a_damaged_index_is_an_error(
        tmp_path: Path) -> None:
    """The ``t/`` record holds only (height, index) (store format 2): the
    bytes come from the block, and a record that points elsewhere fails
    loudly instead of answering with another transaction."""
    store = NodeStore.open(tmp_path / "n", write_buffer_bytes=1 << 20, ballast_bytes=0,
                           sync_writes=False)
    try:
        chain = ChainStore(store, CHAIN_ID, GENESIS, indexers=[evidence.index_block])
        blocks = [chain.append(batch, ()) for batch in BATCHES]
        for block in blocks:
            for tx in block.txs:
                found = chain.find_tx(tx.tx_id)
                assert found is not None and found.height == block.header.height
                # a request repeated inside one submission is the same tx twice
                # in the block: its record names one of the places
                assert found.tx == tx == block.txs[found.index]
                assert chain.tx_json(tx.tx_id) == {
                    "tx_id": tx.tx_id.hex(), "status": "committed",
                    "height": block.header.height,
                    "tx": {"index": found.index, "origin": tx.origin, "submission": tx.sid,
                           "client": tx.client, "request_id": tx.rid,
                           "payload_hex": tx.payload.hex()}}
        assert chain.find_tx(sha256(b"never submitted")) is None
        assert chain.tx_json(sha256(b"never submitted")) is None

        tx = blocks[1].txs[0]
        db = store._require_db()
        db.put(keys.tx_key(tx.tx_id), keys.encode_tx_value(2, 1))  # another tx's place
        with pytest.raises(TxIndexError, match="does not hold tx"):
            chain.find_tx(tx.tx_id)
        db.put(keys.tx_key(tx.tx_id), keys.encode_tx_value(2, 99))  # past the block's end
        with pytest.raises(TxIndexError, match="does not hold tx"):
            chain.tx_json(tx.tx_id)
        db.put(keys.tx_key(tx.tx_id), keys.encode_tx_value(50, 0))  # no such block
        with pytest.raises(TxIndexError, match="no such block"):
            chain.find_tx(tx.tx_id)
    finally:
        store.close()
