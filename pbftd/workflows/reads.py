"""Reads of workflow state: what case.get, case.list, enforcement.trail,
enforcement.expiring, agency.orders and agency.checkDishonest return.

All take the committed state and return JSON-ready values (hex strings, no
bytes).  Access rules are enforced here so the RPC layer cannot forget them:
the trail needs ``is_supervisor(reader_court, handling_court)`` (the genesis
hierarchy: ``Genesis.is_supervisor``), agency reads take the agency id from
the caller's token scope.  ``now_ms`` is the committed tip's block time,
never the node's clock.

An agency read should be answered and then recorded with
:func:`audit_read_payload`, which the daemon submits as a transaction
(``audit.read``), carrying the answer's digest (:func:`answer_sha256`) and
the height it was answered at, so the agency can later prove what it was told.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from ..core import codec
from . import keys as K
from .ops import encode_op
from .state import State, get_obj
from .validate import (
    DAY_MS,
    WorkflowError,
    date_start_ms,
    day_after_start_ms,
    normalise_texts,
    want_agency,
    want_case_no,
    want_choice,
    want_date,
    want_hex64,
    want_int,
)

__all__ = ["CASE_STATES", "agency_orders", "answer_sha256", "audit_log", "audit_read_payload",
           "case_get", "case_list", "check_dishonest", "enforcement_expiring",
           "enforcement_get", "enforcement_trail"]

CASE_STATES = ("pending", "due", "closed", "awaiting_signature", "signed", "enforcement_filed")
LIST_LIMIT_MAX = 500


def public(record: Any) -> Any:
    """A stored record as JSON: private fields (``_...``) dropped, bytes as hex."""
    if isinstance(record, dict):
        return {k: public(v) for k, v in record.items() if not k.startswith("_")}
    if isinstance(record, list):
        return [public(v) for v in record]
    if isinstance(record, bytes):
        return record.hex()
    return record


def case_get(state: State, case_no: str) -> dict[str, Any] | None:
    case = get_obj(state, K.case(want_case_no(normalise_texts(case_no), "case_no")))
    return None if case is None else public(case)


def case_list(state: State, *, court: str | None = None, state_is: str | None = None,
              due_from: str | None = None, due_to: str | None = None,
              limit: int = 100, after: str | None = None) -> dict[str, Any]:
    """Cases filtered by registering court, state and due date (inclusive
    dates: a case is due on the day after its performance deadline).  The
    narrowest index is scanned: due range, else court, else state.  ``after``
    is the ``next`` cursor of the previous page."""
    want_int(limit, "limit", 1, LIST_LIMIT_MAX)
    if state_is is not None:
        want_choice(state_is, "state", CASE_STATES)
    lo_ms = hi_ms = None
    if due_from is not None:
        lo_ms = date_start_ms(want_date(due_from, "due_from"))
    if due_to is not None:
        hi_ms = day_after_start_ms(want_date(due_to, "due_to"))   # exclusive
    if lo_ms is not None or hi_ms is not None:
        prefix, start = K.IX_DUE, K.IX_DUE + K.be8(lo_ms or 0)
    elif court is not None:
        prefix = start = K.ix_court(court)
    elif state_is is not None:
        prefix = start = K.ix_state(state_is)
    else:
        prefix = start = K.CASE
    if after is not None:
        try:
            cursor = bytes.fromhex(after)
        except ValueError:
            raise WorkflowError("invalid_params", "not a cursor", "after") from None
        if not cursor.startswith(prefix):
            raise WorkflowError("invalid_params", "cursor from another listing", "after")
        start = max(start, cursor + b"\x00")
    out: list[dict[str, Any]] = []
    last, more = b"", False
    for key, raw in state.iter_prefix(prefix, start):
        if prefix == K.IX_DUE:
            if hi_ms is not None and K.from_be8(key[len(prefix):]) >= hi_ms:
                break
            case_no = key[len(prefix) + 8:].decode()
        else:
            case_no = key[len(prefix):].decode()
        case = codec.decode(raw, size_max=1 << 20) if prefix == K.CASE else \
            get_obj(state, K.case(case_no))
        if court is not None and case["court"] != court:
            continue
        if state_is is not None and case["state"] != state_is:
            continue
        if len(out) == limit:
            more = True
            break
        out.append(public(case))
        last = key
    next_cursor = last.hex() if more else None
    return {"cases": out, "next": next_cursor}


def enforcement_get(state: State, case_no: str) -> dict[str, Any] | None:
    enf = get_obj(state, K.enf(case_no))
    return None if enf is None else public(enf)


def enforcement_trail(state: State, reader_court: str, case_no: str,
                      is_supervisor: Callable[[str, str], bool]) -> dict[str, Any]:
    """The full audit trail, for the handling court and every court above it."""
    enf = get_obj(state, K.enf(want_case_no(normalise_texts(case_no), "enforcement_case_no")))
    if enf is None:
        raise WorkflowError("not_found", f"no enforcement case {case_no!r}",
                            "enforcement_case_no")
    if not is_supervisor(reader_court, enf["court"]):
        raise WorkflowError("forbidden", f"court {reader_court!r} neither handles nor "
                            f"supervises the enforcement case's court", "enforcement_case_no")
    entries = [public(codec.decode(raw, size_max=1 << 20))
               for _k, raw in state.iter_prefix(K.trail(enf["case_no"]))]
    orders = [public(get_obj(state, K.order(e["details"]["order_id"])))
              for e in entries if e["type"] in ("freeze", "seizure", "deduction")]
    return {"enforcement": public(enf), "trail": entries, "orders": orders}


def enforcement_expiring(state: State, now_ms: int, days: int, *,
                         reader_court: str | None = None,
                         is_supervisor: Callable[[str, str], bool] | None = None
                         ) -> list[dict[str, Any]]:
    """Freeze and seizure orders whose term expires within ``days`` days of
    ``now_ms``, soonest first; restricted to what ``reader_court`` handles or
    supervises when given."""
    want_int(days, "days", 0, 3660)
    hi = now_ms + days * DAY_MS
    out = []
    for key, _raw in state.iter_prefix(K.TERM, K.TERM + K.be8(now_ms + 1)):
        if K.from_be8(key[len(K.TERM):]) > hi:
            break
        order = get_obj(state, K.order(key[len(K.TERM) + 8:].decode()))
        if reader_court is not None and is_supervisor is not None and \
                not is_supervisor(reader_court, order["court"]):
            continue
        out.append(public(order))
    return out


def agency_orders(state: State, agency: str, *, status: str | None = None
                  ) -> list[dict[str, Any]]:
    """Orders addressed to ``agency`` (from the caller's ``agency:<id>`` scope)."""
    prefix = K.order_by_agency(want_agency(agency, "agency"))
    out = []
    for key, _raw in state.iter_prefix(prefix):
        order = get_obj(state, K.order(key[len(prefix):].decode()))
        if order["agency"] != agency:   # defensive: the index is by agency
            continue
        if status is None or order["status"] == status:
            out.append(public(order))
    return out


def check_dishonest(state: State, party_ref: str, now_ms: int) -> dict[str, Any]:
    """Whether ``party_ref`` is on the dishonest-debtor list (失信被执行人) at
    ``now_ms``, with each current listing's case, court and date."""
    ref = want_hex64(party_ref, "party_ref")
    listings = []
    for _key, raw in state.iter_prefix(K.dishonest(ref)):
        rec = codec.decode(raw, size_max=1 << 20)
        if rec["listed_ms"] <= now_ms and (rec["until_ms"] is None or now_ms < rec["until_ms"]):
            listings.append({k: rec[k] for k in ("enforcement_case_no", "court",
                                                 "listed_date", "until")})
    return {"party_ref": ref, "listed": bool(listings), "listings": listings}


def audit_log(state: State, reader: str) -> list[dict[str, Any]]:
    """The recorded reads of one reader (``agency:<id>`` or ``court:<id>``)."""
    prefix = K.audit_by(reader)
    out = []
    for key, _raw in state.iter_prefix(prefix):
        out.append(public(get_obj(state, K.AUDIT + key[len(prefix):])))
    return out


def answer_sha256(answer: Any) -> str:
    """Digest of a read's answer: SHA-256 of its canonical CBOR."""
    return hashlib.sha256(codec.encode(answer)).hexdigest()


def audit_read_payload(reader: str, method: str, query: dict[str, Any], answer: Any,
                       as_of_height: int) -> bytes:
    """The ``audit.read`` transaction payload recording one read: who asked
    (``agency:<id>`` or ``court:<id>``), which method with which query, a
    digest of the answer, and the height it was answered at.  The block that
    commits it says when."""
    return encode_op("audit.read", {"reader": reader, "method": method, "query": query,
                                    "result_sha256": answer_sha256(answer),
                                    "as_of_height": as_of_height})

