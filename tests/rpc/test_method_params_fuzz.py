"""Every method the daemon registers, called through the dispatcher with
params its own published schema accepts, and with params of any JSON shape.

tests/rpc/test_dispatcher.py checks the engine's rules on a toy method and
tests/fuzz/test_jsonrpc_http.py the HTTP shell with one write method; this
reaches each real handler (chain.*, evidence.*, case.*, enforcement.*,
agency.*, events.*) past validation, where a value the schema lets through
but the handler cannot take (a type, a size, a cursor, a date that is no
date, text NFC makes longer) shows up as -32603.  Bad input must get a
clear error naming it, never an internal error.

The node is a stand-in: a workflow state with one enforcement case and its
freeze orders (tests/workflows), a chain whose every request key has already
committed (so writes answer without a runtime), no stored blocks.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbftd.events import register_event_methods
from pbftd.evidence_batch import register_batch_methods
from pbftd.proof_methods import register_proof_methods
from pbftd.rpcservice import register_evidence_methods
from pbftd.rpcwrite import client_of
from pbftd.workflow_methods import register_workflow_methods
from pbftd.workflows import keys as K
from rpc.chain_methods import register_chain_methods
from rpc.jsonrpc import Dispatcher, RpcContext
from tests.rpc.fakes import FakeNode, call
from tests.workflows.harness import GENESIS, Chain, TxMaker, at, ref
from tests.workflows.test_rules import BANK, CN, COURT, ECN, _record, filed

BUDGET = settings(max_examples=60, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
CTX = RpcContext(frozenset({"admin", f"agency:{BANK}", "client:court-system"}),
                 authenticated=True)
TX_ID = b"\x01" * 32


class _Chain:
    def __init__(self, wf: Chain) -> None:
        self.wf = wf

    def tip(self) -> Any:
        return SimpleNamespace(height=self.wf.height, time_ms=self.wf.time_ms)

    def request_result(self, _key: Any) -> tuple[int, bytes]:
        return (max(1, self.wf.height), TX_ID)

    def request_results(self, keys: list[Any]) -> list[tuple[int, bytes]]:
        return [self.request_result(k) for k in keys]

    def find_tx(self, _tx_id: bytes) -> None:
        return None

    def block_record(self, _height: int) -> None:
        return None


def _node() -> Any:
    wf, mk = Chain(), TxMaker()
    filed(wf, mk)
    wf.block(at(2020, 10, 12), [
        _record(mk, "freeze", agency=BANK, asset_class="bank_deposit",
                term_end=f"2021-09-{1 + i:02d}", debtor_ref=ref("d" + CN)) for i in range(5)])
    return SimpleNamespace(
        chain=_Chain(wf), genesis=GENESIS, court=SimpleNamespace(id=COURT), runtime=None,
        workflows=SimpleNamespace(state=lambda: wf.state, result=lambda _tx_id: None),
        store=SimpleNamespace(iter_state=lambda _prefix: iter(())),
        replica=SimpleNamespace(cfg=SimpleNamespace(batch_requests_max=2000,
                                                    batch_bytes_max=2_097_152)),
        settings=SimpleNamespace(rpc=SimpleNamespace(request_timeout_ms=2_000)))


def _dispatcher() -> Dispatcher:
    d = Dispatcher()
    node = _node()
    register_chain_methods(d, FakeNode())
    register_evidence_methods(d, node)
    register_batch_methods(d, node, client_of)
    register_workflow_methods(d, node)
    register_proof_methods(d, node)
    register_event_methods(d, SimpleNamespace(tip_height=lambda: 1))
    return d


DISPATCHER = _dispatcher()
METHODS = {m.name: m for m in DISPATCHER.methods() if m.name != "rpc.discover"}

# -------------------------------------------------- values from a schema

_hex = st.text("0123456789abcdef", min_size=0, max_size=64)
# Cursors: of the listings themselves, of other listings, not hex at all.
_PREFIXES = [K.CASE, K.IX_DUE, K.TERM, K.order_by_agency(BANK), K.trail(ECN),
             K.ix_court(COURT), K.ix_state("pending"), b"wf/", b""]
_CURSORS = st.one_of(
    st.builds(lambda p, tail: (p + tail).hex(), st.sampled_from(_PREFIXES),
              st.binary(max_size=40)),
    st.builds(lambda p, tail: p.hex() + tail, st.sampled_from(_PREFIXES), _hex),
    st.text(max_size=40))
# Texts: ones the checks accept, and any Unicode (controls, digit runs, NFC).
_TEXTS = st.one_of(
    st.sampled_from([CN, ECN, "（2020）吉0102执1号", "note", "\u0958" * 40, " x ", "1" * 18,
                     "\u212b" * 64, "\ufeff", "\u202e" + ECN]),
    st.text(max_size=80))
_BY_NAME = {
    "after": _CURSORS,
    "agency": st.sampled_from([BANK, "ccb-jl", "ICBC", "a" * 64]),
    "court": st.sampled_from([COURT, "spc", "x\x00y"]) | st.text(min_size=1, max_size=64),
}


def _strip_anchors(pattern: str) -> str:
    return re.sub(r"^\^|\$$", "", pattern)


def from_schema(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Instances of a schema in rpc/schema.py's subset (values it accepts)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, name) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        edges = [v for v in (low, high, 0, 1, -1, 2**63 - 1, 2**64) if
                 (low is None or v >= low) and (high is None or v <= high)]
        return st.integers(low, high) | st.sampled_from(edges)
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 1024)
        if "pattern" in schema:
            base = st.from_regex(_strip_anchors(schema["pattern"]), fullmatch=True)
        else:
            base = _BY_NAME.get(name, _TEXTS)
        return base.filter(lambda s: low <= len(s) <= high)
    if kind == "array":
        items = schema.get("items", {"type": "integer"})
        return st.lists(from_schema(items), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, k) for k, v in props.items() if k in required},
            optional={k: from_schema(v, k) for k, v in props.items() if k not in required})
    raise AssertionError(f"no strategy for {schema}")


def _answer(method: str, params: Any) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 7},
                      ensure_ascii=False)
    got = call(DISPATCHER, body.encode("utf-8"), CTX)
    assert got is not None and got["id"] == 7, got
    return got


def _no_internal_error(got: dict[str, Any], params: Any) -> None:
    if "error" in got:
        error = got["error"]
        assert error["code"] != -32603, (params, got)
        assert -32700 <= error["code"] <= -32000, got
        assert isinstance(error["message"], str) and error["message"], got


def test_every_registered_method_is_fuzzed() -> None:
    assert {"chain.getBlock", "evidence.attest", "evidence.attestBatch", "case.register",
            "case.list", "enforcement.trail", "agency.orders", "agency.report",
            "events.subscribe", "evidence.getProof", "chain.getHeaders"} <= set(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_params_the_schema_accepts_never_give_an_internal_error(method: str) -> None:
    @BUDGET
    @given(from_schema(dict(METHODS[method].params_schema)))
    def check(params: dict[str, Any]) -> None:
        _no_internal_error(_answer(method, params), params)
    check()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=10)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_params_of_any_shape_are_refused_clearly_or_served(method: str) -> None:
    names = [*sorted(METHODS[method].params_schema.get("properties", {})), "x"]

    @BUDGET
    @given(st.dictionaries(st.sampled_from(names), _json, max_size=4) | _json)
    def check(params: Any) -> None:
        if not isinstance(params, dict | list):
            params = {"value": params}
        got = _answer(method, params)
        _no_internal_error(got, params)
    check()
