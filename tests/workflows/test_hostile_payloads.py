"""Any court may submit any payload: execution must refuse it, never raise.

An exception escaping the engine is raised inside ``ChainStore.append`` on
every node at the same block, and a restart replays that block: the chain
stops for good (session 6 found a method that is a list doing that).  So
every payload that decodes as a workflow operation, however its method and
params are shaped, must end as a result (ok or a refusal that names what is
wrong), with the same outcome on every node; the engine's last-resort
``internal_error`` refusal must not be what catches it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbftd.core import codec
from pbftd.core.chain import Tx
from pbftd.workflows import METHODS, WorkflowError
from pbftd.workflows.validate import want_case_no

from .harness import Chain, TxMaker, at, doc, ref, register_params
from .test_rules import BANK, COURT, ECN, filed

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None)
T0 = at(2020, 10, 1, 9)
CN = "(2020)吉0102民初1号"

scalars = st.one_of(st.none(), st.booleans(), st.integers(codec.INT_MIN, codec.INT_MAX),
                    st.integers(-3, 3), st.text(max_size=12), st.binary(max_size=40),
                    st.sampled_from(["", CN, ref("c"), doc(CN), "2020-09-30", "mediation"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
methods = st.one_of(st.sampled_from(METHODS), values)


# One operation of each method, valid against the state `filed` leaves (a
# mediation case turned into enforcement case ECN), for the mutations below.
CREDITOR = ref("c" + CN)
TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    ("case.register", register_params("(2020)吉0102民初2号", "2020-12-30")),
    ("case.issueEffectivenessCertificate", {"case_no": CN}),
    ("case.confirmPerformance", {"case_no": CN, "creditor_ref": CREDITOR, "performed": True}),
    ("case.signApplication", {"case_no": CN, "creditor_ref": CREDITOR,
                              "signature_sha256": doc("sig")}),
    ("enforcement.file", {"case_no": CN, "enforcement_case_no": "(2020)吉0102执9号",
                          "application_sha256": doc("app")}),
    ("case.transferToEnforcement", {"case_no": CN, "enforcement_case_no": ECN,
                                    "creditor_ref": CREDITOR, "signature_sha256": doc("sig")}),
    ("enforcement.record", {"enforcement_case_no": ECN, "type": "freeze", "agency": BANK,
                            "asset_class": "bank_deposit", "term_end": "2021-10-11",
                            "debtor_ref": ref("d" + CN), "amount_fen": 100}),
    ("enforcement.record", {"enforcement_case_no": ECN, "type": "credit_punishment",
                            "party_ref": ref("d" + CN), "measure": "dishonest_list",
                            "action": "add", "until": "2022-01-01"}),
    ("enforcement.record", {"enforcement_case_no": ECN, "type": "settlement",
                            "report": "performed", "creditor_ref": CREDITOR}),
    ("enforcement.record", {"enforcement_case_no": ECN, "type": "closure", "mode": "settled"}),
    ("agency.report", {"order_id": "o1", "agency": BANK, "result": "partial",
                       "amount_fen": 5, "reason": "余额不足"}),
    ("audit.read", {"reader": f"agency:{BANK}", "method": "case.get",
                    "query": {"case_no": CN, "n": 1}, "result_sha256": doc("r"),
                    "as_of_height": 1}),
]


def _run(txs: list[Tx]) -> list[Any]:
    """Two nodes execute the same block on a filed case; both must finish it alike."""
    outcomes = []
    for _ in range(2):
        chain, mk = Chain(), TxMaker()
        filed(chain, mk)
        out = chain.block(at(2020, 10, 12), txs)
        outcomes.append((out.results, out.ops, out.events))
    assert outcomes[0] == outcomes[1]
    return outcomes[0][0]


def test_every_template_is_valid_so_the_mutations_start_from_real_operations() -> None:
    results = _run([Tx(COURT, 1, "enforcement", f"t{i}", _payload(method, params))
                    for i, (method, params) in enumerate(TEMPLATES)])
    refused = [(TEMPLATES[i][0], r["error"]) for i, (_tx, r) in enumerate(results)
               if not r["ok"]]
    # what the state refuses is fine (a closed case takes no more records);
    # what the validators refuse would mean a template tests nothing
    assert not [e for _m, e in refused if e["code"] == "invalid_params"], refused


def _payload(method: Any, params: Any) -> bytes:
    return codec.encode({"op": "workflow", "method": method, "params": params})


def _refused_by_a_check(results: list[Any]) -> None:
    """One result, and not the engine's safety net: the operation's own
    checks must name what is wrong (internal_error means they crashed)."""
    ((_tx_id, result),) = results
    assert result["ok"] or result["error"]["code"] != "internal_error", result


@SETTINGS
@given(methods, values)
def test_any_method_and_params_end_as_a_result(method: Any, params: Any) -> None:
    _refused_by_a_check(_run([Tx(COURT, 1, "trial", "r1", _payload(method, params))]))


@SETTINGS
@given(st.sampled_from(range(len(TEMPLATES))), st.data())
def test_a_valid_operation_with_one_place_changed_ends_as_a_result(
        which: int, data: st.DataObject) -> None:
    """Start from a real operation's params and replace or drop one value,
    at any depth."""
    method, template = TEMPLATES[which]
    params: Any = copy.deepcopy(template)
    node = params
    for _ in range(data.draw(st.integers(0, 2))):
        children = [k for k in (node if type(node) is dict else range(len(node)))
                    if type(node[k]) in (dict, list) and node[k]]
        if not children:
            break
        node = node[data.draw(st.sampled_from(children))]
    keys = list(node) if type(node) is dict else list(range(len(node)))
    key = data.draw(st.sampled_from(keys))
    if data.draw(st.booleans()):
        node[key] = data.draw(values)
    else:
        del node[key]
    _refused_by_a_check(_run([Tx(COURT, 1, "enforcement", "r1", _payload(method, params))]))


def test_an_operation_whose_checks_crash_is_refused_alike_and_the_block_goes_on(
        monkeypatch: Any) -> None:
    """Defence in depth: a bug like the unhashable method above, in any
    operation, becomes a refusal on every node instead of a stopped chain."""
    from pbftd.workflows import ops

    def broken(_params: dict[str, Any]) -> dict[str, Any]:
        raise TypeError("a bug in a validator")

    monkeypatch.setitem(ops._VALIDATORS, "agency.report", broken)
    method, params = TEMPLATES[-1]  # audit.read, applied after the broken one
    results = _run([Tx(COURT, 1, "enforcement", "r1", _payload("agency.report", {})),
                    Tx(COURT, 1, "enforcement", "r2", _payload(method, params))])
    (_tx1, crashed), (_tx2, applied) = results
    assert crashed == {"ok": False, "error": {
        "code": "internal_error", "field": None,
        "message": "the operation failed inside pbftd (TypeError); this is a pbftd bug"}}
    assert applied["ok"]


def test_execution_never_consults_the_unicode_tables(monkeypatch: Any) -> None:
    """Nodes may run different Python builds, whose Unicode tables (NFC,
    categories, what strip() trims) differ for newer characters; execution
    must give the same answer on all of them, so it may not ask them."""
    from pbftd.workflows import validate

    mk = TxMaker()
    blocks = [
        (T0, [mk.attest(COURT, doc(CN), CN)]),
        (T0 + 1000, [mk.op(COURT, "case.register", register_params(CN, "2020-09-30"))]),
        (at(2020, 10, 11, 9), [mk.op(COURT, "case.confirmPerformance", {
            "case_no": CN, "creditor_ref": CREDITOR, "performed": False})]),
        (at(2020, 10, 11, 10), [mk.op(COURT, "case.transferToEnforcement", {
            "case_no": CN, "enforcement_case_no": ECN, "creditor_ref": CREDITOR,
            "signature_sha256": doc("sig")})]),
        (at(2020, 10, 12), [Tx(COURT, 1, "enforcement", f"t{i}", _payload(method, params))
                            for i, (method, params) in enumerate(TEMPLATES)]),
    ]

    class NoTables:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"execution asked unicodedata.{name}")

    monkeypatch.setattr(validate, "unicodedata", NoTables())
    chain = Chain()
    for time_ms, txs in blocks:
        out = chain.block(time_ms, txs)
        assert all(r["ok"] or r["error"]["code"] != "internal_error" for _t, r in out.results)
    assert any(r["ok"] for _t, r in chain.outcomes[-1].results)


def test_a_stored_record_that_does_not_decode_still_stops_the_node(monkeypatch: Any) -> None:
    """That is this node's disk, not the payload: refusing would let this
    node's state part from the others' without a word."""
    from pbftd.workflows import ops

    def corrupt(_params: dict[str, Any]) -> dict[str, Any]:
        raise codec.DecodeError("value is not canonically encoded")

    monkeypatch.setitem(ops._VALIDATORS, "agency.report", corrupt)
    with pytest.raises(codec.DecodeError):
        _run([Tx(COURT, 1, "enforcement", "r1", _payload("agency.report", {}))])


def _accepted_case_no(text: str) -> bool:
    try:
        return want_case_no(text, "case_no") == text
    except WorkflowError:
        return False


@SETTINGS
@given(st.text(min_size=1, max_size=64).filter(_accepted_case_no))
def test_a_refusal_names_a_case_number_verbatim_never_by_the_unicode_tables(cn: str) -> None:
    """A refusal's message is stored with its result on every node (wfr/),
    so it may not follow the Python build either.  repr() escapes what the
    build's tables call unprintable: a case number holding U+1F6DC
    (unassigned before Unicode 15) was quoted '\\U0001f6dc' by Python 3.11
    and as itself by 3.12, so the nodes' stored results differed."""
    results = _run([
        Tx(COURT, 1, "trial", "r1", _payload("case.confirmPerformance", {
            "case_no": cn, "creditor_ref": CREDITOR, "performed": True})),
        Tx(COURT, 1, "enforcement", "r2", _payload("enforcement.record", {
            "enforcement_case_no": cn, "type": "notice"}))])
    messages = [r["error"]["message"] for _t, r in results if not r["ok"]]
    if cn != CN:
        assert f"no case '{cn}'" in messages
    if cn != ECN:
        assert f"no enforcement case '{cn}'" in messages
