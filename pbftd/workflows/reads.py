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
from collections.abc import Callable, Iterator
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

__all__ = ["CASE_STATES", "LIST_LIMIT_MAX", "PAGE_DEFAULT", "SCAN_PER_ITEM", "agency_orders",
           "answer_sha256", "audit_log", "audit_read_payload", "case_get", "case_list",
           "check_dishonest", "enforcement_expiring", "enforcement_get", "enforcement_trail"]

CASE_STATES = ("pending", "due", "closed", "awaiting_signature", "signed", "enforcement_filed")
LIST_LIMIT_MAX = 500
PAGE_DEFAULT = 100


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
              limit: int = PAGE_DEFAULT, after: str | None = None) -> dict[str, Any]:
    """Cases filtered by registering court, state and due date (inclusive
    dates: a case is due on the day after its performance deadline).  The
    narrowest index is scanned: due range, else court, else state.  ``after``
    is the ``next`` cursor of the previous page (see ``_page``)."""
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

    def pick(key: bytes, raw: bytes) -> Any:
        if prefix == K.IX_DUE:
            if hi_ms is not None and K.from_be8(key[len(prefix):]) >= hi_ms:
                return _END
            case_no = key[len(prefix) + 8:].decode()
        else:
            case_no = key[len(prefix):].decode()
        case = codec.decode(raw, size_max=1 << 20) if prefix == K.CASE else \
            get_obj(state, K.case(case_no))
        if court is not None and case["court"] != court:
            return None
        if state_is is not None and case["state"] != state_is:
            return None
        return public(case)

    cases, next_cursor = _page(state.iter_prefix(prefix, _resume(prefix, start, after)),
                               pick, limit)
    return {"cases": cases, "next": next_cursor}


# One page looks at no more than this many index entries per item it may
# return.  Without a bound a filter that matches little (case.list by court
# and state, agency.orders by status, enforcement.expiring for a court that
# supervises few of the orders) made one call read the whole index, at about
# 40 us an entry on the trio thread, where it also holds up consensus.
SCAN_PER_ITEM = 4

_END = object()   # ``pick``'s answer for a key past the listing's range


def _resume(prefix: bytes, start: bytes, after: str | None) -> bytes:
    """Where a page starts: ``start``, or just past the ``after`` cursor."""
    if after is None:
        return start
    try:
        cursor = bytes.fromhex(after)
    except ValueError:
        raise WorkflowError("invalid_params", "not a cursor", "after") from None
    if not cursor.startswith(prefix):
        raise WorkflowError("invalid_params", "cursor from another listing", "after")
    return max(start, cursor + b"\x00")


def _page(entries: Iterator[tuple[bytes, bytes]], pick: Callable[[bytes, bytes], Any],
          limit: int) -> tuple[list[Any], str | None]:
    """Up to ``limit`` items of one listing, and the cursor to go on from.

    ``pick(key, raw)`` gives an entry's item, None to leave it out, or
    ``_END`` past the range.  The cursor is the last entry looked at, so a
    page cut short by the scan bound (``SCAN_PER_ITEM``) may hold fewer than
    ``limit`` items, none even, and still say ``next``: the listing ends only
    when ``next`` is null.
    """
    out: list[Any] = []
    examined, last = 0, b""
    for key, raw in entries:
        if examined == SCAN_PER_ITEM * limit:
            return out, last.hex()
        item = pick(key, raw)
        if item is _END:
            break
        if item is not None:
            if len(out) == limit:
                return out, last.hex()
            out.append(item)
        examined, last = examined + 1, key
    return out, None


def enforcement_get(state: State, case_no: str) -> dict[str, Any] | None:
    enf = get_obj(state, K.enf(case_no))
    return None if enf is None else public(enf)


def enforcement_trail(state: State, reader_court: str, case_no: str,
                      is_supervisor: Callable[[str, str], bool], *,
                      limit: int = PAGE_DEFAULT, after: str | None = None) -> dict[str, Any]:
    """The audit trail, a page of entries at a time (``_page``) with the
    orders those entries made, for the handling court and every court above
    it."""
    want_int(limit, "limit", 1, LIST_LIMIT_MAX)
    enf = get_obj(state, K.enf(want_case_no(normalise_texts(case_no), "enforcement_case_no")))
    if enf is None:
        raise WorkflowError("not_found", f"no enforcement case {case_no!r}",
                            "enforcement_case_no")
    if not is_supervisor(reader_court, enf["court"]):
        raise WorkflowError("forbidden", f"court {reader_court!r} neither handles nor "
                            f"supervises the enforcement case's court", "enforcement_case_no")
    prefix = K.trail(enf["case_no"])
    entries, next_cursor = _page(state.iter_prefix(prefix, _resume(prefix, prefix, after)),
                                 lambda _key, raw: public(codec.decode(raw, size_max=1 << 20)),
                                 limit)
    orders = [public(get_obj(state, K.order(e["details"]["order_id"])))
              for e in entries if e["type"] in ("freeze", "seizure", "deduction")]
    return {"enforcement": public(enf), "trail": entries, "orders": orders, "next": next_cursor}


def enforcement_expiring(state: State, now_ms: int, days: int, *,
                         reader_court: str | None = None,
                         is_supervisor: Callable[[str, str], bool] | None = None,
                         limit: int = PAGE_DEFAULT, after: str | None = None
                         ) -> dict[str, Any]:
    """Freeze and seizure orders whose term expires within ``days`` days of
    ``now_ms``, soonest first, a page at a time (``_page``); restricted to
    what ``reader_court`` handles or supervises when given."""
    want_int(days, "days", 0, 3660)
    want_int(limit, "limit", 1, LIST_LIMIT_MAX)
    hi = now_ms + days * DAY_MS

    def pick(key: bytes, _raw: bytes) -> Any:
        if K.from_be8(key[len(K.TERM):]) > hi:
            return _END
        order = get_obj(state, K.order(key[len(K.TERM) + 8:].decode()))
        if reader_court is not None and is_supervisor is not None and \
                not is_supervisor(reader_court, order["court"]):
            return None
        return public(order)

    start = _resume(K.TERM, K.TERM + K.be8(now_ms + 1), after)
    orders, next_cursor = _page(state.iter_prefix(K.TERM, start), pick, limit)
    return {"orders": orders, "next": next_cursor}


def agency_orders(state: State, agency: str, *, status: str | None = None,
                  limit: int = PAGE_DEFAULT, after: str | None = None) -> dict[str, Any]:
    """Orders addressed to ``agency`` (from the caller's ``agency:<id>``
    scope), a page at a time (``_page``)."""
    prefix = K.order_by_agency(want_agency(agency, "agency"))
    want_int(limit, "limit", 1, LIST_LIMIT_MAX)

    def pick(key: bytes, _raw: bytes) -> Any:
        order = get_obj(state, K.order(key[len(prefix):].decode()))
        if order["agency"] != agency:   # defensive: the index is by agency
            return None
        return public(order) if status is None or order["status"] == status else None

    orders, next_cursor = _page(state.iter_prefix(prefix, _resume(prefix, prefix, after)),
                                pick, limit)
    return {"orders": orders, "next": next_cursor}


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

