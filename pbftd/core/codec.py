"""Canonical CBOR: the one place where protocol bytes are made and read.

Signatures are computed over bytes, so every honest encoder must produce the
same bytes for the same value and every decoder must refuse any other
spelling of it.  The rules kept here:

* encoding is cbor2's canonical form (shortest ints, sorted map keys,
  definite lengths);
* only the types the protocol uses may appear: int (within
  ``INT_MIN..INT_MAX``), bytes, str, bool, None, list and str-keyed dict;
  floats, tags, undefined, simple values and everything else are refused;
* decoding refuses trailing bytes, and then re-encodes the value and compares:
  any non-canonical spelling (duplicate map keys, long-form ints, unsorted
  keys, indefinite lengths, tags that decode to allowed types) differs and is
  refused.  This is what makes "one value, one encoding" true for peers too.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import cbor2

__all__ = ["INT_MAX", "INT_MIN", "DecodeError", "decode", "encode"]

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
DEPTH_MAX = 16


class DecodeError(ValueError):
    """Bytes from a peer that are not a canonical protocol value."""


def _check(value: Any, depth: int) -> None:
    if depth > DEPTH_MAX:
        raise DecodeError("value nested too deeply")
    kind = type(value)
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise DecodeError("integer out of range")
    elif kind in (bytes, str, bool) or value is None:
        return
    elif kind is list:
        for item in value:
            _check(item, depth + 1)
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise DecodeError("map key is not a text string")
            _check(item, depth + 1)
    else:
        raise DecodeError(f"type {kind.__name__} is not allowed")


def encode(value: Any) -> bytes:
    """Encode ``value`` canonically; raises ValueError for disallowed types.

    Tuples are accepted and encoded as arrays, so callers may build values
    from frozen dataclasses without copying into lists.
    """
    value = _normalise(value, 0)
    return cbor2.dumps(value, canonical=True)


def _normalise(value: Any, depth: int) -> Any:
    if depth > DEPTH_MAX:
        raise ValueError("value nested too deeply")
    kind = type(value)
    if kind is tuple or kind is list:
        return [_normalise(item, depth + 1) for item in value]
    if kind is dict:
        if any(type(k) is not str for k in value):
            raise ValueError("map keys must be text strings")
        return {k: _normalise(v, depth + 1) for k, v in value.items()}
    if kind is int and not INT_MIN <= value <= INT_MAX:
        raise ValueError("integer out of range")
    if kind in (int, bytes, str, bool) or value is None:
        return value
    raise ValueError(f"type {kind.__name__} cannot be encoded")


def decode(data: bytes, *, size_max: int) -> Any:
    """Decode one canonical value that spans exactly ``data``."""
    if type(data) is not bytes:
        raise DecodeError("frame is not bytes")
    if len(data) > size_max:
        raise DecodeError(f"frame of {len(data)} bytes exceeds {size_max}")
    stream = BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream, tag_hook=_refuse_tag).decode()
    except DecodeError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError,
            RecursionError, EOFError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise DecodeError("trailing bytes after the value")
    _check(value, 0)
    if cbor2.dumps(value, canonical=True) != data:
        raise DecodeError("value is not canonically encoded")
    return value


def _refuse_tag(_decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")
