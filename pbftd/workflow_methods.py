"""JSON-RPC methods of the judicial workflows (issue 5): case.*, enforcement.*,
agency.* (docs/WORKFLOWS.md shows them as the calls a court system makes).

Writes are thin: the params (minus ``request_id`` and ``wait``) are validated
and encoded by ``workflows.encode_op`` and submitted through the one write
path (``rpcwrite.submit_write``); the engine decides in the block.  With
``wait: true`` the answer carries the engine's result, or its refusal as a
JSON-RPC error whose data names the reason and the field.  The acting court
is always this node's court and the client the token's name, never params.

Reads answer from committed state (``as_of_height`` says which) with the
access rules in ``workflows.reads``: the enforcement trail only for the
handling court and the courts above it in genesis, agencies only their own
orders, the agency id taken from the token's ``agency:<id>`` scope.  Every
agency read is recorded on chain (``audit.read``) before it is answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rpc.chain_methods import HEX64
from rpc.errors import RpcError
from rpc.jsonrpc import Dispatcher, RateCost, RpcContext

from .core.crypto import sha256
from .evidence import CASE_NO_CHARS_MAX
from .rpcwrite import submit_write
from .workflows import WorkflowError, encode_op, reads
from .workflows.ops import ASSET_TERM_YEARS, CLOSURE_MODES, KINDS, RECORD_TYPES, REPORT_RESULTS

__all__ = ["LIST_COST", "orders_query", "register_workflow_methods", "requested_page"]

CASE_READ, CASE_WRITE = "case:read", "case:write"
ENF_READ, ENF_WRITE = "enforcement:read", "enforcement:write"
INVALID_PARAMS = -32602
FORBIDDEN = -32001
NOT_FOUND = -32004
REFUSED = -32020
_CODES = {"invalid_params": INVALID_PARAMS, "forbidden": FORBIDDEN, "not_found": NOT_FOUND}

# ------------------------------------------------------------------ schemas

# What a listing costs its caller (rpc/jsonrpc.py RateCost; tokens of about
# 0.5 ms of the node's CPU).  A page's work grows with its size: in process,
# 3,000 freeze orders in RocksDB, per unit of limit, enforcement.expiring 54 us
# and agency.orders 75 us (with the answer's digest), 116 us when its status
# filter matches nothing and the page reads its SCAN_PER_ITEM entries per
# item (docs/OPERATIONS.md, section 9).
LIST_ITEMS_PER_TOKEN = 4


def requested_page(params: dict[str, Any]) -> int:
    """The page size a listing asks for, before validation (the default when
    absent; 0 for a value that validation will refuse anyway)."""
    limit = params.get("limit", reads.PAGE_DEFAULT)
    if type(limit) is not int:
        return 0
    return min(max(limit, 0), reads.LIST_LIMIT_MAX)


LIST_COST = RateCost(base=1, per=LIST_ITEMS_PER_TOKEN, unit="items per page (limit)",
                     measure=requested_page)

_STR = {"type": "string", "minLength": 1, "maxLength": 200}
_CASE_NO = {"type": "string", "minLength": 1, "maxLength": CASE_NO_CHARS_MAX,
            "description": "case number (案号), e.g. (2020)吉0102民初1234号"}
_DATE = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
         "description": "Asia/Shanghai calendar date"}
_REF = {**HEX64, "description": "pseudonymous party ref (keyed hash computed by the court "
                                "system), 64 hex"}
_FEN = {"type": "integer", "minimum": 0, "maximum": 10**15, "description": "amount in fen (分)"}
_OBJ = {"type": "object"}
_AGENCY = {"type": "string", "minLength": 1, "maxLength": 64,
           "description": "which of the token's agency:<id> scopes acts (only needed when the "
                          "token holds several)"}
_WRITE_META = {
    "request_id": {"type": "string", "minLength": 1, "maxLength": 128,
                   "description": "makes the write idempotent for this client; the same id "
                                  "again answers the first result"},
    "wait": {"type": "boolean", "description": "answer once committed, with the engine's "
                                               "result or its refusal as an error"},
}
WRITE_RESULT = {
    "type": "object", "required": ["tx_id", "status"],
    "properties": {"tx_id": HEX64, "status": {"enum": ["pending", "committed"]},
                   "height": {"type": "integer", "minimum": 1},
                   "result": {"type": "object", "description": "the engine's result "
                                                               "(committed only)"}},
}


def _params(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "additionalProperties": False,
            "properties": props}


def _write_params(required: list[str], **props: Any) -> dict[str, Any]:
    return _params(required, **props, **_WRITE_META)


_PARTY = _params(["party_ref", "role"], party_ref=_REF,
                 role={"enum": ["plaintiff", "defendant", "third_party"]})
_OBLIGATION = _params(["debtor_ref", "creditor_ref", "amount_fen", "description"],
                      debtor_ref=_REF, creditor_ref=_REF, amount_fen=_FEN, description=_STR)
REGISTER = _write_params(
    ["case_no", "kind", "document_sha256", "effective_date", "performance_deadline",
     "obligations", "parties"],
    case_no=_CASE_NO, kind={"enum": list(KINDS)},
    document_sha256={**HEX64, "description": "the mediation agreement or judgment, already "
                                             "attested by this court (evidence.attest)"},
    effective_date=_DATE, performance_deadline=_DATE,
    obligations={"type": "array", "minItems": 1, "maxItems": 64, "items": _OBLIGATION},
    parties={"type": "array", "minItems": 2, "maxItems": 64, "items": _PARTY})
CASE_ONLY = _write_params(["case_no"], case_no=_CASE_NO)
CONFIRM = _write_params(["case_no", "creditor_ref", "performed"], case_no=_CASE_NO,
                        creditor_ref=_REF, performed={"type": "boolean"})
SIGN = _write_params(["case_no", "creditor_ref", "signature_sha256"], case_no=_CASE_NO,
                     creditor_ref=_REF, signature_sha256=HEX64)
FILE = _write_params(["case_no", "enforcement_case_no"], case_no=_CASE_NO,
                     enforcement_case_no=_CASE_NO, application_sha256=HEX64)
TRANSFER = _write_params(["case_no", "enforcement_case_no"], case_no=_CASE_NO,
                         enforcement_case_no=_CASE_NO, creditor_ref=_REF,
                         signature_sha256=HEX64)
RECORD = _write_params(
    ["enforcement_case_no", "type"], enforcement_case_no=_CASE_NO,
    type={"enum": list(RECORD_TYPES)}, agency={**_AGENCY, "description": "addressed agency"},
    asset_class={"enum": list(ASSET_TERM_YEARS)}, term_end=_DATE, debtor_ref=_REF,
    creditor_ref=_REF, party_ref=_REF, amount_fen=_FEN, renews=_STR, freeze_order=_STR,
    note=_STR, measure={"enum": ["dishonest_list", "consumption_restriction"]},
    action={"enum": ["add", "remove"]}, until=_DATE, deadline=_DATE,
    report={"enum": ["performed", "not_performed"]}, mode={"enum": list(CLOSURE_MODES)})
REPORT = _write_params(["order_id", "result"], order_id=_STR,
                       result={"enum": list(REPORT_RESULTS)}, reason=_STR, amount_fen=_FEN,
                       agency=_AGENCY)

_CASES = {"type": "array", "items": _OBJ}
_AS_OF = {"type": "integer", "minimum": 0, "description": "the committed height answered at"}
_AUDIT = {**HEX64, "description": "the audit.read transaction recording this read (its digest "
                                 "covers the answer without this member)"}
CASE_GET_RESULT = _params(["case", "as_of_height"], case=_OBJ, as_of_height=_AS_OF)
# Listings come a page at a time (workflows/reads.py ``_page``).
_PAGE = {
    "limit": {"type": "integer", "minimum": 1, "maximum": reads.LIST_LIMIT_MAX,
              "description": f"items per page (default {reads.PAGE_DEFAULT}); a page looks at "
                             f"{reads.SCAN_PER_ITEM} index entries per item at most, so a "
                             "narrow filter may give a short or empty page with next set"},
    "after": {"type": "string", "minLength": 1, "maxLength": 1024,
              "description": "the next cursor of the previous page"},
}
_NEXT = {"type": ["string", "null"],
         "description": "the cursor for after; null when the listing is complete"}
CASE_LIST = _params([], court={"type": "string", "minLength": 1, "maxLength": 64},
                    state={"enum": list(reads.CASE_STATES)}, due_from=_DATE, due_to=_DATE,
                    **_PAGE)
CASE_LIST_RESULT = _params(["cases", "next", "as_of_height"], cases=_CASES, next=_NEXT,
                           as_of_height=_AS_OF)
EXPIRING = _params(["days"], days={"type": "integer", "minimum": 0, "maximum": 3660}, **_PAGE)
ORDERS_RESULT = _params(["orders", "next", "as_of_height"], orders=_CASES, next=_NEXT,
                        as_of_height=_AS_OF, agency={"type": "string"}, audit_tx_id=_AUDIT)
TRAIL = _params(["enforcement_case_no"], enforcement_case_no=_CASE_NO, **_PAGE)
TRAIL_RESULT = _params(["enforcement", "trail", "orders", "next", "as_of_height"],
                       enforcement=_OBJ, trail=_CASES, orders=_CASES, next=_NEXT,
                       as_of_height=_AS_OF)
AGENCY_ORDERS = _params([], status={"enum": ["open", "done", "partial", "refused", "expired",
                                             "renewed"]}, agency=_AGENCY, **_PAGE)
DISHONEST = _params(["party_ref"], party_ref=_REF, agency=_AGENCY)
DISHONEST_RESULT = _params(["party_ref", "listed", "listings", "as_of_height"],
                           party_ref=HEX64, listed={"type": "boolean"}, listings=_CASES,
                           as_of_height=_AS_OF, audit_tx_id=_AUDIT)

# (method, scope, params schema, summary); scope None: an agency:<id> token
WRITES: tuple[tuple[str, str | None, dict[str, Any], str], ...] = (
    ("case.register", CASE_WRITE, REGISTER,
     "Register a closed case whose attested document obliges performance; it falls due at "
     "00:00 (Asia/Shanghai) of the day after performance_deadline."),
    ("case.issueEffectivenessCertificate", CASE_WRITE, CASE_ONLY,
     "Issue a judgment's effectiveness certificate (生效证明), generated and attested on chain."),
    ("case.confirmPerformance", CASE_WRITE, CONFIRM,
     "A creditor says performed (the case closes) or not performed (the enforcement "
     "application 申请执行书 is generated and attested)."),
    ("case.signApplication", CASE_WRITE, SIGN,
     "The applying creditor's signature on the generated enforcement application."),
    ("case.transferToEnforcement", CASE_WRITE, TRANSFER,
     "One-key transfer (e键转执行): sign if needed and file enforcement in one call."),
    ("enforcement.file", ENF_WRITE, FILE,
     "File the enforcement case (执行立案) on a signed application; the original document "
     "is verified on chain and both cases are linked."),
    ("enforcement.record", ENF_WRITE, RECORD,
     "Record one audited enforcement operation (freeze and seizure within the legal term: "
     "bank deposits 1 year, movables 2, real estate 3)."),
    ("agency.report", None, REPORT,
     "The calling agency's result for an order addressed to it (done, partial, refused)."),
)


# ------------------------------------------------------------------ errors

def refusal(exc: WorkflowError, **extra: Any) -> RpcError:
    """A WorkflowError as a JSON-RPC error: invalid params -32602, forbidden
    -32001, not found -32004, any other refusal -32020; data names the reason,
    the engine's code and the field."""
    code = _CODES.get(exc.code, REFUSED)
    message = {INVALID_PARAMS: "Invalid params", FORBIDDEN: "forbidden",
               NOT_FOUND: "not found"}.get(code, "refused")
    return RpcError(code, message, {"reason": str(exc), "code": exc.code,
                                    "member": exc.field, **extra})


def agency_of(ctx: RpcContext, params: dict[str, Any], method: str) -> str:
    """The acting agency: the token's one ``agency:<id>`` scope, or the one
    named by ``params["agency"]`` among several."""
    mine = sorted(s.split(":", 1)[1] for s in ctx.scopes if s.startswith("agency:"))
    wanted = params.get("agency")
    if wanted is not None and wanted in mine:
        return str(wanted)
    if wanted is None and len(mine) == 1:
        return mine[0]
    reason = ("this token has no agency:<id> scope" if not mine else
              f"name the acting agency (agency: one of {', '.join(mine)})" if wanted is None
              else f"this token does not hold agency:{wanted}")
    raise RpcError(FORBIDDEN, "forbidden", {"method": method, "required_scope": "agency:<id>",
                                            "reason": reason})


# ------------------------------------------------------------------ methods

def register_workflow_methods(dispatcher: Dispatcher, node: Any) -> None:
    for method, scope, schema, summary in WRITES:
        _register_write(dispatcher, node, method, scope, schema, summary)
    _register_case_reads(dispatcher, node)
    _register_enforcement_reads(dispatcher, node)
    _register_agency_reads(dispatcher, node)


def _register_write(dispatcher: Dispatcher, node: Any, method: str, scope: str | None,
                    schema: dict[str, Any], summary: str) -> None:
    async def write(params: dict[str, Any], ctx: RpcContext) -> dict[str, Any]:
        op = {k: v for k, v in params.items() if k not in _WRITE_META}
        if scope is None:
            op["agency"] = agency_of(ctx, params, method)
        try:
            payload = encode_op(method, op)
        except WorkflowError as exc:
            raise refusal(exc) from None
        answer = await submit_write(node, ctx, payload, params.get("request_id"),
                                    bool(params.get("wait")))
        if answer["status"] != "committed":
            return answer
        done = node.workflows.result(bytes.fromhex(answer["tx_id"]))
        if done is None:   # the request id names another kind of write
            return answer
        if not done["ok"]:
            raise refusal(_error_of(done["error"]), tx_id=answer["tx_id"],
                          height=answer["height"])
        return {**answer, "result": done["result"]}

    dispatcher.method(
        method, scope=scope, params_schema=schema, result_schema=WRITE_RESULT,
        result_name="write", summary=summary,
        description=summary + " request_id makes the call idempotent; wait: true answers "
                              "after commit with the engine's result, or its refusal as an "
                              "error (data: reason, code, member).",
        errors=[(INVALID_PARAMS, "Invalid params"), (FORBIDDEN, "forbidden"),
                (NOT_FOUND, "not found"), (REFUSED, "refused")])(write)


def _error_of(error: dict[str, Any]) -> WorkflowError:
    return WorkflowError(error["code"], error["message"], error["field"])


def _answer(node: Any, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a read on committed state, with the height it answers at."""
    height = node.chain.tip().height
    try:
        return {**fn(), "as_of_height": height}
    except WorkflowError as exc:
        raise refusal(exc) from None


def orders_query(params: dict[str, Any]) -> dict[str, Any]:
    """What an agency.orders page records on chain as its query: the filter,
    the page size and the cursor's SHA-256.  Not the cursor itself: it is the
    hex of an index key (agency id and order id), often longer than a text on
    chain may be (200 characters), and its digit runs (the hex of ASCII
    digits and brackets is all digits) could pass for an identity number to
    the chain's checks (workflows/validate.py ``want_text``)."""
    query = {k: params[k] for k in ("status", "limit") if k in params}
    if "after" in params:
        query["after_sha256"] = sha256(params["after"].encode()).hex()
    return query


def _read_errors() -> list[tuple[int, str]]:
    return [(INVALID_PARAMS, "Invalid params"), (FORBIDDEN, "forbidden"),
            (NOT_FOUND, "not found")]


def _register_case_reads(dispatcher: Dispatcher, node: Any) -> None:
    wf = node.workflows

    @dispatcher.method(
        "case.get", scope=CASE_READ, params_schema=_params(["case_no"], case_no=_CASE_NO),
        result_schema=CASE_GET_RESULT, result_name="case", errors=_read_errors(),
        summary="A registered case: state, history, deadlines, confirmations, documents, "
                "linked enforcement case.")
    def case_get(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            case = reads.case_get(wf.state(), params["case_no"])
            if case is None:
                raise WorkflowError("not_found", f"no case {params['case_no']!r}", "case_no")
            return {"case": case}
        return _answer(node, read)

    @dispatcher.method(
        "case.list", scope=CASE_READ, params_schema=CASE_LIST, result_schema=CASE_LIST_RESULT,
        result_name="cases", errors=_read_errors(), cost=LIST_COST,
        summary="Cases filtered by registering court, state and due dates (inclusive), a page "
                "at a time (next: the cursor for after).")
    def case_list(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        return _answer(node, lambda: reads.case_list(
            wf.state(), court=params.get("court"), state_is=params.get("state"),
            due_from=params.get("due_from"), due_to=params.get("due_to"),
            limit=params.get("limit", reads.PAGE_DEFAULT), after=params.get("after")))


def _register_enforcement_reads(dispatcher: Dispatcher, node: Any) -> None:
    wf, genesis, me = node.workflows, node.genesis, node.court.id

    @dispatcher.method(
        "enforcement.expiring", scope=ENF_READ, params_schema=EXPIRING,
        result_schema=ORDERS_RESULT, result_name="expiring", errors=_read_errors(),
        cost=LIST_COST,
        summary="Freeze and seizure orders of cases this court handles or supervises whose "
                "term expires within days of the last block's time, soonest first, a page at "
                "a time.")
    def expiring(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        now_ms = node.chain.tip().time_ms
        return _answer(node, lambda: reads.enforcement_expiring(
            wf.state(), now_ms, params["days"], reader_court=me,
            is_supervisor=genesis.is_supervisor,
            limit=params.get("limit", reads.PAGE_DEFAULT), after=params.get("after")))

    @dispatcher.method(
        "enforcement.trail", scope=ENF_READ, params_schema=TRAIL, result_schema=TRAIL_RESULT,
        result_name="trail", errors=_read_errors(), cost=LIST_COST,
        summary="The audit trail of an enforcement case, a page of entries at a time with the "
                "orders they made, for the handling court and the courts above it in the "
                "genesis hierarchy only.")
    def trail(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        return _answer(node, lambda: reads.enforcement_trail(
            wf.state(), me, params["enforcement_case_no"], genesis.is_supervisor,
            limit=params.get("limit", reads.PAGE_DEFAULT), after=params.get("after")))


def _register_agency_reads(dispatcher: Dispatcher, node: Any) -> None:
    wf = node.workflows

    async def audited(ctx: RpcContext, params: dict[str, Any], method: str,
                      query: dict[str, Any],
                      read: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        agency = agency_of(ctx, params, method)
        answer = _answer(node, lambda: read(agency))
        payload = reads.audit_read_payload(f"agency:{agency}", method, query, answer,
                                           answer["as_of_height"])
        recorded = await submit_write(node, ctx, payload, None, wait=False)
        return {**answer, "audit_tx_id": recorded["tx_id"]}

    @dispatcher.method(
        "agency.orders", params_schema=AGENCY_ORDERS, result_schema=ORDERS_RESULT,
        result_name="orders", errors=_read_errors(), cost=LIST_COST,
        summary="Freeze, seizure and deduction orders addressed to the calling agency "
                "(token scope agency:<id>) and only those, a page at a time; each page read "
                "is recorded on chain.")
    async def orders(params: dict[str, Any], ctx: RpcContext) -> dict[str, Any]:
        return await audited(ctx, params, "agency.orders", orders_query(params), lambda agency: {
            "agency": agency,
            **reads.agency_orders(wf.state(), agency, status=params.get("status"),
                                  limit=params.get("limit", reads.PAGE_DEFAULT),
                                  after=params.get("after"))})

    @dispatcher.method(
        "agency.checkDishonest", params_schema=DISHONEST, result_schema=DISHONEST_RESULT,
        result_name="listing", errors=_read_errors(),
        summary="Whether a party ref is on the dishonest-debtor list (失信被执行人) now, with "
                "each listing's case and date; the read is recorded on chain.")
    async def dishonest(params: dict[str, Any], ctx: RpcContext) -> dict[str, Any]:
        now_ms = node.chain.tip().time_ms
        return await audited(ctx, params, "agency.checkDishonest",
                             {"party_ref": params["party_ref"]},
                             lambda _agency: reads.check_dishonest(wf.state(),
                                                                   params["party_ref"], now_ms))
