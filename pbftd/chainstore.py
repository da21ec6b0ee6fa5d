"""The daemon's chain on disk: executed blocks, their certificates, the
transaction index, executed request keys and the replica's own records.

It is the daemon's counterpart of the simulator's in-memory store and keeps
the same contract: a block, its transactions, its request keys and the new
tip are written in one synced batch before the replica hears ``on_executed``,
so a crash at any point leaves either the whole block or none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol

from storage import NodeStore

from .core import codec
from .core.chain import BlockHeader, ChainTip, ExecutedBlock, RequestKey, Tx, execute_batch
from .core.crypto import sha256
from .core.merkle import merkle_root
from .core.messages import Batch, Commit, CommittedBlock, Wire, encode_tx

__all__ = ["AppBlock", "Application", "ChainStore", "Indexer", "StoredTx", "TxIndexError",
           "cert_json", "header_json", "stored_leaves", "stored_txs"]

# An application index maintained in the same write batch as the block:
# (put_state, header, transactions executed now) -> None.
Indexer = Callable[[Callable[[bytes, bytes], None], BlockHeader, tuple[Tx, ...]], None]

SIZE_MAX = 64 * 1024 * 1024
REQUEST_PREFIX = b"req/"
APP_ROOT_DOMAIN = "pbftd/app-root/1"
HEADER_NAMES = ("chain_id", "height", "prev_hash", "time_ms", "batch_time_ms", "tx_root",
                "tx_count", "state_root", "proposer", "view")


class TxIndexError(RuntimeError):
    """The store indexes a transaction that its block does not hold where the
    index says (a damaged store: never the caller's fault)."""


class StoredTx(NamedTuple):
    """A committed transaction found by its id, with the block that holds it."""

    height: int
    index: int
    record: dict[str, Any]  # the stored block record: header and batch
    tx: Tx


class AppBlock(Protocol):
    """A block executed by the application, not yet written."""

    @property
    def digest(self) -> bytes: ...

    def write(self, batch: Any, header: BlockHeader, fresh: tuple[Tx, ...]) -> None: ...


class Application(Protocol):
    """Deterministic logic run in every block on committed state (the
    workflows, pbftd/workflow_app.py): ``execute`` must not write; its
    result's ``write`` puts everything into the block's write batch."""

    def execute(self, height: int, time_ms: int, fresh: tuple[Tx, ...]) -> AppBlock: ...


def _request_state_key(key: RequestKey) -> bytes:
    """A request's at-most-once record key: its (origin, client, rid), all
    checked strings (a parsed request's, or an RPC caller's schema-checked)."""
    return REQUEST_PREFIX + codec.encode_fields(key)


def _request_value(height: int, tx_id: bytes) -> bytes:
    return codec.encode_fields((height, tx_id))


class ChainStore:
    def __init__(self, store: NodeStore, chain_id: str, genesis: ChainTip,
                 indexers: Iterable[Indexer] = (), app: Application | None = None) -> None:
        self.store = store
        self.chain_id = chain_id
        self.indexers = tuple(indexers)
        self.app = app
        self._tip = self._load_tip() or genesis

    # ------------------------------------------------------------ reads

    def tip(self) -> ChainTip:
        return self._tip

    def reload_tip(self) -> None:
        """Re-read the tip after a failed write (memory may be ahead of disk)."""
        self._tip = self._load_tip() or self._tip

    def _load_tip(self) -> ChainTip | None:
        raw = self.store.get_meta("tip")
        if raw is None:
            return None
        height, block_hash, time_ms, state_root = codec.decode(raw, size_max=SIZE_MAX)
        return ChainTip(height, block_hash, time_ms, state_root)

    def _executed_among(self, batch: Batch) -> tuple[set[RequestKey], dict[RequestKey, bytes]]:
        """Which of the batch's request keys were executed in earlier blocks,
        with each key's state key: one RocksDB multi-get for the whole batch
        instead of a point lookup per transaction, and each state key
        encoded once for both the lookup and the block's write."""
        keys = dict.fromkeys((s.sender, r.client, r.rid) for s in batch.subs for r in s.requests)
        state_keys = {key: _request_state_key(key) for key in keys}
        found = self.store.get_states(list(state_keys.values()))
        done = {key for key, raw in zip(state_keys, found, strict=True) if raw is not None}
        return done, state_keys

    def request_result(self, key: RequestKey) -> tuple[int, bytes] | None:
        """(height, tx id) of the first execution of a request, if any."""
        return self.request_results([key])[0]

    def request_results(self, keys: list[RequestKey]) -> list[tuple[int, bytes] | None]:
        """``request_result`` of many keys with one multi-get (evidence.attestBatch)."""
        found = self.store.get_states([_request_state_key(key) for key in keys])
        return [None if raw is None else _decode_request_value(raw) for raw in found]

    def put_checkpoint_proof(self, seq: int, envelopes: list[list[bytes]]) -> None:
        """Keep a stable checkpoint's certificate (q signed block hashes) for
        good: served with headers, it certifies a whole header, state root
        included, and through prev_hash every header before it."""
        self.store.put_meta_sync(f"ckproof/{seq:020d}", codec.encode(envelopes))

    def checkpoint_proof(self, seq: int) -> list[list[bytes]] | None:
        raw = self.store.get_meta(f"ckproof/{seq:020d}")
        return None if raw is None else codec.decode(raw, size_max=SIZE_MAX)

    def consensus_records(self) -> dict[str, bytes]:
        return dict(self.store.iter_consensus())

    def block_record(self, height: int) -> dict[str, Any] | None:
        """The stored record {header, batch} (written by ``append``)."""
        raw = self.store.get_block(height)
        return None if raw is None else codec.decode_stored(raw, size_max=SIZE_MAX)

    def cert_envelopes(self, height: int) -> list[list[bytes]]:
        raw = self.store.get_cert(height)
        return [] if raw is None else codec.decode(raw, size_max=SIZE_MAX)

    def committed_blocks(self, lo: int, hi: int, wire: Wire) -> list[CommittedBlock]:
        """Blocks lo..hi as a BLOCKS reply needs them (re-parsed and checked)."""
        out = []
        for height in range(lo, min(hi, self._tip.height) + 1):
            record = self.block_record(height)
            if record is None:
                break
            batch = Batch.parse(record["batch"], wire)
            commits = tuple(wire.open_envelope(e, Commit) for e in self.cert_envelopes(height))
            out.append(CommittedBlock(batch, commits))  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------ writes

    def persist(self, puts: Iterable[tuple[str, bytes]], deletes: Iterable[str]) -> None:
        """The replica's records, in one synced write."""
        with self.store.batch() as b:
            for name in deletes:
                b.delete_consensus(name)
            for name, value in puts:
                b.put_consensus(name, value)

    def append(self, batch: Batch, commits: tuple[Commit, ...]) -> ExecutedBlock:
        """Execute ``batch`` on top of the tip and store the block durably.

        With an application, its digest is folded into the state root next to
        the executed transaction ids, and its writes join the block's batch."""
        ran: list[AppBlock] = []
        done, state_keys = self._executed_among(batch)
        block = execute_batch(self.chain_id, self._tip, batch, done.__contains__,
                              None if self.app is None else self._app_root(batch, ran))
        header = block.header
        record = {"header": header.fields(), "batch": batch.to_wire()}
        cert = [c.env.to_wire() for c in commits]
        tip = block.tip
        with self.store.batch() as b:
            b.put_block(header.height, block.block_hash, codec.encode(record), codec.encode(cert),
                        tx_ids=[tx.tx_id for tx in block.txs])
            for tx in block.fresh:
                b.put_state(state_keys[tx.key], _request_value(header.height, tx.tx_id))
            for indexer in self.indexers:
                indexer(b.put_state, header, block.fresh)
            for app_block in ran:
                app_block.write(b, header, block.fresh)
            b.put_meta("tip", codec.encode([tip.height, tip.block_hash, tip.time_ms,
                                            tip.state_root]))
        self._tip = tip
        return block

    def _app_root(self, batch: Batch, ran: list[AppBlock]) -> Callable[[tuple[Tx, ...]], bytes]:
        assert self.app is not None
        app, tip = self.app, self._tip
        # the block time exactly as execute_batch makes it (AppBlock.write
        # asserts the header agrees): the application runs before the header
        time_ms = max(batch.time_ms, tip.time_ms + 1)

        def app_root(fresh: tuple[Tx, ...]) -> bytes:
            app_block = app.execute(batch.seq, time_ms, fresh)
            ran.append(app_block)
            return sha256(codec.encode([APP_ROOT_DOMAIN, merkle_root([t.tx_id for t in fresh]),
                                        app_block.digest]))
        return app_root

    # ------------------------------------------------------------ views for RPC

    def block_json(self, height: int) -> dict[str, Any] | None:
        record = self.block_record(height)
        if record is None:
            return None
        header = BlockHeader(*record["header"])
        return {
            "header": header_json(header),
            "block_hash": header.hash().hex(),
            "tx_ids": [tx.tx_id.hex() for tx in stored_txs(record["batch"])],
            "commit_certificate": cert_json(self.cert_envelopes(height)),
        }

    def find_tx(self, tx_id: bytes) -> StoredTx | None:
        """The committed transaction ``tx_id`` and its block, or None.

        The transaction index holds only (height, index) (storage/keys.py,
        format 2), so the bytes are read from the block and checked against
        the id: a damaged index is an error here, never a wrong answer.
        Reading it from a block of 1,000 costs about a millisecond (the
        submissions are decoded, one Tx is built); storing each transaction
        twice cost a quarter of the bytes written per attestation
        (docs/PERFORMANCE.md, session 10).
        """
        found = self.store.get_tx(tx_id)
        if found is None:
            return None
        height, index = found
        record = self.block_record(height)
        if record is None:
            raise TxIndexError(f"tx {tx_id.hex()} indexed at height {height}, no such block")
        tx = stored_tx_at(record["batch"], index)
        if tx is None or tx.tx_id != tx_id:
            raise TxIndexError(f"block {height} does not hold tx {tx_id.hex()} at {index}")
        return StoredTx(height, index, record, tx)

    def tx_json(self, tx_id: bytes) -> dict[str, Any] | None:
        found = self.find_tx(tx_id)
        if found is None:
            return None
        tx = found.tx
        return {"tx_id": tx_id.hex(), "status": "committed", "height": found.height,
                "tx": {"index": found.index, "origin": tx.origin, "submission": tx.sid,
                       "client": tx.client, "request_id": tx.rid, "payload_hex": tx.payload.hex()}}


def _decode_request_value(raw: bytes) -> tuple[int, bytes]:
    height, tx_id = codec.decode(raw, size_max=SIZE_MAX)
    return height, tx_id


def stored_txs(batch_wire: Mapping[str, Any]) -> list[Tx]:
    """The transactions of a stored batch, in order."""
    return [Tx(origin, sid, client, rid, payload)
            for origin, sid, requests in _stored_submissions(batch_wire)
            for client, rid, payload in requests]


def stored_leaves(batch_wire: Mapping[str, Any]) -> list[bytes]:
    """The canonical bytes of a stored batch's transactions (its Merkle
    leaves), in order, without building a ``Tx`` (and hashing its id) each."""
    return [encode_tx(origin, sid, client, rid, payload)
            for origin, sid, requests in _stored_submissions(batch_wire)
            for client, rid, payload in requests]


def stored_tx_at(batch_wire: Mapping[str, Any], index: int) -> Tx | None:
    """The ``index``-th transaction of a stored batch, or None past its end;
    builds that one Tx only."""
    for origin, sid, requests in _stored_submissions(batch_wire):
        if index < len(requests):
            client, rid, payload = requests[index]
            return Tx(origin, sid, client, rid, payload)
        index -= len(requests)
    return None


def _stored_submissions(batch_wire: Mapping[str, Any]) -> Iterator[tuple[str, int, list[Any]]]:
    """(origin, sid, requests) of each submission of a stored batch.

    Stored batches were fully checked when committed, so their submissions
    are decoded without verifying signatures or their spelling again.
    """
    for env in batch_wire["subs"]:
        _domain, _chain, _type, origin, body = codec.decode_stored(env[0], size_max=SIZE_MAX)
        yield origin, body["sid"], body["requests"]


def header_json(header: BlockHeader) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v)
            for k, v in zip(HEADER_NAMES, header.fields(), strict=True)}


def cert_json(envelopes: list[list[bytes]]) -> dict[str, Any]:
    """A stored commit certificate as JSON: each COMMIT's signed bytes, verbatim,
    and its signature; (view, seq, digest) are read from the COMMITs. Anyone
    with the validators' keys can check it (docs/PROOFS.md)."""
    head: dict[str, Any] = {"view": 0, "seq": 0, "digest": ""}
    sigs = []
    for signed, sig in envelopes:
        _domain, _chain, _type, sender, body = codec.decode(signed, size_max=SIZE_MAX)
        head = {"view": body["v"], "seq": body["n"], "digest": body["d"].hex()}
        sigs.append({"validator": sender, "signed_hex": signed.hex(), "sig_hex": sig.hex()})
    return {**head, "signatures": sigs}
