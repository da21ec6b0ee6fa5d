"""State key layout of the workflow engine (all under ``wf/``).

Text parts are UTF-8; validated texts never contain control characters, so
``\\x00`` separates a text part from what follows.  Times and sequence
numbers are 8-byte big-endian, so byte order is time order.

    wf/case/<case_no>                        case record
    wf/ix/court/<court>\\0<case_no>           case index by registering court
    wf/ix/state/<state>\\0<case_no>           case index by state
    wf/ix/due/<due_ms:8><case_no>            case index by due time
    wf/dl/<at_ms:8><kind>\\0<ref>             pending deadlines, in time order
    wf/enf/<enforcement_case_no>             enforcement case record
    wf/trail/<enforcement_case_no>\\0<seq:8>  audit trail entries
    wf/ord/<order_id>                        order (freeze, seizure, deduction)
    wf/ao/<agency>\\0<order_id>               orders by addressed agency
    wf/term/<expires_ms:8><order_id>         freeze/seizure terms by expiry
    wf/dis/<party_ref:32><enforcement_case_no>  dishonest-list entries
    wf/audit/<height:8><tx_id:32>            audited reads
    wf/auditby/<reader>\\0<height:8><tx_id>   audited reads by reader
"""

from __future__ import annotations

__all__ = [
    "ALL", "AUDIT", "AUDIT_BY", "CASE", "DEADLINE", "DISHONEST", "ENF", "IX_COURT", "IX_DUE",
    "IX_STATE", "ORDER", "ORDER_BY_AGENCY", "TERM", "TRAIL", "be8", "from_be8",
]

ALL = b"wf/"
CASE = b"wf/case/"
IX_COURT = b"wf/ix/court/"
IX_STATE = b"wf/ix/state/"
IX_DUE = b"wf/ix/due/"
DEADLINE = b"wf/dl/"
ENF = b"wf/enf/"
TRAIL = b"wf/trail/"
ORDER = b"wf/ord/"
ORDER_BY_AGENCY = b"wf/ao/"
TERM = b"wf/term/"
DISHONEST = b"wf/dis/"
AUDIT = b"wf/audit/"
AUDIT_BY = b"wf/auditby/"


def be8(n: int) -> bytes:
    return n.to_bytes(8, "big")


def from_be8(raw: bytes) -> int:
    return int.from_bytes(raw[:8], "big")


def u(text: str) -> bytes:
    return text.encode("utf-8")


def case(case_no: str) -> bytes:
    return CASE + u(case_no)


def ix_court(court: str, case_no: str = "") -> bytes:
    return IX_COURT + u(court) + b"\x00" + u(case_no)


def ix_state(state: str, case_no: str = "") -> bytes:
    return IX_STATE + u(state) + b"\x00" + u(case_no)


def ix_due(due_ms: int, case_no: str) -> bytes:
    return IX_DUE + be8(due_ms) + u(case_no)


def deadline(at_ms: int, kind: str, ref: str) -> bytes:
    return DEADLINE + be8(at_ms) + u(kind) + b"\x00" + u(ref)


def enf(case_no: str) -> bytes:
    return ENF + u(case_no)


def trail(case_no: str, seq: int | None = None) -> bytes:
    head = TRAIL + u(case_no) + b"\x00"
    return head if seq is None else head + be8(seq)


def order(order_id: str) -> bytes:
    return ORDER + u(order_id)


def order_by_agency(agency: str, order_id: str = "") -> bytes:
    return ORDER_BY_AGENCY + u(agency) + b"\x00" + u(order_id)


def term(expires_ms: int, order_id: str) -> bytes:
    return TERM + be8(expires_ms) + u(order_id)


def dishonest(party_ref: str, case_no: str = "") -> bytes:
    return DISHONEST + bytes.fromhex(party_ref) + u(case_no)


def audit(height: int, tx_id: bytes) -> bytes:
    return AUDIT + be8(height) + tx_id


def audit_by(reader: str, height: int | None = None, tx_id: bytes = b"") -> bytes:
    head = AUDIT_BY + u(reader) + b"\x00"
    return head if height is None else head + be8(height) + tx_id
