"""The judicial workflows (pbftd.workflows) run inside the daemon's blocks.

``ChainStore.append`` calls :meth:`WorkflowApp.execute` from
``execute_batch``'s ``app_root`` hook, so the engine's digest is folded into
the block's state root, and then :meth:`WorkflowBlock.write` inside the block's
write batch.  The block, the engine's writes, the attestation index entries
of the documents it generated, the per-transaction results, the block's
events and the new tip are one synced batch: a crash leaves all of it or
none.  Every node, replica, observer or one catching up by state transfer,
executes every block through this same path, so all reach equal state roots.

The engine reads committed state only (the store, never the batch being
built), as its contract asks; :class:`StoreState` is the adapter.

Beside the engine's own ``wf/`` keys two application records are kept,
outside the state root (they are functions of what is in it):

    wfr/<tx_id>          the result of a workflow transaction (ok / error)
    wfe/<height:8>       the block's events and generated attestations
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from config import Genesis

from . import evidence
from .core import codec
from .core.chain import BlockHeader, Tx
from .workflows import BlockContext, BlockOutcome, Config, Engine

__all__ = ["EVENTS_PREFIX", "RESULTS_PREFIX", "StoreState", "WorkflowApp", "WorkflowBlock",
           "engine_config"]

_log = structlog.get_logger("pbftd.workflows")

RESULTS_PREFIX = b"wfr/"
EVENTS_PREFIX = b"wfe/"
RECORD_SIZE_MAX = 64 * 1024 * 1024


def engine_config(genesis: Genesis) -> Config:
    """The engine's parameters, from genesis (what every node agrees on)."""
    w = genesis.workflows
    return Config(tuple(w.warn_lead_days), w.reminder_days, w.deadlines_per_block)


class StoreState:
    """The workflows' State over the node store's committed application state.

    Reads come from ``store`` (``get_state`` / ``iter_state``); writes go to
    ``batch`` (a ``storage.Batch``), so they land in the block's own write
    batch.  Without a batch the view is read-only (the RPC reads)."""

    def __init__(self, store: Any, batch: Any = None) -> None:
        self.store = store
        self.batch = batch

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.store.get_state(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._writable().put_state(key, value)

    def delete(self, key: bytes) -> None:
        self._writable().delete_state(key)

    def iter_prefix(self, prefix: bytes,
                    start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        items: Iterator[tuple[bytes, bytes]] = self.store.iter_state(prefix, start)
        return items

    def _writable(self) -> Any:
        if self.batch is None:
            raise TypeError("this StoreState is read-only (no write batch)")
        return self.batch


@dataclass(frozen=True, slots=True)
class WorkflowBlock:
    """One block's execution, waiting to be written with the block."""

    outcome: BlockOutcome
    height: int
    time_ms: int

    @property
    def digest(self) -> bytes:
        return self.outcome.digest

    def write(self, batch: Any, header: BlockHeader, fresh: tuple[Tx, ...]) -> None:
        """Inside the block's write batch: state ops, generated attestations
        in the evidence index, results by tx id, events by height."""
        assert (header.height, header.time_ms) == (self.height, self.time_ms), \
            "the engine ran with another block's height or time"
        out = self.outcome
        state = StoreState(None, batch)
        for key, value in out.ops:
            if value is None:
                state.delete(key)
            else:
                state.put(key, value)
        rids = {tx.tx_id.hex(): tx for tx in fresh}
        for att in out.attestations:
            tx = rids[att["tx_id"]]
            batch.put_state(evidence.index_key(bytes.fromhex(att["sha256"]), tx.tx_id),
                            evidence.encode_record(
                                kind=att["kind"], court=att["court"], title=att.get("title"),
                                client=tx.client, height=self.height, case_no=att["case_no"],
                                time_ms=self.time_ms, request_id=tx.rid))
        for tx_id, result in out.results:
            batch.put_state(RESULTS_PREFIX + tx_id,
                            codec.encode({**result, "height": self.height}))
        if out.events or out.attestations:
            batch.put_state(events_key(self.height), codec.encode(
                {"events": out.events, "attestations": out.attestations}))


def events_key(height: int) -> bytes:
    return EVENTS_PREFIX + height.to_bytes(8, "big")


class WorkflowApp:
    """The application ChainStore runs in every block (see the module doc)."""

    def __init__(self, store: Any, config: Config | None = None) -> None:
        self.store = store
        self.engine = Engine(config, self.is_attested_by)

    def is_attested_by(self, digest: bytes, court: str) -> bool:
        """Whether ``court`` attested ``digest``, from the committed evidence index."""
        return any(rec["court"] == court
                   for rec in evidence.records_for(self.store.iter_state, digest))

    def execute(self, height: int, time_ms: int, fresh: tuple[Tx, ...]) -> WorkflowBlock:
        outcome = self.engine.execute_block(StoreState(self.store),
                                            BlockContext(height, time_ms), fresh)
        for tx_id, result in outcome.results:
            if not result["ok"] and result["error"]["code"] == "internal_error":
                _log.error("workflow_operation_crashed", height=height, tx_id=tx_id.hex(),
                           reason=result["error"]["message"],
                           action="refused on every node; reproduce with this transaction")
        return WorkflowBlock(outcome, height, time_ms)

    # ------------------------------------------------------------ reads

    def state(self) -> StoreState:
        """A read-only view of the committed workflow state (the RPC reads)."""
        return StoreState(self.store)

    def result(self, tx_id: bytes) -> dict[str, Any] | None:
        """``{ok, result | error, height}`` of an executed workflow transaction."""
        raw = self.store.get_state(RESULTS_PREFIX + tx_id)
        return None if raw is None else codec.decode(raw, size_max=RECORD_SIZE_MAX)

    def block_events(self, height: int) -> dict[str, list[dict[str, Any]]]:
        """The events and generated attestations of block ``height`` (empty if none)."""
        raw = self.store.get_state(events_key(height))
        if raw is None:
            return {"events": [], "attestations": []}
        return codec.decode(raw, size_max=RECORD_SIZE_MAX)  # type: ignore[no-any-return]

