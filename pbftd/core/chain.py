"""Blocks: what a committed batch becomes once executed.

Consensus orders batches; execution turns batch ``n`` into block ``n`` by
adding what only execution knows: the hash of block ``n-1``, the state root
after it, and the agreed block time.  Everything here is a pure function of
the previous tip and the batch, so every honest replica computes the same
block hash, and checkpoints (signed block hashes) certify the whole chain.

Block time is ``max(batch_time_ms, previous time + 1)``: the primary's
proposed time, made strictly increasing even across view changes, where a
NEW-VIEW may fill gaps with null batches that carry no time of their own.

A request is executed at most once: a transaction whose (origin, client,
request id) was executed before is kept in the block (its bytes are part of
the agreed batch) but skipped by execution and marked a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import codec
from .crypto import sha256
from .merkle import merkle_root
from .messages import DOMAIN, Batch, batch_digest, encode_tx

__all__ = ["BlockHeader", "ChainTip", "ExecutedBlock", "Tx", "execute_batch"]

RequestKey = tuple[str, str, str]


class _TxFields(NamedTuple):
    origin: str
    sid: int
    client: str
    rid: str
    payload: bytes
    raw: bytes  # the canonical bytes (encode_tx)
    tx_id: bytes  # sha256(raw)


class Tx(_TxFields):
    """One transaction; its bytes and id are computed once, at construction,
    because execution, the stores and the indexes all ask for them.

    A named tuple rather than a frozen dataclass: a block builds a thousand
    of them, and a frozen dataclass's ``__init__`` (one ``object.__setattr__``
    per field) cost ~2 us each beyond the SHA-256, about 3% of a batched
    attestation's CPU per node (issue 6).  Still immutable; ``raw`` and
    ``tx_id`` are functions of the other fields, so equality is unchanged."""

    __slots__ = ()

    def __new__(cls, origin: str, sid: int, client: str, rid: str, payload: bytes,
                raw: bytes = b"") -> Tx:
        """``raw``: the canonical bytes when the caller already has them (a batch's cache)."""
        if not raw:
            raw = encode_tx(origin, sid, client, rid, payload)
        return tuple.__new__(cls, (origin, sid, client, rid, payload, raw, sha256(raw)))

    @property
    def key(self) -> RequestKey:
        return (self.origin, self.client, self.rid)

    def encode(self) -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_hash: bytes
    time_ms: int
    batch_time_ms: int
    tx_root: bytes
    tx_count: int
    state_root: bytes
    proposer: str
    view: int

    def fields(self) -> list[Any]:
        return [self.chain_id, self.height, self.prev_hash, self.time_ms, self.batch_time_ms,
                self.tx_root, self.tx_count, self.state_root, self.proposer, self.view]

    def hash(self) -> bytes:
        return sha256(codec.encode([DOMAIN, "header", *self.fields()]))

    def batch_digest(self) -> bytes:
        """The digest commit certificates sign, recomputed from the header."""
        return batch_digest(self.chain_id, self.height, self.view, self.proposer,
                            self.batch_time_ms, self.tx_root)


@dataclass(frozen=True, slots=True)
class ChainTip:
    """The last executed block: all the next execution depends on."""

    height: int
    block_hash: bytes
    time_ms: int
    state_root: bytes

    @classmethod
    def genesis(cls, genesis_hash: bytes, genesis_time_ms: int) -> ChainTip:
        return cls(0, genesis_hash, genesis_time_ms, sha256(b"pbftd/1 empty state"))


@dataclass(frozen=True, slots=True)
class ExecutedBlock:
    header: BlockHeader
    block_hash: bytes
    txs: tuple[Tx, ...]
    fresh: tuple[Tx, ...]          # executed now, i.e. not duplicates

    @property
    def tip(self) -> ChainTip:
        h = self.header
        return ChainTip(h.height, self.block_hash, h.time_ms, h.state_root)

    def results(self, keys: Iterable[RequestKey],
                earlier: Callable[[RequestKey], tuple[int, bytes] | None],
                ) -> dict[RequestKey, tuple[int, bytes]]:
        """(height, tx_id) that executed each of ``keys`` (keys of this
        block's transactions): this block's own where it executed the key,
        else ``earlier``'s answer, for a duplicate of a key executed in an
        earlier block (a retry that raced its first commit)."""
        mine = {tx.key: tx.tx_id for tx in self.fresh}
        out = {}
        for key in keys:
            tx_id = mine.get(key)
            done = (self.header.height, tx_id) if tx_id is not None else earlier(key)
            if done is not None:
                out[key] = done
        return out


def batch_txs(batch: Batch) -> tuple[Tx, ...]:
    raws = iter(batch.txs())
    return tuple(Tx(s.sender, s.sid, r.client, r.rid, r.payload, next(raws))
                 for s in batch.subs for r in s.requests)


def execute_batch(chain_id: str, tip: ChainTip, batch: Batch,
                  executed_before: Callable[[RequestKey], bool],
                  app_root: Callable[[tuple[Tx, ...]], bytes] | None = None) -> ExecutedBlock:
    """Build block ``tip.height + 1`` from ``batch``.

    ``executed_before`` answers whether a request key is already in the chain;
    ``app_root`` lets the application fold its own state digest into the
    state root (default: the Merkle root of the executed transaction ids).
    """
    assert batch.seq == tip.height + 1, "blocks execute strictly in sequence"
    txs = batch_txs(batch)
    seen: set[RequestKey] = set()
    fresh = []
    for tx in txs:
        if tx.key in seen or executed_before(tx.key):
            continue
        seen.add(tx.key)
        fresh.append(tx)
    fresh_t = tuple(fresh)
    digest = app_root(fresh_t) if app_root else merkle_root([t.tx_id for t in fresh_t])
    state_root = sha256(codec.encode([DOMAIN, "state", tip.state_root, digest]))
    header = BlockHeader(
        chain_id=chain_id, height=batch.seq, prev_hash=tip.block_hash,
        time_ms=max(batch.time_ms, tip.time_ms + 1), batch_time_ms=batch.time_ms,
        tx_root=batch.tx_root(), tx_count=len(txs), state_root=state_root,
        proposer=batch.proposer, view=batch.view,
    )
    return ExecutedBlock(header, header.hash(), txs, fresh_t)
