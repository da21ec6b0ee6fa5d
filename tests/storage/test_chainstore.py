"""ChainStore.append against the pure core: same blocks, at most once.

Issue 6 replaced the per-transaction at-most-once lookup by one
multi-get per block and splices the request records by hand.  The blocks
must stay exactly what ``core.chain.execute_batch`` makes with a plain set
of executed keys: same hashes, same state roots, same duplicates skipped.
"""

from __future__ import annotations

from pathlib import Path

from pbftd import evidence
from pbftd.chainstore import ChainStore
from pbftd.core import codec
from pbftd.core.chain import ChainTip, execute_batch
from pbftd.core.crypto import Signer, sha256
from pbftd.core.messages import Batch, Request, Submit
from storage import NodeStore

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
