"""Unit tests of the workflow rules (issue 5), one rule per test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pbftd.workflows import Config, WorkflowError, encode_op, reads
from pbftd.workflows.documents import application_document, sha256_hex

from .harness import DAY_MS, GENESIS, HOUR_MS, Chain, TxMaker, at, doc, ref, register_params

CN = "(2020)吉0102民初1号"
ECN = "(2020)吉0102执1号"
COURT = "cc-nanguan"
BANK, OTHER_BANK = "icbc-jl", "ccb-jl"


def _ok(out, i: int = -1):
    _tx_id, r = out.results[i]
    assert r["ok"], r
    return r["result"]


def _err(out, i: int = -1) -> dict:
    _tx, r = out.results[i]
    assert not r["ok"], r
    return r["error"]


def registered(chain: Chain, mk: TxMaker, deadline: str = "2020-10-10", **kw) -> None:
    p = register_params(CN, deadline, **kw)
    chain.block(at(2020, 10, 1, 9), [mk.attest(COURT, p["document_sha256"], CN),
                                     mk.op(COURT, "case.register", p)])
    _ok(chain.outcomes[-1])


def filed(chain: Chain, mk: TxMaker) -> None:
    """A mediation case through to an enforcement case (deadline 10 Oct)."""
    registered(chain, mk)
    chain.block(at(2020, 10, 11, 9), [mk.op(COURT, "case.confirmPerformance", {
        "case_no": CN, "creditor_ref": ref("c" + CN), "performed": False})])
    chain.block(at(2020, 10, 11, 10), [mk.op(COURT, "case.transferToEnforcement", {
        "case_no": CN, "enforcement_case_no": ECN, "creditor_ref": ref("c" + CN),
        "signature_sha256": doc("sig")})])
    _ok(chain.outcomes[-1])


# ------------------------------------------------------------ validation

@pytest.mark.parametrize(("mutate", "field"), [
    (lambda p: p["obligations"][0].update(description="联系电话13812345678"),
     "obligations[0].description"),
    (lambda p: p["obligations"][0].update(description="身份证220102199003071234"),
     "obligations[0].description"),
    (lambda p: p.update(case_no="(2020)吉0102民初 220102199003071234"), "case_no"),
    (lambda p: p["obligations"][0].update(amount_fen=12.5), "obligations[0].amount_fen"),
    (lambda p: p["obligations"][0].update(amount_fen=0), "obligations[0].amount_fen"),
    (lambda p: p["obligations"][0].update(amount_fen=True), "obligations[0].amount_fen"),
    (lambda p: p["obligations"][0].update(debtor_ref="張三"), "obligations[0].debtor_ref"),
    (lambda p: p["obligations"][0].update(debtor_ref=ref("stranger")),
     "obligations[0].debtor_ref"),
    (lambda p: p.update(performance_deadline="2020-02-30"), "performance_deadline"),
    (lambda p: p.update(performance_deadline="2020-09-01"), "performance_deadline"),
    (lambda p: p.update(kind="ruling"), "kind"),
    (lambda p: p.update(name="张三"), "name"),
])
def test_register_params_refused_with_the_field(mutate, field) -> None:
    p = register_params(CN, "2020-10-10")
    mutate(p)
    with pytest.raises(WorkflowError) as exc:
        encode_op("case.register", p)
    assert exc.value.field == field and exc.value.code == "invalid_params"


def test_register_needs_the_document_attested_by_the_same_court() -> None:
    chain, mk = Chain(), TxMaker()
    p = register_params(CN, "2020-10-10")
    out = chain.block(at(2020, 10, 1), [mk.op(COURT, "case.register", p)])
    assert _err(out)["code"] == "not_attested"
    out = chain.block(at(2020, 10, 1, 1), [mk.attest("cc-kuancheng", doc(CN), CN),
                                           mk.op(COURT, "case.register", p)])
    assert _err(out)["code"] == "not_attested"
    # attested earlier in the same block counts; attested later does not
    out = chain.block(at(2020, 10, 1, 2), [mk.op(COURT, "case.register", p),
                                           mk.attest(COURT, doc(CN), CN),
                                           mk.op(COURT, "case.register", p),
                                           mk.op(COURT, "case.register", p)])
    assert _err(out, 0)["code"] == "not_attested"
    _ok(out, 1)
    assert _err(out, 2)["code"] == "conflict"


def test_a_refused_tx_writes_nothing() -> None:
    a, b, mk = Chain(), Chain(), TxMaker()
    bad = mk.op(COURT, "case.confirmPerformance",
                {"case_no": CN, "creditor_ref": ref("x"), "performed": True})
    out = a.block(at(2020, 10, 1), [bad])
    assert _err(out)["code"] == "not_found"
    assert out.ops == [] and len(a.state) == 0
    assert b.block(at(2020, 10, 1), []).digest != out.digest  # the outcome is in the digest


# ------------------------------------------------------------ due and notices

def test_due_at_the_first_block_reaching_midnight_shanghai_after_the_deadline() -> None:
    chain, mk = Chain(), TxMaker()
    registered(chain, mk, "2020-10-10")
    # 2020-10-10 23:59:59.999 +08:00 is 15:59:59.999 UTC: not yet
    assert chain.block(at(2020, 10, 10, 23, 59, 59, 999), []).events == []
    out = chain.block(at(2020, 10, 11), [])
    assert [e["topic"] for e in out.events] == ["case.due"]
    ev = out.events[0]
    assert ev["case_no"] == CN and ev["notify"] == [ref("c" + CN)] and ev["notice"] == 1
    assert ev["height"] == chain.height
    assert reads.case_get(chain.state, CN)["state"] == "due"


def test_reminder_three_days_after_the_first_notice_only_if_unanswered() -> None:
    chain, mk = Chain(), TxMaker()
    registered(chain, mk)
    chain.block(at(2020, 10, 11, 0, 5), [])
    assert chain.block(at(2020, 10, 14, 0, 4), []).events == []
    out = chain.block(at(2020, 10, 14, 0, 5), [])
    assert [(e["topic"], e["notice"]) for e in out.events] == [("case.reminder", 2)]
    assert chain.block(at(2020, 12, 1), []).events == []  # once only

    answered, mk2 = Chain(), TxMaker()
    registered(answered, mk2)
    answered.block(at(2020, 10, 11, 0, 5), [])
    answered.block(at(2020, 10, 12), [mk2.op(COURT, "case.confirmPerformance", {
        "case_no": CN, "creditor_ref": ref("c" + CN), "performed": True})])
    assert answered.events("case.closed")
    assert answered.block(at(2020, 10, 20), []).events == []


def test_confirm_performed_closes_and_not_performed_makes_the_application() -> None:
    chain, mk = Chain(), TxMaker()
    registered(chain, mk)
    early = chain.block(at(2020, 10, 5), [mk.op(COURT, "case.confirmPerformance", {
        "case_no": CN, "creditor_ref": ref("c" + CN), "performed": False})])
    assert _err(early)["code"] == "bad_state"    # not performed only once due
    out = chain.block(at(2020, 10, 11, 9), [mk.op(COURT, "case.confirmPerformance", {
        "case_no": CN, "creditor_ref": ref("c" + CN), "performed": False}, client="sms")])
    res = _ok(out)
    case = reads.case_get(chain.state, CN)
    assert case["state"] == "awaiting_signature"
    made = {k: case["application"][k] for k in ("height", "tx_id", "date")}
    text = application_document(case, ref("c" + CN), made)
    assert res["application_sha256"] == sha256_hex(text) == case["application"]["sha256"]
    assert "申请执行书" in text.decode() and "10000.00" in text.decode()
    assert out.attestations[0]["sha256"] == res["application_sha256"]
    assert (bytes.fromhex(res["application_sha256"]), COURT) in chain.attested
    again = chain.block(at(2020, 10, 11, 10), [mk.op(COURT, "case.confirmPerformance", {
        "case_no": CN, "creditor_ref": ref("c" + CN), "performed": True})])
    assert _err(again)["code"] == "conflict"


def test_sign_then_file_links_both_ways_and_checks_the_court() -> None:
    chain, mk = Chain(), TxMaker()
    registered(chain, mk)
    chain.block(at(2020, 10, 11, 9), [mk.op(COURT, "case.confirmPerformance", {
        "case_no": CN, "creditor_ref": ref("c" + CN), "performed": False})])
    out = chain.block(at(2020, 10, 11, 10), [
        mk.op(COURT, "enforcement.file", {"case_no": CN, "enforcement_case_no": ECN}),
        mk.op("cc-kuancheng", "case.signApplication", {
            "case_no": CN, "creditor_ref": ref("c" + CN), "signature_sha256": doc("s")}),
        mk.op(COURT, "case.signApplication", {
            "case_no": CN, "creditor_ref": ref("d" + CN), "signature_sha256": doc("s")}),
        mk.op(COURT, "case.signApplication", {
            "case_no": CN, "creditor_ref": ref("c" + CN), "signature_sha256": doc("s")}),
        mk.op(COURT, "enforcement.file", {"case_no": CN, "enforcement_case_no": ECN,
                                          "application_sha256": doc("wrong")}),
        mk.op(COURT, "enforcement.file", {"case_no": CN, "enforcement_case_no": ECN}),
    ])
    assert [(r["ok"], r.get("error", {}).get("code")) for _t, r in out.results] == [
        (False, "bad_state"), (False, "forbidden"), (False, "forbidden"), (True, None),
        (False, "conflict"), (True, None)]
    case = reads.case_get(chain.state, CN)
    enf = reads.enforcement_get(chain.state, ECN)
    assert case["enforcement_case_no"] == ECN and enf["origin_case_no"] == CN
    assert enf["court"] == COURT and enf["amount_fen"] == 1_000_000


def test_judgment_needs_its_effectiveness_certificate() -> None:
    chain, mk = Chain(), TxMaker()
    registered(chain, mk, kind="judgment")
    chain.block(at(2020, 10, 11, 9), [mk.op(COURT, "case.confirmPerformance", {
        "case_no": CN, "creditor_ref": ref("c" + CN), "performed": False})])
    transfer = mk.op(COURT, "case.transferToEnforcement", {
        "case_no": CN, "enforcement_case_no": ECN, "creditor_ref": ref("c" + CN),
        "signature_sha256": doc("s")})
    out = chain.block(at(2020, 10, 11, 10), [transfer])
    assert _err(out)["code"] == "bad_state"
    out = chain.block(at(2020, 10, 11, 11), [
        mk.op(COURT, "case.issueEffectivenessCertificate", {"case_no": CN}), transfer])
    cert = _ok(out, 0)["certificate_sha256"]
    assert out.attestations[0] == {"sha256": cert, "kind": "effectiveness_certificate",
                                   "case_no": CN, "title": "生效证明",
                                   "tx_id": out.results[0][0].hex(), "court": COURT}
    assert _ok(out, 1)["enforcement_case_no"] == ECN
    assert [e["topic"] for e in out.events][-2:] == ["case.signed", "case.enforcementFiled"]


# ------------------------------------------------------------ enforcement

def _record(mk: TxMaker, type_: str, court: str = COURT, **fields):
    return mk.op(court, "enforcement.record",
                 {"enforcement_case_no": ECN, "type": type_, **fields}, client="enforcement")


@pytest.mark.parametrize(("asset", "end", "ok"), [
    ("bank_deposit", "2021-10-11", True), ("bank_deposit", "2021-10-12", False),
    ("movable", "2022-10-11", True), ("movable", "2022-10-12", False),
    ("real_estate", "2023-10-11", True), ("real_estate", "2023-10-12", False),
])
def test_term_maxima(asset, end, ok) -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    out = chain.block(at(2020, 10, 11, 12), [_record(
        mk, "freeze" if asset == "bank_deposit" else "seizure", agency=BANK,
        asset_class=asset, term_end=end, debtor_ref=ref("d" + CN))])
    if ok:
        _ok(out)
    else:
        assert _err(out)["field"] == "term_end"


def test_freeze_warns_at_30_and_7_days_then_expires() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    out = chain.block(at(2020, 10, 12, 9), [_record(
        mk, "freeze", agency=BANK, asset_class="bank_deposit", term_end="2021-03-31",
        debtor_ref=ref("d" + CN), amount_fen=1_000_000)])
    oid = _ok(out)["order_id"]
    expires = at(2021, 4, 1)
    assert chain.block(expires - 30 * DAY_MS - 1, []).events == []
    w30 = chain.block(expires - 30 * DAY_MS, []).events
    assert [(e["topic"], e["lead_days"], e["order_id"]) for e in w30] == [
        ("enforcement.termExpiring", 30, oid)]
    listed = reads.enforcement_expiring(chain.state, chain.time_ms, 30)
    assert [o["order_id"] for o in listed["orders"]] == [oid] and listed["next"] is None
    assert reads.enforcement_expiring(chain.state, at(2020, 12, 1), 30) == {
        "orders": [], "next": None}
    assert chain.block(expires - 7 * DAY_MS - 1, []).events == []
    w7 = chain.block(expires - 7 * DAY_MS, []).events
    assert [(e["topic"], e["lead_days"]) for e in w7] == [("enforcement.termExpiring", 7)]
    gone = chain.block(expires, []).events
    assert [e["topic"] for e in gone] == ["enforcement.termExpired"]
    trail = reads.enforcement_trail(chain.state, COURT, ECN, GENESIS.is_supervisor)
    assert trail["trail"][-1]["type"] == "term_expired"
    assert trail["orders"][0]["status"] == "expired"


def test_a_freeze_recorded_within_a_lead_time_warns_in_the_next_block() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    oid = _ok(chain.block(at(2020, 10, 12, 9), [_record(
        mk, "freeze", agency=BANK, asset_class="bank_deposit", term_end="2020-10-20",
        debtor_ref=ref("d" + CN))]))["order_id"]
    now = chain.block(at(2020, 10, 12, 10), []).events
    assert [(e["topic"], e["lead_days"], e["order_id"]) for e in now] == [
        ("enforcement.termExpiring", 30, oid)]   # 9 days left: the 30-day warning at once
    assert chain.block(at(2020, 10, 13, 23), []).events == []
    w7 = chain.block(at(2020, 10, 14), []).events
    assert [(e["topic"], e["lead_days"]) for e in w7] == [("enforcement.termExpiring", 7)]
    assert chain.block(at(2020, 10, 20, 23), []).events == []
    assert [e["topic"] for e in chain.block(at(2020, 10, 21), []).events] == [
        "enforcement.termExpired"]


def test_renewal_before_expiry_replaces_the_warnings() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    oid = _ok(chain.block(at(2020, 10, 12), [_record(
        mk, "freeze", agency=BANK, asset_class="bank_deposit", term_end="2020-12-31",
        debtor_ref=ref("d" + CN))]))["order_id"]
    new = _ok(chain.block(at(2020, 12, 20), [_record(
        mk, "freeze", agency=BANK, asset_class="bank_deposit", term_end="2021-12-20",
        debtor_ref=ref("d" + CN), renews=oid)]))["order_id"]
    assert chain.block(at(2021, 1, 5), []).events == []   # old term: nothing fires
    orders = {o["order_id"]: o for o in reads.agency_orders(chain.state, BANK)["orders"]}
    assert orders[oid]["status"] == "renewed" and orders[new]["renews"] == oid


def test_settlement_not_performed_resumes_automatically() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    chain.block(at(2020, 10, 12), [_record(mk, "settlement", deadline="2020-11-30",
                                           amount_fen=800_000)])
    assert reads.enforcement_get(chain.state, ECN)["state"] == "settled"
    refused = chain.block(at(2020, 10, 13), [_record(
        mk, "deduction", agency=BANK, debtor_ref=ref("d" + CN), amount_fen=1)])
    assert _err(refused)["code"] == "bad_state"
    assert chain.block(at(2020, 11, 30, 23, 59), []).events == []
    out = chain.block(at(2020, 12, 1), [])
    assert [(e["topic"], e["reason"]) for e in out.events] == [
        ("enforcement.resumed", "settlement_deadline_passed")]
    enf = reads.enforcement_get(chain.state, ECN)
    assert enf["state"] == "active" and enf["settlement"]["status"] == "lapsed"
    trail = reads.enforcement_trail(chain.state, COURT, ECN, GENESIS.is_supervisor)["trail"]
    assert trail[-1]["type"] == "resume" and trail[-1]["details"]["automatic"] is True


def test_settlement_breach_reported_by_the_creditor_resumes_at_once() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    chain.block(at(2020, 10, 12), [_record(mk, "settlement", deadline="2020-11-30")])
    out = chain.block(at(2020, 10, 20), [_record(mk, "settlement", report="not_performed",
                                                 creditor_ref=ref("c" + CN))])
    assert ("enforcement.resumed", "creditor_report") in [
        (e["topic"], e.get("reason")) for e in out.events]
    assert chain.block(at(2020, 12, 2), []).events == []   # the deadline was cancelled


@pytest.mark.parametrize("archive", [False, True])
def test_a_case_closed_during_its_settlement_stays_closed_past_the_deadline(
        archive: bool) -> None:
    """Closure (mode "settled" or any other) ends an open settlement; its
    deadline passing later used to set the closed, even archived, case back
    to active with an automatic resume."""
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    chain.block(at(2020, 10, 12), [_record(mk, "settlement", deadline="2020-11-30")])
    closing = [_record(mk, "closure", mode="settled")] + ([_record(mk, "archive")] if archive
                                                          else [])
    assert all(r["ok"] for _t, r in chain.block(at(2020, 10, 20), closing).results)
    assert chain.block(at(2020, 12, 2), []).events == []
    enf = reads.enforcement_get(chain.state, ECN)
    assert enf["state"] == ("archived" if archive else "closed")
    assert enf["settlement"]["status"] == "closed"


def test_a_bank_sees_and_answers_only_its_own_orders() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    out = chain.block(at(2020, 10, 12), [
        _record(mk, "freeze", agency=BANK, asset_class="bank_deposit",
                term_end="2021-10-01", debtor_ref=ref("d" + CN)),
        _record(mk, "freeze", agency=OTHER_BANK, asset_class="bank_deposit",
                term_end="2021-10-01", debtor_ref=ref("d" + CN)),
        _record(mk, "seizure", agency="jl-realestate", asset_class="real_estate",
                term_end="2023-10-01", debtor_ref=ref("d" + CN)),
    ])
    mine, theirs = _ok(out, 0)["order_id"], _ok(out, 1)["order_id"]
    assert [o["order_id"] for o in reads.agency_orders(chain.state, BANK)["orders"]] == [mine]
    assert [o["order_id"] for o in reads.agency_orders(chain.state, OTHER_BANK)["orders"]] == [
        theirs]
    out = chain.block(at(2020, 10, 13), [
        mk.op("cc-nanguan", "agency.report", {"order_id": theirs, "agency": BANK,
                                              "result": "done", "amount_fen": 5}),
        mk.op("cc-nanguan", "agency.report", {"order_id": mine, "agency": OTHER_BANK,
                                              "result": "refused", "reason": "无此账户"}),
        mk.op("cc-nanguan", "agency.report", {"order_id": mine, "agency": BANK,
                                              "result": "partial", "amount_fen": 300_000,
                                              "reason": "余额不足"}, client="agency:icbc-jl"),
    ])
    assert _err(out, 0)["code"] == "not_found"
    assert _err(out, 1)["code"] == "not_found"
    with pytest.raises(WorkflowError):   # refused needs a reason: stopped at the RPC edge
        encode_op("agency.report", {"order_id": mine, "agency": BANK, "result": "refused"})
    assert _ok(out, 2)["status"] == "partial"
    trail = reads.enforcement_trail(chain.state, COURT, ECN, GENESIS.is_supervisor)["trail"]
    assert trail[-1]["type"] == "agency_report" and trail[-1]["details"]["agency"] == BANK


def test_trail_for_the_handling_court_and_its_supervisors_only() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    for reader in ("cc-nanguan", "cc-mid", "jl-high", "spc"):
        reads.enforcement_trail(chain.state, reader, ECN, GENESIS.is_supervisor)
    for reader in ("cc-kuancheng", "sc-high", "cd-jinjiang"):
        with pytest.raises(WorkflowError) as exc:
            reads.enforcement_trail(chain.state, reader, ECN, GENESIS.is_supervisor)
        assert exc.value.code == "forbidden"
    out = chain.block(at(2020, 10, 12), [_record(mk, "notice", court="cc-kuancheng")])
    assert _err(out)["code"] == "forbidden"   # nor may another court write to it


def test_dishonest_list_add_until_and_remove() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    debtor = ref("d" + CN)
    chain.block(at(2020, 10, 12), [_record(mk, "credit_punishment", party_ref=debtor,
                                           measure="dishonest_list", action="add",
                                           until="2022-10-11")])
    got = reads.check_dishonest(chain.state, debtor, at(2020, 10, 13))
    assert got["listed"] and got["listings"][0]["enforcement_case_no"] == ECN
    assert got["listings"][0]["listed_date"] == "2020-10-12"
    assert not reads.check_dishonest(chain.state, debtor, at(2020, 10, 11))["listed"]
    assert not reads.check_dishonest(chain.state, debtor, at(2022, 10, 12))["listed"]
    assert not reads.check_dishonest(chain.state, ref("c" + CN), at(2020, 10, 13))["listed"]
    chain.block(at(2020, 10, 14), [_record(mk, "credit_punishment", party_ref=debtor,
                                           measure="dishonest_list", action="remove")])
    assert not reads.check_dishonest(chain.state, debtor, at(2020, 10, 15))["listed"]


def test_closure_and_archive_order() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    out = chain.block(at(2020, 10, 12), [_record(mk, "archive"),
                                         _record(mk, "closure", mode="performed"),
                                         _record(mk, "archive"), _record(mk, "notice")])
    assert [r["ok"] for _t, r in out.results] == [False, True, True, False]


def test_audited_read_is_recorded() -> None:
    chain, mk = Chain(), TxMaker()
    filed(chain, mk)
    answer = reads.check_dishonest(chain.state, ref("d" + CN), chain.time_ms)
    payload = reads.audit_read_payload(f"agency:{BANK}", "agency.checkDishonest",
                                       {"party_ref": ref("d" + CN)}, answer, chain.height)
    from pbftd.core.chain import Tx
    chain.block(at(2020, 10, 12), [Tx(COURT, 1, "agency:icbc-jl", "a1", payload)])
    log = reads.audit_log(chain.state, f"agency:{BANK}")
    assert len(log) == 1 and log[0]["result_sha256"] == reads.answer_sha256(answer)
    assert log[0]["time_ms"] == chain.time_ms and log[0]["client"] == "agency:icbc-jl"


# ------------------------------------------------------------ determinism

def test_deadline_due_at_the_same_height_after_a_stall_of_days() -> None:
    """A view change stalls the chain for days: the next block jumps past the
    deadline and fires it at that height on every node; the reminder counts
    from that (late) first notice."""
    nodes = [Chain(), Chain()]
    mk = TxMaker()
    txs = [mk.attest(COURT, doc(CN), CN),
           mk.op(COURT, "case.register", register_params(CN, "2020-10-10"))]
    times = [at(2020, 10, 8, h) for h in range(0, 24, 6)] + [at(2020, 10, 16, 3)]
    for node in nodes:
        node.block(at(2020, 10, 1), txs)
        for t in times:
            node.block(t, [])
    for node in nodes:
        due = node.events("case.due") + node.events("case.reminder")
        assert [(e["topic"], e["height"], e["time_ms"]) for e in due] == [
            ("case.due", 6, at(2020, 10, 16, 3))]
    assert nodes[0].events("case.due")[0]["height"] == 6 == nodes[1].events("case.due")[0][
        "height"]
    assert [o.digest for o in nodes[0].outcomes] == [o.digest for o in nodes[1].outcomes]


def test_deadline_processing_is_bounded_per_block() -> None:
    nodes = [Chain(Config(deadlines_per_block=4)), Chain(Config(deadlines_per_block=4))]
    mk = TxMaker()
    txs = []
    for i in range(10):
        cn = f"(2020)吉0102民初{i}号"
        txs += [mk.attest(COURT, doc(cn), cn),
                mk.op(COURT, "case.register", register_params(cn, "2020-10-10"))]
    for node in nodes:
        node.block(at(2020, 10, 1), txs)
        counts = [len(node.block(at(2020, 10, 11) + k * HOUR_MS, []).events) for k in range(4)]
        assert counts == [4, 4, 2, 0]
    assert [o.digest for o in nodes[0].outcomes] == [o.digest for o in nodes[1].outcomes]


def test_workflows_package_is_pure() -> None:
    allowed = {"__future__", "collections", "collections.abc", "dataclasses", "typing",
               "hashlib", "bisect", "re", "unicodedata", "datetime"}
    pkg = Path(__file__).resolve().parents[2] / "pbftd" / "workflows"
    bad = []
    for path in sorted(pkg.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bad += [a.name for a in node.names if a.name not in allowed]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and \
                    node.module not in allowed:
                bad.append(node.module)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and \
                    node.module == "datetime":
                bad += [a.name for a in node.names if a.name != "date"]
            elif isinstance(node, ast.Attribute) and node.attr in ("today", "now", "utcnow"):
                bad.append(f"{path.name}: .{node.attr}")
    assert not bad, bad
