"""The workflows in the daemon's execution path: ChainStore.append runs the
engine over the node store (WorkflowApp), folds its digest into the state
root and writes its effects in the block's batch."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from pbftd import evidence
from pbftd.core import codec
from pbftd.core.chain import Tx
from pbftd.events import TOPICS, ChainEventSource, EventHub, register_event_methods
from pbftd.workflow_app import StoreState
from pbftd.workflow_keeper import TICK_PAYLOAD, next_deadline_ms
from pbftd.workflows import EVENT_TOPICS, reads
from rpc.jsonrpc import Dispatcher, RpcContext

from .harness import DAY_MS, HOUR_MS, TxMaker, at, ref, register_params
from .storechain import store_chains

T0 = at(2020, 10, 1, 9)
CN = "(2020)吉0102民初1号"


def _flow(mk: TxMaker) -> list[tuple[int, list[Tx]]]:
    """Attest, register with a deadline already passed, fall due, not performed."""
    p = register_params(CN, "2020-09-30")
    creditor = p["obligations"][0]["creditor_ref"]
    return [
        (T0, [mk.attest("cc-nanguan", p["document_sha256"], CN)]),
        (T0 + HOUR_MS, [mk.op("cc-nanguan", "case.register", p),
                        # another court never attested this document: refused
                        mk.op("cc-kuancheng", "case.register",
                              {**p, "case_no": "(2020)吉0103民初9号"})]),
        (T0 + 2 * HOUR_MS, []),   # time-based: the case fell due at 1 Oct 00:00
        (T0 + DAY_MS, [mk.op("cc-nanguan", "case.confirmPerformance",
                             {"case_no": CN, "creditor_ref": creditor, "performed": False})]),
    ]


def test_two_stores_fed_the_same_blocks_reach_equal_state_roots(tmp_path: Path) -> None:
    mk = TxMaker()
    flow = _flow(mk)
    with store_chains(tmp_path, 2, at(2020, 9, 1)) as (a, b):
        blocks = []
        for t, txs in flow:
            ba, bb = a.block(t, txs), b.block(t, txs)
            assert ba.header.state_root == bb.header.state_root
            assert ba.block_hash == bb.block_hash
            blocks.append(ba)
        assert a.app_state() == b.app_state()

        register, refused = blocks[1].fresh
        assert a.app.result(register.tx_id)["ok"] is True
        error = a.app.result(refused.tx_id)
        assert error["ok"] is False and error["error"]["code"] == "not_attested"
        assert error["height"] == 2

        case = reads.case_get(StoreState(a.store), CN)
        assert case["state"] == "awaiting_signature"
        app_sha = case["application"]["sha256"]
        [rec] = evidence.records_for(a.store.iter_state, bytes.fromhex(app_sha))
        assert (rec["kind"], rec["court"], rec["height"]) == \
            ("enforcement_application", "cc-nanguan", 4)
        assert a.app.is_attested_by(bytes.fromhex(app_sha), "cc-nanguan")
        assert not a.app.is_attested_by(bytes.fromhex(app_sha), "cc-kuancheng")


def test_the_application_digest_is_part_of_the_state_root(tmp_path: Path) -> None:
    flow = _flow(TxMaker())
    with store_chains(tmp_path / "app", 1, at(2020, 9, 1)) as (a,), \
            store_chains(tmp_path / "plain", 1, at(2020, 9, 1), with_app=False) as (plain,):
        for t, txs in flow:
            assert a.block(t, txs).header.state_root != plain.block(t, txs).header.state_root


def test_events_are_stored_per_height_and_replayed_in_block_order(tmp_path: Path) -> None:
    mk = TxMaker()
    with store_chains(tmp_path, 1, at(2020, 9, 1)) as (a,):
        for t, txs in _flow(mk):
            a.block(t, txs)
        source = ChainEventSource(a.chain, a.app)
        seen = [(h, topic) for h in range(1, 5) for topic, _e in source.events_at(h)]
        assert seen == [
            (1, "blocks"), (1, "attestations"),
            (2, "blocks"), (2, "case.registered"),
            (3, "blocks"), (3, "case.due"),
            (4, "blocks"), (4, "attestations"), (4, "case.awaitingSignature")]
        due = source.events_at(3)[1][1]
        assert due["case_no"] == CN and due["notify"] == [ref("c" + CN)]
        generated = source.events_at(4)[1][1]
        assert generated["kind"] == "enforcement_application"
        assert generated["sha256"] == reads.case_get(StoreState(a.store), CN)[
            "application"]["sha256"]


def test_a_restarted_store_continues_with_the_same_roots(tmp_path: Path) -> None:
    """A node restarted (or catching up by state transfer) re-executes through
    the same append and agrees with one that never stopped."""
    mk = TxMaker()
    flow = _flow(mk)
    with store_chains(tmp_path / "steady", 1, at(2020, 9, 1)) as (steady,):
        for t, txs in flow:
            steady.block(t, txs)
        with store_chains(tmp_path / "restarted", 1, at(2020, 9, 1)) as (first,):
            for t, txs in flow[:2]:
                first.block(t, txs)
        with store_chains(tmp_path / "restarted", 1, at(2020, 9, 1)) as (again,):
            assert again.chain.tip().height == 2
            again.sids = dict(first.sids)   # the same submissions follow
            for t, txs in flow[2:]:
                again.block(t, txs)
            assert again.state_root() == steady.state_root()
            assert again.app_state() == steady.app_state()


def test_the_keeper_sees_the_next_deadline_and_a_tick_fires_it(tmp_path: Path) -> None:
    mk = TxMaker()
    flow = _flow(mk)
    with store_chains(tmp_path, 1, at(2020, 9, 1)) as (a,):
        assert next_deadline_ms(a.store) is None
        for t, txs in flow[:2]:
            a.block(t, txs)
        assert next_deadline_ms(a.store) == at(2020, 10, 1)
        tick = Tx("cc-nanguan", 9, "pbftd/keeper", "tick-2", TICK_PAYLOAD)
        a.block(T0 + 2 * HOUR_MS, [tick])
        assert a.events(3)["events"][0]["topic"] == "case.due"
        # the reminder is the next deadline now
        assert next_deadline_ms(a.store) == a.chain.tip().time_ms + 3 * DAY_MS


def _subscribe(scopes: set[str], topics: list[str]) -> dict:
    dispatcher = Dispatcher(title="t", version="0")
    register_event_methods(dispatcher, EventHub(ChainEventSource(None)))
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe",
                       "params": {"topics": topics}}).encode()
    ctx = RpcContext(scopes=frozenset(scopes), authenticated=True)
    return json.loads(trio.run(dispatcher.handle_body, body, ctx))


def test_each_workflow_topic_needs_its_read_scope() -> None:
    assert set(EVENT_TOPICS) < set(TOPICS)
    refused = _subscribe({"case:read"}, ["case.due", "enforcement.termExpiring"])["error"]
    assert refused["code"] == -32001
    assert refused["data"]["required_scope"] == "enforcement:read"
    assert _subscribe({"case:read"}, ["blocks"])["error"]["data"]["required_scope"] == \
        "evidence:read"
    # the scope is right: refused only for want of a WebSocket
    assert _subscribe({"case:read", "enforcement:read"},
                      ["case.due", "agency.reported"])["error"]["code"] == -32006


def test_store_state_lists_from_a_start_key_like_memory_state(tmp_path: Path) -> None:
    """Paged reads (case.list's ``after``, enforcement.expiring) seek in
    RocksDB; they must list exactly what the engine's in-memory State does."""
    from pbftd.workflows import MemoryState
    from storage import NodeStore

    store = NodeStore.open(tmp_path / "node", write_buffer_bytes=1 << 20, ballast_bytes=0)
    try:
        memory = MemoryState()
        keys = [b"wf/x/" + bytes([i]) for i in (1, 2, 3, 250)] + [b"wf/y/1"]
        with store.batch() as b:
            for key in keys:
                b.put_state(key, key)
                memory.put(key, key)
        on_disk = StoreState(store)
        for start in (None, b"", b"wf/x/", b"wf/x/\x02", b"wf/x/\x02\x00", b"wf/x/\xff", b"wf/z"):
            assert list(on_disk.iter_prefix(b"wf/x/", start)) == \
                list(memory.iter_prefix(b"wf/x/", start)), start
    finally:
        store.close()


def test_attestation_like_payloads_of_other_shapes_execute_and_index_nothing(
        tmp_path: Path) -> None:
    """Any court can submit any payload.  Until session 6 an attestation
    without a ``case_no`` raised KeyError inside ``ChainStore.append``, on
    every node, at the same block: the chain stopped there for good."""
    sha = "ab" * 32
    odd = [codec.encode({"op": "attest", "kind": "ruling", "sha256": bytes.fromhex(sha)}),
           codec.encode({"op": "attest", "kind": "ruling", "sha256": bytes.fromhex(sha),
                         "case_no": 7}),
           codec.encode({"op": "attest", "kind": "ruling", "sha256": bytes.fromhex(sha),
                         "case_no": "c", "title": ["not", "text"]})]
    good = evidence.attest_payload(sha, "ruling", "c", None)
    txs = [Tx("spc", 0, "clerk", f"odd-{i}", p) for i, p in enumerate(odd)]
    txs.append(Tx("spc", 0, "clerk", "good", good))
    with store_chains(tmp_path, 2, T0) as nodes:
        blocks = [node.block(T0, txs) for node in nodes]
        assert len({b.block_hash for b in blocks}) == 1
        assert len({node.state_root() for node in nodes}) == 1
        for node in nodes:
            records = evidence.records_for(node.store.iter_state, bytes.fromhex(sha))
            assert [r["request_id"] for r in records] == ["good"]


def test_a_request_repeated_in_its_submission_is_one_attestation_event(tmp_path: Path) -> None:
    """A court may put the same request twice in one SUBMIT: one transaction
    id, executed and indexed once (the second is a duplicate), so one event."""
    tx = TxMaker().attest("cc-nanguan", ref("doc"), CN)
    with store_chains(tmp_path, 1, at(2020, 9, 1)) as (a,):
        block = a.block(T0, [tx, tx])
        assert (len(block.txs), len(block.fresh)) == (2, 1)
        events = ChainEventSource(a.chain, a.app).events_at(1)
        assert events is not None
        assert [topic for topic, _event in events] == ["blocks", "attestations"]
