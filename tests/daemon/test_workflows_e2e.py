"""The judicial workflows end to end on four real daemons through JSON-RPC
(issue 5): the calls a court system makes, docs/WORKFLOWS.md.

Deadlines are set in the past relative to the machine's clock, so the next
block's time has reached them; the validators' deadline keeper makes that
block without any other write.  The basic court registers cases; the
intermediate court above it handles enforcement.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from pbftd.testnet import TESTNET_AGENCY
from pbftd.workflows.validate import shanghai_date
from rpc.client import RpcCallError, RpcClient

from .harness import Cluster, backups, wait_until

BASIC, MID, HIGH = "jl-cc-nanguan-basic", "jl-cc-intermediate", "jl-high"
TODAY = shanghai_date(int(time.time() * 1000))
DUE_S = 20


def _day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


def _sha() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster.running(tmp_path_factory.mktemp("workflows") / "testnet") as c:
        yield c


def _client(cluster: Cluster, court: str) -> RpcClient:
    return cluster.client(court, timeout_s=30)


def _write(cluster: Cluster, court: str, method: str, params: dict[str, Any]) -> Any:
    answer = _client(cluster, court).call(method, {**params, "wait": True})
    assert answer["status"] == "committed", answer
    return answer


def _register(cluster: Cluster, n: int, kind: str = "mediation") -> dict[str, Any]:
    """Attest the document, then register the case with yesterday's deadline."""
    case_no = f"(2026)吉0102民初{n}{uuid.uuid4().int % 10**6}号"
    document, creditor, debtor = _sha(), _sha(), _sha()
    _write(cluster, BASIC, "evidence.attest", {
        "sha256": document, "kind": "judgment" if kind == "judgment" else "mediation_agreement",
        "case_no": case_no})
    reg = _write(cluster, BASIC, "case.register", {
        "case_no": case_no, "kind": kind, "document_sha256": document,
        "effective_date": _day(-30), "performance_deadline": _day(-2),
        "obligations": [{"debtor_ref": debtor, "creditor_ref": creditor,
                         "amount_fen": 1_234_500, "description": "支付货款"}],
        "parties": [{"party_ref": creditor, "role": "plaintiff"},
                    {"party_ref": debtor, "role": "defendant"}]})
    assert reg["result"]["state"] == "pending"
    return {"case_no": case_no, "creditor": creditor, "debtor": debtor, "height": reg["height"]}


def _case(cluster: Cluster, court: str, case_no: str) -> dict[str, Any]:
    return _client(cluster, court).call("case.get", {"case_no": case_no})["case"]


def _wait_due(cluster: Cluster, case: dict[str, Any], court: str = BASIC) -> int:
    """Wait until the case is due (no write from us: the keeper ticks); its height."""
    found = wait_until(lambda: (c := _case(cluster, court, case["case_no"]))["state"] != "pending"
                       and c, DUE_S, f"{case['case_no']} to fall due")
    return next(h for state, h, _t in found["history"] if state == "due")


def _not_performed(cluster: Cluster, case: dict[str, Any]) -> str:
    answer = _write(cluster, BASIC, "case.confirmPerformance", {
        "case_no": case["case_no"], "creditor_ref": case["creditor"], "performed": False})
    assert answer["result"]["state"] == "awaiting_signature"
    return str(answer["result"]["application_sha256"])


def _filed(cluster: Cluster, n: int) -> tuple[dict[str, Any], str]:
    """A case through due, not performed, signed and filed at the intermediate court."""
    case = _register(cluster, n)
    _wait_due(cluster, case)
    _not_performed(cluster, case)
    _write(cluster, BASIC, "case.signApplication", {
        "case_no": case["case_no"], "creditor_ref": case["creditor"], "signature_sha256": _sha()})
    ecn = f"(2026)吉01执{n}{uuid.uuid4().int % 10**6}号"
    filed = _write(cluster, MID, "enforcement.file", {"case_no": case["case_no"],
                                                      "enforcement_case_no": ecn})
    assert filed["result"]["state"] == "enforcement_filed"
    return case, ecn


def _events(cluster: Cluster, court: str, topics: list[str], from_height: int,
            count: int, timeout_s: float = 20) -> list[dict[str, Any]]:
    """The first ``count`` events of ``topics`` from ``from_height``, over /ws."""
    files = cluster.court(court)
    url = files.rpc_url.replace("http://", "ws://").rstrip("/") + "/ws"
    token = (files.folder / "admin.token").read_text().strip()
    got: list[dict[str, Any]] = []

    async def collect() -> None:
        async with open_websocket_url(url, extra_headers=[
                (b"authorization", f"Bearer {token}".encode())]) as conn:
            await conn.send_message(json.dumps({
                "jsonrpc": "2.0", "id": 1, "method": "events.subscribe",
                "params": {"topics": topics, "from_height": from_height}}))
            while len(got) < count:
                message = json.loads(await conn.get_message())
                if message.get("method") == "events.notify":
                    got.append(message["params"])
                else:
                    assert "result" in message, message

    async def main() -> None:
        with trio.fail_after(timeout_s):
            await collect()
    trio.run(main)
    return got


def test_mediation_falls_due_then_application_signature_and_filing(cluster: Cluster) -> None:
    case = _register(cluster, 1)
    due_height = _wait_due(cluster, case)
    assert due_height > case["height"]
    [due] = _events(cluster, MID, ["case.due"], due_height, 1)
    assert (due["height"], due["event"]["case_no"], due["event"]["notify"]) == \
        (due_height, case["case_no"], [case["creditor"]])
    application = _not_performed(cluster, case)
    verified = _client(cluster, HIGH).call("evidence.verify", {"sha256": application})
    assert verified["attested"] and verified["records"][0]["kind"] == "enforcement_application"
    assert verified["records"][0]["court"] == BASIC

    signed = _write(cluster, BASIC, "case.signApplication", {
        "case_no": case["case_no"], "creditor_ref": case["creditor"], "signature_sha256": _sha()})
    assert signed["result"]["state"] == "signed"
    ecn = f"(2026)吉01执{uuid.uuid4().int % 10**6}号"
    _write(cluster, MID, "enforcement.file", {"case_no": case["case_no"],
                                              "enforcement_case_no": ecn,
                                              "application_sha256": application})
    linked = _case(cluster, cluster.ids[0], case["case_no"])   # any node answers alike
    assert (linked["state"], linked["enforcement_case_no"]) == ("enforcement_filed", ecn)

    # a refused write answers the engine's reason, naming the field
    with pytest.raises(RpcCallError) as refused:
        _write(cluster, BASIC, "case.signApplication", {
            "case_no": case["case_no"], "creditor_ref": case["creditor"],
            "signature_sha256": _sha()})
    assert refused.value.code == -32020 and refused.value.data["code"] == "bad_state"
    # personal data never reaches the chain
    with pytest.raises(RpcCallError) as personal:
        _write(cluster, MID, "enforcement.record", {
            "enforcement_case_no": ecn, "type": "notice", "note": "电话 13912345678"})
    assert personal.value.code == -32602 and personal.value.data["member"] == "note"


def test_one_key_transfer_of_a_judgment(cluster: Cluster) -> None:
    case = _register(cluster, 2, kind="judgment")
    cert = _write(cluster, BASIC, "case.issueEffectivenessCertificate",
                  {"case_no": case["case_no"]})
    verified = _client(cluster, BASIC).call(
        "evidence.verify", {"sha256": cert["result"]["certificate_sha256"]})
    assert verified["records"][0]["kind"] == "effectiveness_certificate"
    _wait_due(cluster, case)
    _not_performed(cluster, case)
    ecn = f"(2026)吉0102执{uuid.uuid4().int % 10**6}号"
    moved = _write(cluster, BASIC, "case.transferToEnforcement", {
        "case_no": case["case_no"], "enforcement_case_no": ecn,
        "creditor_ref": case["creditor"], "signature_sha256": _sha()})
    assert moved["result"]["state"] == "enforcement_filed"


def test_freeze_warns_settlement_resumes_agencies_and_trail_access(cluster: Cluster) -> None:
    case, ecn = _filed(cluster, 3)
    mid = _client(cluster, MID)
    freeze = _write(cluster, MID, "enforcement.record", {
        "enforcement_case_no": ecn, "type": "freeze", "agency": TESTNET_AGENCY,
        "asset_class": "bank_deposit", "term_end": _day(5), "debtor_ref": case["debtor"],
        "amount_fen": 1_234_500})
    oid = freeze["result"]["order_id"]
    # 6 days left: both leads have passed, the 7-day warning comes with the next block
    [warning] = _events(cluster, MID, ["enforcement.termExpiring"], freeze["height"], 1)
    assert (warning["event"]["order_id"], warning["event"]["lead_days"]) == (oid, 7)
    _write(cluster, MID, "enforcement.record", {
        "enforcement_case_no": ecn, "type": "seizure", "agency": "realestate-cc",
        "asset_class": "real_estate", "term_end": _day(700), "debtor_ref": case["debtor"]})
    with pytest.raises(RpcCallError) as too_long:
        _write(cluster, MID, "enforcement.record", {
            "enforcement_case_no": ecn, "type": "freeze", "agency": TESTNET_AGENCY,
            "asset_class": "bank_deposit", "term_end": _day(400),
            "debtor_ref": case["debtor"]})
    assert too_long.value.code == -32602 and too_long.value.data["member"] == "term_end"
    expiring = mid.call("enforcement.expiring", {"days": 7, "limit": 1})
    assert [o["order_id"] for o in expiring["orders"]] == [oid] and expiring["next"] is None

    # settlement, then the creditor reports it not performed: enforcement resumes
    _write(cluster, MID, "enforcement.record", {"enforcement_case_no": ecn, "type": "settlement",
                                                "deadline": _day(30), "amount_fen": 1_000_000})
    resumed = _write(cluster, MID, "enforcement.record", {
        "enforcement_case_no": ecn, "type": "settlement", "report": "not_performed",
        "creditor_ref": case["creditor"]})
    assert resumed["result"]["state"] == "active"
    [back] = _events(cluster, MID, ["enforcement.resumed"], resumed["height"], 1)
    assert back["event"]["reason"] == "creditor_report"

    # the bank sees its own order only, and its report goes into the trail
    court = cluster.court(MID)
    bank = RpcClient(court.rpc_url, (court.folder / f"{TESTNET_AGENCY}.token").read_text()
                     .strip(), timeout_s=30)
    orders = bank.call("agency.orders", {})
    assert [o["order_id"] for o in orders["orders"]] == [oid] and orders["next"] is None
    assert {o["agency"] for o in orders["orders"]} == {TESTNET_AGENCY}
    reported = bank.call("agency.report", {"order_id": oid, "result": "done", "wait": True})
    assert reported["result"]["status"] == "done"
    listed = bank.call("agency.checkDishonest", {"party_ref": case["debtor"]})
    assert listed["listed"] is False
    # each agency read is recorded on chain, by the agency's client
    for read in (orders, listed):
        recorded = wait_until(lambda r=read: cluster.call(MID, "chain.getTx", {
            "tx_id": r["audit_tx_id"]}), 20, "the agency read's audit record to commit")
        assert recorded["tx"]["client"] == TESTNET_AGENCY
    with pytest.raises(RpcCallError) as not_agency:
        mid.call("agency.orders", {})
    assert not_agency.value.code == -32001

    trail = mid.call("enforcement.trail", {"enforcement_case_no": ecn})
    assert trail["next"] is None
    types = [e["type"] for e in trail["trail"]]
    assert types[0] == "filing" and "agency_report" in types and types.count("settlement") == 2
    assert _client(cluster, HIGH).call("enforcement.trail", {"enforcement_case_no": ecn})
    with pytest.raises(RpcCallError) as below:
        _client(cluster, BASIC).call("enforcement.trail", {"enforcement_case_no": ecn})
    assert below.value.code == -32001 and below.value.data["code"] == "forbidden"


def test_a_deadline_falls_due_at_the_same_height_on_all_nodes_after_a_view_change(
        cluster: Cluster) -> None:
    """Registered in one view; the primary is stopped before the keeper's tick
    (about a second later) is ordered, so the case falls due in a later view.
    Should the tick win that race, the attempt is repeated with a new case."""
    for attempt in range(3):
        primary, others = backups(cluster.statuses())
        registrar = BASIC if primary != BASIC else others[0]
        case = _register_at(cluster, registrar, 10 + attempt)
        cluster.pause(primary)
        try:
            due_height = _wait_due(cluster, case, registrar)
        finally:
            cluster.resume(primary)
        view = _client(cluster, registrar).call("chain.getBlock", {"height": due_height})
        registered = _client(cluster, registrar).call("chain.getBlock",
                                                      {"height": case["height"]})
        if view["header"]["view"] > registered["header"]["view"]:
            break
        cluster.wait_converged(timeout_s=40)
    else:
        pytest.fail("the deadline always fell due before the primary was paused")
    cluster.wait_converged(timeout_s=40)
    for court in cluster.ids:
        history = _case(cluster, court, case["case_no"])["history"]
        assert [h for state, h, _t in history if state == "due"] == [due_height], court
    assert len({cluster.block_hash(court, due_height) for court in cluster.ids}) == 1
    roots = {cluster.call(court, "chain.getBlock", {"height": due_height})["header"]
             ["state_root"] for court in cluster.ids}
    assert len(roots) == 1


def _register_at(cluster: Cluster, court: str, n: int) -> dict[str, Any]:
    case_no = f"(2026)吉0102民初{n}{uuid.uuid4().int % 10**6}号"
    document, creditor, debtor = _sha(), _sha(), _sha()
    _write(cluster, court, "evidence.attest", {"sha256": document, "kind": "mediation_agreement",
                                               "case_no": case_no})
    reg = _write(cluster, court, "case.register", {
        "case_no": case_no, "kind": "mediation", "document_sha256": document,
        "effective_date": _day(-30), "performance_deadline": _day(-1),
        "obligations": [{"debtor_ref": debtor, "creditor_ref": creditor, "amount_fen": 500,
                         "description": "返还借款"}],
        "parties": [{"party_ref": creditor, "role": "plaintiff"},
                    {"party_ref": debtor, "role": "defendant"}]})
    return {"case_no": case_no, "height": reg["height"]}
