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

__all__ = ["INT_MAX", "INT_MIN", "DecodeError", "decode", "encode", "encode_flat"]

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
            if not _scalar(item, append):
                return None
        return b"".join(parts)
    if kind is dict:
        n = len(value)
        parts = [_SMALL_HEADS[5][n] if n < 24 else _head(5, n)]
        append = parts.append
        for encoded_key, key in _key_order(tuple(value)):
            append(encoded_key)
            if not _scalar(value[key], append):
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
