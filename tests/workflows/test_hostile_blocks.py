"""A whole block of hostile workflow operations through the daemon's path.

test_hostile_payloads.py drives one operation at a time through the engine.
Here a block of them goes where a committed batch goes: ``ChainStore.append``
(execute_batch, the evidence indexer, the WorkflowApp and its engine, the
block's write batch) on a real store, then the block's events as a
subscription reads them.  Whatever a court signs, none of that may raise: an
exception there is raised by every node at the same block, and a restart
replays it, so the chain would stop for good.  The block lands on a state
with a case, an enforcement case and a freeze order, at times that fire
their deadlines (``Engine.on_block``, outside the engine's safety net).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pbftd.core import codec
from pbftd.core.chain import Tx
from pbftd.events import ChainEventSource
from pbftd.workflows import METHODS

from .harness import TxMaker, at, doc, ref, register_params
from .storechain import StoreChain, store_chains
from .test_hostile_payloads import CREDITOR, TEMPLATES, values
from .test_rules import BANK, CN, COURT, ECN

ORDER_ID = f"{ECN}#2"  # the freeze below: the enforcement case's second trail entry
REAL = st.sampled_from([CN, ECN, ORDER_ID, BANK, f"agency:{BANK}", CREDITOR, ref("d" + CN),
                        doc(CN), "2021-10-11", "2021-09-30", "freeze", "settlement",
                        "bank_deposit", "partial", "refused", "add", "remove", "performed",
                        "not_performed", "dishonest_list", "case.get", True, False, 1, 0])
anything = st.one_of(values, REAL)
methods = st.one_of(st.sampled_from(METHODS), anything)


@st.composite
def _shaped(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
    """A real operation's params, mostly as they are: a few values replaced
    by any value, now and then one dropped."""
    out = dict(params)
    for name in draw(st.lists(st.sampled_from(sorted(params)), max_size=3)):
        if draw(st.sampled_from(range(4))) == 3:
            out.pop(name, None)
        else:
            out[name] = draw(anything)
    return out


@st.composite
def workflow_payloads(draw: st.DrawFn) -> bytes:
    method, template = draw(st.sampled_from(TEMPLATES))
    body: dict[str, Any] = {"op": "workflow"}
    how = draw(st.sampled_from(range(10)))  # shrinks to 0: the real method, shaped params
    if how < 9:
        body["method"] = method if how < 6 else draw(methods)
    if how != 8:
        body["params"] = draw(_shaped(template)) if how < 4 else draw(anything)
    try:
        return codec.encode(body)
    except ValueError:  # nested deeper than codec allows: no node would take it
        assume(False)
        raise


def _base(node: StoreChain) -> None:
    """Case CN registered, turned into enforcement case ECN, a freeze ordered."""
    mk = TxMaker()
    p = register_params(CN, "2020-10-10")
    freeze = next(params for method, params in TEMPLATES
                  if method == "enforcement.record" and params["type"] == "freeze")
    blocks = [
        (at(2020, 10, 1, 9), [mk.attest(COURT, p["document_sha256"], CN),
                              mk.op(COURT, "case.register", p)]),
        (at(2020, 10, 11, 9), [mk.op(COURT, "case.confirmPerformance", {
            "case_no": CN, "creditor_ref": CREDITOR, "performed": False})]),
        (at(2020, 10, 11, 10), [mk.op(COURT, "case.transferToEnforcement", {
            "case_no": CN, "enforcement_case_no": ECN, "creditor_ref": CREDITOR,
            "signature_sha256": doc("sig")})]),
        (at(2020, 10, 11, 11), [mk.op(COURT, "enforcement.record", freeze)]),
    ]
    for time_ms, txs in blocks:
        block = node.block(time_ms, txs)
        for tx in block.fresh[-1:]:
            assert node.app.result(tx.tx_id)["ok"], node.app.result(tx.tx_id)


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(st.sampled_from([COURT, "cc-kuancheng"]), workflow_payloads()),
                min_size=1, max_size=8),
       # nothing due / the 30-day warning due / the warning and the expiry due
       st.sampled_from([at(2020, 10, 12), at(2021, 9, 12), at(2021, 10, 13)]))
def test_a_block_of_any_workflow_operations_executes_and_is_published(
        ops: list[tuple[str, bytes]], time_ms: int) -> None:
    txs = [Tx(origin, 1, "trial", f"h{i}", payload) for i, (origin, payload) in enumerate(ops)]
    with tempfile.TemporaryDirectory() as tmp, \
            store_chains(Path(tmp), 1, at(2020, 9, 1)) as (node,):
        _base(node)
        block = node.block(time_ms, txs)  # ChainStore.append: must not raise
        for tx in block.fresh:
            result = node.app.result(tx.tx_id)
            assert result is not None and result["height"] == block.header.height
            assert result["ok"] or result["error"]["code"] != "internal_error", result
        events = ChainEventSource(node.chain, node.app).events_at(block.header.height)
        assert events is not None and events[0][0] == "blocks"
