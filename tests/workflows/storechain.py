"""The daemon's execution path without the network: blocks of ``Tx`` values
appended to a real ChainStore (RocksDB NodeStore) that runs the evidence
indexer and the WorkflowApp, exactly as ``pbftd.daemon.assemble`` wires it.

Consecutive transactions of one origin become one SUBMIT (its sid counting
per origin), so the transaction ids differ from the in-memory harness's but
the application sees the same transactions in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from pathlib import Path
from typing import Any

from pbftd import evidence
from pbftd.chainstore import ChainStore
from pbftd.core.chain import ChainTip, ExecutedBlock, Tx
from pbftd.core.crypto import Signer, sha256
from pbftd.core.messages import Batch, Request, Submit
from pbftd.workflow_app import WorkflowApp
from pbftd.workflows import Config
from storage import NodeStore

CHAIN_ID = "court-workflow-test"
SIGNER = Signer.from_seed(sha256(b"workflow-test"))


class StoreChain:
    def __init__(self, store: NodeStore, genesis_time_ms: int,
                 config: Config | None = None, with_app: bool = True) -> None:
        self.store = store
        self.app = WorkflowApp(store, config)
        tip = ChainTip.genesis(sha256(b"workflow-test-genesis"), genesis_time_ms)
        self.chain = ChainStore(store, CHAIN_ID, tip, indexers=[evidence.index_block],
                                app=self.app if with_app else None)
        self.sids: dict[str, int] = {}

    def block(self, time_ms: int, txs: list[Tx]) -> ExecutedBlock:
        subs = []
        for origin, run in groupby(txs, key=lambda t: t.origin):
            self.sids[origin] = self.sids.get(origin, 0) + 1
            requests = tuple(Request(t.client, t.rid, t.payload) for t in run)
            subs.append(Submit.create(SIGNER, CHAIN_ID, origin, self.sids[origin], requests))
        batch = Batch(self.chain.tip().height + 1, 0, "spc", time_ms, tuple(subs))
        return self.chain.append(batch, ())

    def state_root(self) -> bytes:
        return self.chain.tip().state_root

    def app_state(self) -> list[tuple[bytes, bytes]]:
        """Every application key and value (workflows, evidence index, results, events)."""
        return [(k, v) for k, v in self.store.iter_state() if not k.startswith(b"req/")]

    def events(self, height: int) -> dict[str, Any]:
        return self.app.block_events(height)


@contextmanager
def store_chains(directory: Path, count: int, genesis_time_ms: int,
                 config: Config | None = None, with_app: bool = True
                 ) -> Iterator[list[StoreChain]]:
    stores = [NodeStore.open(directory / f"node{i}", write_buffer_bytes=1 << 20,
                             ballast_bytes=0, sync_writes=False) for i in range(count)]
    try:
        yield [StoreChain(s, genesis_time_ms, config, with_app) for s in stores]
    finally:
        for s in stores:
            s.close()
