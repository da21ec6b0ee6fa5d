"""node.status, chain.getBlock, chain.getTx against a fake NodeApi."""

from __future__ import annotations

from structlog.testing import capture_logs

from rpc.node_api import NodeApi
from tests.rpc.fakes import (
    ADMIN,
    CASE_ONLY,
    READER,
    TX_ID,
    FakeNode,
    call,
    chain_dispatcher,
    request,
)


def test_fake_node_satisfies_the_protocol() -> None:
    assert isinstance(FakeNode(), NodeApi)


def test_node_status_is_public_and_returns_the_node_answer() -> None:
    node = FakeNode()
    got = call(chain_dispatcher(node), request("node.status"))
    assert got["result"] == node.status()


def test_node_status_that_breaks_the_contract_is_an_internal_error() -> None:
    node = FakeNode()
    node.status_override = {**node.status(), "tier": "village"}
    with capture_logs():
        got = call(chain_dispatcher(node), request("node.status"))
    assert got["error"]["code"] == -32603


def test_get_block_needs_evidence_read_and_finds_blocks() -> None:
    node = FakeNode()
    d = chain_dispatcher(node)
    assert call(d, request("chain.getBlock", {"height": 1}))["error"]["code"] == -32001
    assert call(d, request("chain.getBlock", {"height": 1}), CASE_ONLY)["error"]["data"] == {
        "method": "chain.getBlock", "required_scope": "evidence:read"}
    assert node.asked == []  # refused calls never reach the node
    assert call(d, request("chain.getBlock", {"height": 1}), READER)["result"] == node.blocks[1]
    assert call(d, request("chain.getBlock", {"height": 1}), ADMIN)["result"] == node.blocks[1]


def test_get_block_missing_height_is_not_found_with_data() -> None:
    got = call(chain_dispatcher(), request("chain.getBlock", {"height": 99}), READER)
    assert got["error"] == {"code": -32004, "message": "not found", "data": {"height": 99}}


def test_get_block_params_are_validated() -> None:
    for params in ({"height": -1}, {"height": "1"}, {"height": True}, {}, {"height": 1, "x": 0},
                   {"height": 2**63}):
        got = call(chain_dispatcher(), request("chain.getBlock", params), READER)
        assert got["error"]["code"] == -32602, params


def test_get_tx_normalises_case_and_reports_not_found() -> None:
    node = FakeNode()
    d = chain_dispatcher(node)
    got = call(d, request("chain.getTx", {"tx_id": TX_ID.upper()}), READER)
    assert got["result"] == node.txs[TX_ID]
    assert node.asked == [("tx", TX_ID)]
    missing = call(d, request("chain.getTx", {"tx_id": "f" * 64}), READER)
    assert missing["error"] == {"code": -32004, "message": "not found",
                                "data": {"tx_id": "f" * 64}}


def test_get_tx_refuses_malformed_ids() -> None:
    for tx_id in ("f" * 63, "f" * 65, "g" * 64, "f" * 64 + "\n", 5):
        got = call(chain_dispatcher(), request("chain.getTx", {"tx_id": tx_id}), READER)
        assert got["error"]["code"] == -32602
        assert got["error"]["data"]["member"] == "tx_id"
