"""Stateless validation of workflow operations and their transaction payload.

A workflow transaction's payload is canonical CBOR
``{"op": "workflow", "method": M, "params": P}``.  :func:`validate_op`
normalises ``P`` (lowercase hex, NFC text) and refuses anything malformed
with a :class:`WorkflowError` naming the field; the RPC edge calls
:func:`encode_op` (which validates) and execution calls :func:`parse_payload`
and validates again.
"""

from __future__ import annotations

from typing import Any

from ..core import codec
from .validate import (
    WorkflowError,
    invalid,
    normalise_texts,
    want_agency,
    want_amount,
    want_bool,
    want_case_no,
    want_choice,
    want_date,
    want_fields,
    want_hex64,
    want_int,
    want_list,
    want_text,
)

__all__ = ["ASSET_TERM_YEARS", "METHODS", "RECORD_TYPES", "encode_op", "parse_payload",
           "validate_op"]

PAYLOAD_SIZE_MAX = 64 * 1024
OBLIGATIONS_MAX = 64
PARTIES_MAX = 64
PARTY_ROLES = ("plaintiff", "defendant", "third_party")
KINDS = ("mediation", "judgment")
RECORD_TYPES = ("notice", "property_query", "freeze", "seizure", "deduction", "auction",
                "payout", "credit_punishment", "settlement", "resume", "closure", "archive")
ORDER_TYPES = ("freeze", "seizure", "deduction")
ASSET_TERM_YEARS = {"bank_deposit": 1, "movable": 2, "real_estate": 3}
ASSET_CLASSES = tuple(ASSET_TERM_YEARS)
CLOSURE_MODES = ("performed", "termination_of_procedure", "settled", "withdrawn", "other")
REPORT_RESULTS = ("done", "partial", "refused")
AUDITED_READS = ("agency.orders", "agency.checkDishonest", "enforcement.trail",
                 "enforcement.expiring", "case.get", "case.list", "evidence.verify")

# per enforcement.record type: (required fields, optional fields), beside
# enforcement_case_no and type
_RECORD_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "notice": ((), ("party_ref", "note")),
    "property_query": ((), ("agency", "asset_class", "debtor_ref", "note")),
    "freeze": (("agency", "asset_class", "term_end", "debtor_ref"),
               ("amount_fen", "renews", "note")),
    "seizure": (("agency", "asset_class", "term_end", "debtor_ref"),
                ("amount_fen", "renews", "note")),
    "deduction": (("agency", "debtor_ref", "amount_fen"), ("freeze_order", "note")),
    "auction": ((), ("asset_class", "amount_fen", "note")),
    "payout": (("creditor_ref", "amount_fen"), ("note",)),
    "credit_punishment": (("party_ref", "measure", "action"), ("until", "note")),
    "settlement": ((), ("deadline", "amount_fen", "report", "creditor_ref", "note")),
    "resume": ((), ("note",)),
    "closure": (("mode",), ("note",)),
    "archive": ((), ("note",)),
}


def _party(value: Any, field: str) -> dict[str, Any]:
    want_fields(value, field, ("party_ref", "role"))
    return {"party_ref": want_hex64(value["party_ref"], f"{field}.party_ref"),
            "role": want_choice(value["role"], f"{field}.role", PARTY_ROLES)}


def _obligation(value: Any, field: str) -> dict[str, Any]:
    want_fields(value, field, ("debtor_ref", "creditor_ref", "amount_fen", "description"))
    out = {"debtor_ref": want_hex64(value["debtor_ref"], f"{field}.debtor_ref"),
           "creditor_ref": want_hex64(value["creditor_ref"], f"{field}.creditor_ref"),
           "amount_fen": want_amount(value["amount_fen"], f"{field}.amount_fen"),
           "description": want_text(value["description"], f"{field}.description")}
    if out["debtor_ref"] == out["creditor_ref"]:
        raise invalid(f"{field}.creditor_ref", "debtor and creditor must differ")
    return out


def _register(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("case_no", "kind", "document_sha256", "effective_date",
                        "performance_deadline", "obligations", "parties"))
    effective = want_date(p["effective_date"], "effective_date")
    deadline = want_date(p["performance_deadline"], "performance_deadline")
    if deadline < effective:
        raise invalid("performance_deadline", "must not be before effective_date")
    parties = [_party(x, f"parties[{i}]")
               for i, x in enumerate(want_list(p["parties"], "parties", 2, PARTIES_MAX))]
    refs = [x["party_ref"] for x in parties]
    if len(set(refs)) != len(refs):
        raise invalid("parties", "a party_ref appears twice")
    obligations = [_obligation(x, f"obligations[{i}]") for i, x in
                   enumerate(want_list(p["obligations"], "obligations", 1, OBLIGATIONS_MAX))]
    for i, o in enumerate(obligations):
        for role in ("debtor_ref", "creditor_ref"):
            if o[role] not in refs:
                raise invalid(f"obligations[{i}].{role}", "is not one of the parties")
    return {"case_no": want_case_no(p["case_no"], "case_no"),
            "kind": want_choice(p["kind"], "kind", KINDS),
            "document_sha256": want_hex64(p["document_sha256"], "document_sha256"),
            "effective_date": effective.isoformat(),
            "performance_deadline": deadline.isoformat(),
            "obligations": obligations, "parties": parties}


def _case_only(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("case_no",))
    return {"case_no": want_case_no(p["case_no"], "case_no")}


def _confirm(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("case_no", "creditor_ref", "performed"))
    return {"case_no": want_case_no(p["case_no"], "case_no"),
            "creditor_ref": want_hex64(p["creditor_ref"], "creditor_ref"),
            "performed": want_bool(p["performed"], "performed")}


def _sign(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("case_no", "creditor_ref", "signature_sha256"))
    return {"case_no": want_case_no(p["case_no"], "case_no"),
            "creditor_ref": want_hex64(p["creditor_ref"], "creditor_ref"),
            "signature_sha256": want_hex64(p["signature_sha256"], "signature_sha256")}


def _file(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("case_no", "enforcement_case_no"), ("application_sha256",))
    out = {"case_no": want_case_no(p["case_no"], "case_no"),
           "enforcement_case_no": want_case_no(p["enforcement_case_no"], "enforcement_case_no")}
    if "application_sha256" in p:
        out["application_sha256"] = want_hex64(p["application_sha256"], "application_sha256")
    if out["case_no"] == out["enforcement_case_no"]:
        raise invalid("enforcement_case_no", "must differ from the original case number")
    return out


def _transfer(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("case_no", "enforcement_case_no"), ("creditor_ref", "signature_sha256"))
    out = _file({k: p[k] for k in ("case_no", "enforcement_case_no")})
    if ("creditor_ref" in p) != ("signature_sha256" in p):
        raise invalid("signature_sha256", "creditor_ref and signature_sha256 go together")
    if "creditor_ref" in p:
        out["creditor_ref"] = want_hex64(p["creditor_ref"], "creditor_ref")
        out["signature_sha256"] = want_hex64(p["signature_sha256"], "signature_sha256")
    return out


def _record(p: dict[str, Any]) -> dict[str, Any]:
    if type(p) is not dict:
        raise invalid("params", "must be an object")
    kind = want_choice(p.get("type"), "type", RECORD_TYPES)
    required, optional = _RECORD_FIELDS[kind]
    want_fields(p, "", ("enforcement_case_no", "type", *required), optional)
    out: dict[str, Any] = {
        "enforcement_case_no": want_case_no(p["enforcement_case_no"], "enforcement_case_no"),
        "type": kind}
    for name in (*required, *optional):
        if name not in p:
            continue
        v = p[name]
        if name == "agency":
            out[name] = want_agency(v, name)
        elif name == "asset_class":
            out[name] = want_choice(v, name, ASSET_CLASSES)
        elif name in ("term_end", "until", "deadline"):
            out[name] = want_date(v, name).isoformat()
        elif name in ("debtor_ref", "creditor_ref", "party_ref"):
            out[name] = want_hex64(v, name)
        elif name == "amount_fen":
            out[name] = want_amount(v, name)
        elif name in ("renews", "freeze_order"):
            out[name] = want_text(v, name, 96)
        elif name == "note":
            out[name] = want_text(v, name)
        elif name == "measure":
            out[name] = want_choice(v, name, ("dishonest_list", "consumption_restriction"))
        elif name == "action":
            out[name] = want_choice(v, name, ("add", "remove"))
        elif name == "report":
            out[name] = want_choice(v, name, ("performed", "not_performed"))
        elif name == "mode":
            out[name] = want_choice(v, name, CLOSURE_MODES)
    if kind == "settlement":
        if ("deadline" in out) == ("report" in out):
            raise invalid("deadline", "a settlement record carries either deadline (a new "
                                      "settlement) or report (performed / not_performed)")
        if "report" in out and ("creditor_ref" not in out or "amount_fen" in out):
            raise invalid("creditor_ref", "a settlement report names the reporting "
                                          "creditor_ref and no amount")
        if "deadline" in out and "creditor_ref" in out:
            raise invalid("creditor_ref", "only a settlement report names a creditor")
    if kind == "credit_punishment" and out["action"] == "remove" and "until" in out:
        raise invalid("until", "only a listing (action add) has an end date")
    return out


def _report(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("order_id", "agency", "result"), ("reason", "amount_fen"))
    out: dict[str, Any] = {"order_id": want_text(p["order_id"], "order_id", 96),
                           "agency": want_agency(p["agency"], "agency"),
                           "result": want_choice(p["result"], "result", REPORT_RESULTS)}
    if "reason" in p:
        out["reason"] = want_text(p["reason"], "reason")
    if "amount_fen" in p:
        out["amount_fen"] = want_amount(p["amount_fen"], "amount_fen", allow_zero=True)
    if out["result"] in ("refused", "partial") and "reason" not in out:
        raise invalid("reason", f"is required when result is {out['result']}")
    return out


def _audit(p: dict[str, Any]) -> dict[str, Any]:
    want_fields(p, "", ("reader", "method", "query", "result_sha256", "as_of_height"))
    reader = p["reader"]
    if type(reader) is not str or not (reader.startswith("agency:") or
                                       reader.startswith("court:")):
        raise invalid("reader", "must be 'agency:<id>' or 'court:<id>'")
    want_agency(reader.split(":", 1)[1], "reader")
    query = p["query"]
    if type(query) is not dict or len(query) > 16:
        raise invalid("query", "must be an object of at most 16 fields")
    clean: dict[str, Any] = {}
    for name, v in query.items():
        field = f"query.{name}"
        if type(name) is not str or not 0 < len(name) <= 64:
            raise invalid("query", "field names are 1..64 characters")
        if v is None or type(v) in (bool, int):
            if type(v) is int:
                want_int(v, field, 0, 2**53)
            clean[name] = v
        elif type(v) is str:
            try:
                clean[name] = want_hex64(v, field)
            except WorkflowError:
                clean[name] = want_text(v, field)
        else:
            raise invalid(field, "must be a string, integer, boolean or null")
    return {"reader": reader,
            "method": want_choice(p["method"], "method", AUDITED_READS),
            "query": clean,
            "result_sha256": want_hex64(p["result_sha256"], "result_sha256"),
            "as_of_height": want_int(p["as_of_height"], "as_of_height", 0, 2**62)}


_VALIDATORS = {
    "case.register": _register,
    "case.issueEffectivenessCertificate": _case_only,
    "case.confirmPerformance": _confirm,
    "case.signApplication": _sign,
    "enforcement.file": _file,
    "case.transferToEnforcement": _transfer,
    "enforcement.record": _record,
    "agency.report": _report,
    "audit.read": _audit,
}
METHODS = tuple(_VALIDATORS)


def validate_op(method: Any, params: Any) -> dict[str, Any]:
    """The normalised params of a write operation, or WorkflowError."""
    if type(method) is not str or method not in _VALIDATORS:
        raise invalid("method", f"must be one of {', '.join(METHODS)}")
    if type(params) is not dict:
        raise invalid("params", "must be an object")
    return _VALIDATORS[method](params)


def encode_op(method: str, params: dict[str, Any]) -> bytes:
    """The transaction payload for a write operation: its texts normalised,
    then validated (the RPC edge; execution validates without normalising)."""
    body = {"op": "workflow", "method": method,
            "params": validate_op(method, normalise_texts(params))}
    raw = codec.encode(body)
    if len(raw) > PAYLOAD_SIZE_MAX:
        raise invalid("params", f"operation of {len(raw)} bytes exceeds {PAYLOAD_SIZE_MAX}")
    return raw


def parse_payload(payload: bytes) -> tuple[str, Any] | None:
    """``(method, raw params)`` if the payload is a workflow operation, else
    None (another application's transaction).  Params are not validated here."""
    try:
        body = codec.decode(payload, size_max=PAYLOAD_SIZE_MAX)
    except codec.DecodeError:
        return None
    if type(body) is not dict or body.get("op") != "workflow":
        return None
    return body.get("method"), body.get("params")
