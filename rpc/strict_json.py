"""Strict JSON for request bodies: one meaning per document, bounded cost.

Python's json module is lenient in ways that matter for a chain whose
requests are signed, logged and replayed (faults/README.md §7): it accepts
NaN and Infinity, turns 1e999999 into inf, lets the last duplicate key win,
decodes "\\ud800" into a string that later fails to encode, and recurses on
nesting until RecursionError. Each of those becomes a -32700 Parse error here,
before any handler sees the value:

- a UTF-8 BOM or invalid UTF-8 (the body is decoded strictly, never sniffed);
- nesting deeper than `depth_max`, found by one linear scan *before*
  json.loads, so hostile depth costs no recursion at all (RecursionError is
  still caught as a backstop);
- NaN/Infinity (`parse_constant`), non-finite floats (`parse_float`),
  integers longer than `int_digits_max` digits (`parse_int`), duplicate
  object keys (`object_pairs_hook`);
- strings with lone surrogates or longer than `string_chars_max`.

A batch longer than `batch_len_max` is well-formed JSON but not a request we
serve, so it is -32600 Invalid Request instead.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import INVALID_REQUEST, PARSE_ERROR, RpcError

__all__ = ["DEPTH_MAX", "STRING_CHARS_MAX", "parse_request_body"]

DEPTH_MAX = 64
STRING_CHARS_MAX = 65_536
BATCH_LEN_MAX = 10_000
INT_DIGITS_MAX = 4300  # CPython's own default limit for int(str)

_BOM = b"\xef\xbb\xbf"
# A JSON string (unrolled loop: no catastrophic backtracking) or a bracket.
# A string left open runs to the end of the text (a lone trailing backslash
# included), so a match from a quote never fails: when it could, finditer
# tried again at every later quote and scanned to the end each time, and a
# body of escaped quotes (\"\"\"...) cost time quadratic in its length.
# Such a body is not JSON anyway; json.loads says so.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Rejected(Exception):
    """Raised from inside json.loads hooks; deliberately not a ValueError."""


def _parse_error(reason: str) -> RpcError:
    return RpcError(PARSE_ERROR, data={"reason": reason})


def parse_request_body(body: bytes, *, depth_max: int = DEPTH_MAX,
                       string_chars_max: int = STRING_CHARS_MAX,
                       batch_len_max: int = BATCH_LEN_MAX,
                       int_digits_max: int = INT_DIGITS_MAX) -> Any:
    """Decode one request body, or raise RpcError (-32700, or -32600 for a long batch)."""
    if body.startswith(_BOM):
        raise _parse_error("a UTF-8 byte order mark is not allowed")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _parse_error("body is not valid UTF-8") from None
    if _nesting_depth(text, depth_max) > depth_max:
        raise _parse_error(f"nesting deeper than {depth_max}")
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=lambda s: _bounded_int(s, int_digits_max),
            object_pairs_hook=lambda pairs: _unique_object(pairs, string_chars_max),
        )
    except _Rejected as rejected:
        raise _parse_error(str(rejected)) from None
    except RecursionError:
        raise _parse_error(f"nesting deeper than {depth_max}") from None
    except ValueError:
        raise _parse_error("invalid JSON") from None
    _check_strings(value, string_chars_max)
    if isinstance(value, list) and len(value) > batch_len_max:
        raise RpcError(INVALID_REQUEST, data={
            "reason": f"batch longer than {batch_len_max}", "batch_len_max": batch_len_max})
    return value


def _nesting_depth(text: str, stop_above: int) -> int:
    """Deepest bracket nesting outside strings; stops counting once past `stop_above`."""
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    break
        elif char in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Rejected("number out of range")
    return value


def _bounded_int(literal: str, digits_max: int) -> int:
    if len(literal.lstrip("-")) > digits_max:
        raise _Rejected(f"integer longer than {digits_max} digits")
    return int(literal)


def _unique_object(pairs: list[tuple[str, Any]], string_chars_max: int) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Rejected("duplicate object key")
    for key in obj:
        _check_string(key, string_chars_max)
    return obj


def _check_strings(value: Any, string_chars_max: int) -> None:
    # Iterative: depth is already bounded, but a wide document should not
    # cost stack either. Object keys were checked in the pairs hook.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_string(item, string_chars_max)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def _check_string(text: str, string_chars_max: int) -> None:
    if len(text) > string_chars_max:
        raise _parse_error(f"string longer than {string_chars_max} characters")
    if has_lone_surrogate(text):
        raise _parse_error("string contains a lone surrogate")


def has_lone_surrogate(text: str) -> bool:
    """Whether json decoded a lone surrogate into ``text`` ("\\ud800"): it
    joins an escaped pair into one character, so any left is lone, and such
    a str cannot be encoded as UTF-8 (hashing or signing it raises)."""
    return not text.isascii() and _SURROGATE.search(text) is not None
