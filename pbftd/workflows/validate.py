"""Field checks and calendar arithmetic for the workflow engine.

Every check raises :class:`WorkflowError` naming the field path
(``obligations[2].amount_fen``) so the RPC edge can return it verbatim.  The
same checks run twice: at the RPC edge (so a bad call is refused before it
is proposed) and again in execution (a peer's transaction is never trusted).
So they must give the same answer on every node: no Unicode tables (which
follow the Python build); text is normalised at the edge only.

Dates are Asia/Shanghai calendar dates written ``YYYY-MM-DD``.  China has no
daylight saving time, so a date's start is always 00:00 at UTC+08:00 and the
conversion to block time (Unix milliseconds) is plain arithmetic.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from ..evidence import CASE_NO_CHARS_MAX, CONTROL, MOBILE, RESIDENT_ID

__all__ = ["DAY_MS", "WorkflowError", "add_years", "date_start_ms", "shanghai_date"]

DAY_MS = 86_400_000
SHANGHAI_OFFSET_MS = 8 * 3_600_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_AGENCY_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
AMOUNT_FEN_MAX = 10**15            # ten trillion yuan: beyond any case
TEXT_CHARS_MAX = 200


class WorkflowError(ValueError):
    """A refused operation.  ``code`` is one of: invalid_params, not_found,
    conflict (already exists / already done), bad_state (not allowed in the
    current state), forbidden (wrong court or agency), not_attested.  (A
    result may also carry internal_error: see Engine.execute_block.)"""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.code = code
        self.field = field
        self.detail = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.detail}


def invalid(field: str, message: str) -> WorkflowError:
    return WorkflowError("invalid_params", message, field)


# ------------------------------------------------------------------ calendar

def date_start_ms(d: date) -> int:
    """00:00 Asia/Shanghai of ``d`` in Unix milliseconds."""
    return (d.toordinal() - _EPOCH_ORDINAL) * DAY_MS - SHANGHAI_OFFSET_MS


def shanghai_date(time_ms: int) -> date:
    """The Asia/Shanghai calendar date at ``time_ms``."""
    return date.fromordinal(_EPOCH_ORDINAL + (time_ms + SHANGHAI_OFFSET_MS) // DAY_MS)


def day_after_start_ms(d: date) -> int:
    """00:00 of the day after ``d``: when a deadline or term ending on ``d`` has passed."""
    return date_start_ms(d) + DAY_MS


def add_years(d: date, years: int) -> date:
    """The same month and day ``years`` later; 29 February becomes 28 February."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        return d.replace(year=d.year + years, day=28)


# ------------------------------------------------------------------ fields

def want_fields(params: Any, field: str, required: tuple[str, ...],
                optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if type(params) is not dict:
        raise invalid(field or "params", "must be an object")
    for name in params:
        if name not in required and name not in optional:
            allowed = ", ".join((*required, *optional))
            raise invalid(_join(field, str(name)), f"unknown field; allowed: {allowed}")
    for name in required:
        if name not in params:
            raise invalid(_join(field, name), "is required")
    return params


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def want_text(value: Any, field: str, chars_max: int = TEXT_CHARS_MAX) -> str:
    """Bounded text with no control characters and nothing that looks like a
    resident identity number or a mobile number (SPC opinion, principle 4).

    Runs in execution too, so it uses nothing whose answer follows the
    Python build's Unicode tables (nodes may run different Pythons): code
    point ranges and ASCII patterns only.  Normalisation (NFC, trimming)
    happens once, at the edge, in ``normalise_texts``."""
    if type(value) is not str:
        raise invalid(field, "must be a string")
    if not 0 < len(value) <= chars_max:
        raise invalid(field, f"must be 1..{chars_max} characters")
    if CONTROL.search(value):
        raise invalid(field, "must not contain control characters")
    if RESIDENT_ID.search(value) or MOBILE.search(value):
        raise invalid(field, "looks like it holds personal data (an identity or phone number); "
                             "only pseudonymous party refs and case references may go on chain")
    return value


def normalise_texts(value: Any) -> Any:
    """Every string in a call's params, NFC-normalised and trimmed: done at
    the RPC edge before the checks, so what is signed and stored is
    normalised, and never in execution (see ``want_text``)."""
    if type(value) is str:
        return unicodedata.normalize("NFC", value).strip()
    if type(value) is list:
        return [normalise_texts(item) for item in value]
    if type(value) is dict:
        return {key: normalise_texts(item) for key, item in value.items()}
    return value


def want_case_no(value: Any, field: str) -> str:
    return want_text(value, field, CASE_NO_CHARS_MAX)


def want_hex64(value: Any, field: str) -> str:
    """A SHA-256 or a party ref: 64 hex characters, returned lowercase.

    A party ref is an opaque keyed hash computed by the court system, so it
    is not run through the personal-data patterns: 64 hex characters cannot
    be an identity or phone number, while a random hash does contain an
    11-digit run now and then and must not be refused for it.
    """
    if type(value) is not str or not _HEX64_RE.fullmatch(value):
        raise invalid(field, "must be 64 hex characters")
    return value.lower()


def want_date(value: Any, field: str) -> date:
    if type(value) is not str or not _DATE_RE.fullmatch(value):
        raise invalid(field, "must be a date YYYY-MM-DD (Asia/Shanghai)")
    try:
        d = date.fromisoformat(value)
    except ValueError:
        raise invalid(field, f"{value!r} is not a calendar date") from None
    if not 2000 <= d.year <= 2999:
        raise invalid(field, "year must be 2000..2999")
    return d


def want_amount(value: Any, field: str, allow_zero: bool = False) -> int:
    if type(value) is not int:
        raise invalid(field, "must be an integer number of fen (分)")
    low = 0 if allow_zero else 1
    if not low <= value <= AMOUNT_FEN_MAX:
        raise invalid(field, f"must be {low}..{AMOUNT_FEN_MAX} fen")
    return value


def want_choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if type(value) is not str or value not in choices:
        raise invalid(field, f"must be one of {', '.join(choices)}")
    return value


def want_agency(value: Any, field: str) -> str:
    if type(value) is not str or not _AGENCY_RE.fullmatch(value):
        raise invalid(field, "must be an agency id matching [a-z0-9][a-z0-9._-]{0,63}")
    return value


def want_int(value: Any, field: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise invalid(field, f"must be an integer {low}..{high}")
    return value


def want_bool(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise invalid(field, "must be true or false")
    return value


def want_list(value: Any, field: str, low: int, high: int) -> list[Any]:
    if type(value) is not list or not low <= len(value) <= high:
        raise invalid(field, f"must be a list of {low}..{high} items")
    return value
