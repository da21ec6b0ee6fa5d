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

from typing import Any

import cbor2

__all__ = ["INT_MAX", "INT_MIN", "DecodeError", "decode", "encode", "encode_flat", "encode_item"]

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
DEPTH_MAX = 16


class DecodeError(ValueError):
    """Bytes from a peer that are not a canonical protocol value."""


def _check(value: Any, depth: int) -> None:
    """Refuse a decoded value holding anything the protocol does not use.

    Scalars inside a container are checked in its loop rather than by a
    call each: a SUBMIT holds thousands of them.  A scalar counts one level
    below its container, so a non-empty container at ``DEPTH_MAX`` is too
    deep, exactly as if each item were checked on its own."""
    if depth > DEPTH_MAX:
        raise DecodeError("value nested too deeply")
    kind = type(value)
    if kind is list:
        items: Any = value
    elif kind is dict:
        for key in value:
            if type(key) is not str:
                raise DecodeError("map key is not a text string")
        items = value.values()
    else:
        _check_scalar(value)
        return
    if items and depth >= DEPTH_MAX:
        raise DecodeError("value nested too deeply")
    for item in items:
        kind = type(item)
        if kind is str or kind is bytes or kind is bool or item is None:
            continue
        if kind is int:
            if not INT_MIN <= item <= INT_MAX:
                raise DecodeError("integer out of range")
            continue
        _check(item, depth + 1)


def _check_scalar(value: Any) -> None:
    kind = type(value)
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise DecodeError("integer out of range")
    elif kind not in (bytes, str, bool) and value is not None:
        raise DecodeError(f"type {kind.__name__} is not allowed")


def encode(value: Any) -> bytes:
    """Encode ``value`` canonically; raises ValueError for disallowed types.

    Tuples are accepted and encoded as arrays, so callers may build values
    from frozen dataclasses without copying into lists.
    """
    flat = encode_flat(value)
    if flat is not None:
        return flat
    value = _normalise(value, 0)
    return cbor2.dumps(value, canonical=True)


def _head(major: int, n: int) -> bytes:
    """A canonical CBOR head: the shortest form of ``n`` under ``major``."""
    if n < 24:
        return _SMALL_HEADS[major][n]
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")


_SMALL_HEADS = [[bytes((major << 5 | n,)) for n in range(24)] for major in range(8)]
_SIMPLE = {True: b"\xf5", False: b"\xf4"}


def _scalar(item: Any, append: Any) -> bool:
    """Append the encoding of a scalar item; False for a container."""
    kind = type(item)
    if kind is str:
        raw = item.encode()
        n = len(raw)
        append(_TEXT_HEADS[n] if n < 24 else _head(3, n))
        append(raw)
    elif kind is bytes:
        n = len(item)
        append(_BYTES_HEADS[n] if n < 24 else _head(2, n))
        append(item)
    elif kind is int:
        if 0 <= item < 24:
            append(_UINT_HEADS[item])
        elif 0 <= item <= INT_MAX:
            append(_head(0, item))
        elif INT_MIN <= item < 0:
            append(_head(1, -1 - item))
        else:
            raise ValueError("integer out of range")
    elif kind is bool:
        append(_SIMPLE[item])
    elif item is None:
        append(b"\xf6")
    else:
        return False
    return True


_UINT_HEADS, _BYTES_HEADS, _TEXT_HEADS = _SMALL_HEADS[0], _SMALL_HEADS[2], _SMALL_HEADS[3]


def encode_item(value: Any) -> bytes:
    """The canonical encoding of one scalar, for callers that splice a
    value's bytes from items they already hold (the evidence index builds
    its records from the payload's own text items)."""
    if type(value) is str:
        raw = value.encode()
        n = len(raw)
        return (_TEXT_HEADS[n] if n < 24 else _head(3, n)) + raw
    parts: list[bytes] = []
    if not _scalar(value, parts.append):
        raise ValueError(f"type {type(value).__name__} is not a scalar")
    return b"".join(parts)


def encode_flat(value: Any) -> bytes | None:
    """The canonical encoding of an array, or a text-keyed map, of scalars;
    None for anything else (then ``encode`` takes the general path).

    Transactions, request keys, index records and the like are flat values
    encoded by the thousand per block; building their bytes here is several
    times cheaper than normalising and calling cbor2, and gives the same
    bytes (the tests compare the two on generated values).  Map keys are
    sorted as canonical CBOR sorts them: shorter encodings first, then
    bytewise.
    """
    kind = type(value)
    if kind is list or kind is tuple:
        n = len(value)
        parts = [_SMALL_HEADS[4][n] if n < 24 else _head(4, n)]
        append = parts.append
        for item in value:
            # text and bytes inline: most items are, and a call each shows
            if type(item) is str:
                raw = item.encode()
                size = len(raw)
                append(_TEXT_HEADS[size] if size < 24 else _head(3, size))
                append(raw)
            elif type(item) is bytes:
                size = len(item)
                append(_BYTES_HEADS[size] if size < 24 else _head(2, size))
                append(item)
            elif not _scalar(item, append):
                return None
        return b"".join(parts)
    if kind is dict:
        n = len(value)
        parts = [_SMALL_HEADS[5][n] if n < 24 else _head(5, n)]
        append = parts.append
        for encoded_key, key in _key_order(tuple(value)):
            append(encoded_key)
            item = value[key]
            if type(item) is str:
                raw = item.encode()
                size = len(raw)
                append(_TEXT_HEADS[size] if size < 24 else _head(3, size))
                append(raw)
            elif not _scalar(item, append):
                return None
        return b"".join(parts)
    return None


# The canonical order of a map's keys, by the keys in insertion order: the
# records encoded by the thousand are built by the same few dict displays.
_KEY_ORDERS: dict[tuple[Any, ...], list[tuple[bytes, str]]] = {}
_KEY_ORDERS_MAX = 1024


def _key_order(keys: tuple[Any, ...]) -> list[tuple[bytes, str]]:
    """(encoded key, key) in canonical order: shorter encodings first, then bytewise."""
    order = _KEY_ORDERS.get(keys)
    if order is None:
        if any(type(key) is not str for key in keys):
            raise ValueError("map keys must be text strings")
        encoded = sorted((len(raw), raw, key) for key in keys for raw in (key.encode(),))
        order = [(_head(3, size) + raw, key) for size, raw, key in encoded]
        if len(_KEY_ORDERS) < _KEY_ORDERS_MAX:
            _KEY_ORDERS[keys] = order
    return order


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
    try:
        value = cbor2.loads(data, tag_hook=_refuse_tag)
    except DecodeError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError,
            RecursionError, EOFError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from None
    _check(value, 0)
    # Re-encoding catches every other spelling of the value, trailing bytes included.
    again = encode_flat(value)
    if again is None:
        again = cbor2.dumps(value, canonical=True)
    if again != data:
        if data.startswith(again):
            raise DecodeError("trailing bytes after the value")
        raise DecodeError("value is not canonically encoded")
    return value


def _refuse_tag(_decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")
