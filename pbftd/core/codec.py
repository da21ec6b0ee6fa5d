"""Canonical CBOR: the one place where protocol bytes are made and read.

Signatures are computed over bytes, so every honest encoder must produce the
same bytes for the same value and every decoder must refuse any other
spelling of it.  The rules kept here:

* encoding is cbor2's canonical form (shortest ints, sorted map keys,
  definite lengths);
* only the types the protocol uses may appear: int (within
  ``INT_MIN..INT_MAX``), bytes, str, bool, None, list and str-keyed dict;
  floats, tags, undefined, simple values and everything else are refused;
* decoding refuses map keys out of canonical order, then re-encodes the
  value and compares: any other non-canonical spelling (duplicate map keys,
  long-form ints, indefinite lengths, tags that decode to allowed types,
  trailing bytes) differs and is refused.  This is what makes "one value,
  one encoding" true for peers too.
"""

from __future__ import annotations

from typing import Any

import cbor2

__all__ = ["INT_MAX", "INT_MIN", "DecodeError", "decode", "decode_stored", "encode",
           "encode_fields", "encode_ordered"]

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
DEPTH_MAX = 16


class DecodeError(ValueError):
    """Bytes from a peer that are not a canonical protocol value."""


def _check(value: Any, depth: int, decoded: bool) -> None:
    """Refuse a value holding anything the protocol does not use (decoded
    from a peer, or about to be encoded: tuples are arrays then).

    Scalars inside a container are checked in its loop rather than by a
    call each: a SUBMIT holds thousands of them.  A scalar counts one level
    below its container, so a non-empty container at ``DEPTH_MAX`` is too
    deep, exactly as if each item were checked on its own.

    A ``decoded`` value's maps must also hold their keys in canonical order
    (``_key_order``), as they came off the wire: ``decode`` can then
    re-encode with cbor2's plain encoder, which writes maps as given, instead
    of its canonical one, which sorts every map again (0.6 us against 2.4 us
    for an attestation's four-key map)."""
    if depth > DEPTH_MAX:
        raise DecodeError("value nested too deeply")
    kind = type(value)
    if kind is list or kind is tuple:
        items: Any = value
    elif kind is dict:
        last: tuple[int, str] = (-1, "")
        for key in value:
            if type(key) is not str:
                raise DecodeError("map key is not a text string")
            if decoded:
                order = _key_order(key)
                if order <= last:
                    raise DecodeError("value is not canonically encoded")
                last = order
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
        _check(item, depth + 1, decoded)


def _key_order(key: str) -> tuple[int, str]:
    """Where a text key sorts in canonical CBOR: by the length of its
    encoding, then bytewise.  The heads of equally long keys are equal, and
    UTF-8 sorts bytewise as its code points do, which is how str compares."""
    return (len(key) if key.isascii() else len(key.encode()), key)


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
    from frozen dataclasses without copying into lists.  The bytes are
    cbor2's (its C encoder); ``_check`` only refuses what the protocol does
    not use, without rebuilding the value.  Issue 6 once had a hand-written
    encoder here for speed; cbor2's C encoder with this check costs about
    the same (session 6), and CBOR is not ours to write.
    """
    _check_encodable(value)
    return cbor2.dumps(value, canonical=True)


def encode_ordered(value: dict[str, Any]) -> bytes:
    """``encode`` for a map whose keys (and those of maps inside it) the
    caller inserted in canonical order: shorter keys first, then bytewise.

    cbor2 then writes the map as given instead of encoding and sorting its
    keys again, which is most of the cost of a nine-key record written by
    the thousand per block (the evidence index).  The bytes are canonical
    only if the order is: every caller's test compares them with ``encode``.
    """
    _check_encodable(value)
    return cbor2.dumps(value)


def encode_fields(values: tuple[Any, ...]) -> bytes:
    """``encode`` for a flat array whose items the caller took from fields
    already checked: a parsed message's, a parsed payload's, a block's
    height and time (str, bytes, bool, None, ints within range).

    Skips ``encode``'s type walk, which costs a third to a half of cbor2's
    own work on such a small array (0.3-0.6 us against 0.9-1.3 us), and
    execution writes four of them per attestation on every node: the
    transaction's bytes, its request key and value, its index record.
    A value of another type would still encode, the same on every node.
    tests/core/test_fast_paths.py compares the bytes with ``encode``'s for
    flat arrays of every allowed type, and ``encode_tx``'s with cbor2's.
    """
    return cbor2.dumps(values, canonical=True)


def _check_encodable(value: Any) -> None:
    try:
        _check(value, 0, False)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None


def decode(data: bytes, *, size_max: int) -> Any:
    """Decode one canonical value that spans exactly ``data``."""
    value = decode_stored(data, size_max=size_max)
    _check(value, 0, True)
    if not spelled_canonically(value, data):
        if data.startswith(cbor2.dumps(value)):
            raise DecodeError("trailing bytes after the value")
        raise DecodeError("value is not canonically encoded")
    return value


def spelled_canonically(value: Any, data: bytes) -> bool:
    """Whether ``data``, which ``decode_stored`` turned into ``value``, is
    its canonical spelling and nothing more.

    Only for a value whose maps have their keys in canonical order and whose
    items are of the allowed types: ``decode``'s walk checks both; a caller
    that checked a fixed shape itself (exact keys in order, every value's
    type) may skip the walk.  Keys already in order, the plain encoder
    writes the canonical bytes, and comparing catches every other spelling
    (longer heads, indefinite lengths, repeated keys), trailing bytes
    included.
    """
    return cbor2.dumps(value) == data


def decode_stored(data: bytes, *, size_max: int) -> Any:
    """Decode bytes this node wrote after ``decode`` had accepted them (a
    stored block's submissions), without checking the spelling again.

    Why: the canonical check walks every value in Python and re-encodes the
    whole frame; for a stored submission of 1,000 requests that is ~3 ms
    that ``chain.getTx``, events and proofs would pay on every read. Still
    bounded in size, and tags cbor2 has no decoder for are refused; the
    values are what ``decode`` saw when the block was committed.
    """
    if type(data) is not bytes:
        raise DecodeError("frame is not bytes")
    if len(data) > size_max:
        raise DecodeError(f"frame of {len(data)} bytes exceeds {size_max}")
    try:
        return cbor2.loads(data, tag_hook=_refuse_tag, semantic_decoders=_REFUSED_SEMANTICS)
    except DecodeError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError,
            RecursionError, EOFError, UnicodeDecodeError) as exc:
        if isinstance(exc.__cause__, DecodeError):  # ours, raised inside cbor2 and wrapped
            raise exc.__cause__ from None
        raise DecodeError(f"malformed CBOR: {exc}") from None


def _refuse_tag(tag: Any, _immutable: bool) -> Any:
    """cbor2 (6.x) calls this for a tag it has no decoder for."""
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")


def _refuse_aliasing(*_args: Any) -> Any:
    raise DecodeError("CBOR value sharing and string references are not allowed")


# Value sharing (tag 28 marks a value shareable, 29 refers to it) and string
# references (256 opens a namespace, 25 refers to a string in it) decode to
# allowed types, one object referenced any number of times.  ``decode`` would
# refuse the spelling only after walking every reference and re-encoding each
# in full: 400 bytes made a value of 4 billion nodes for ``_check``, 4 MB of
# references to one string asked cbor2 for a terabyte and aborted the process.
# So they are refused as they are read, before any of that.
_REFUSED_SEMANTICS = {tag: _refuse_aliasing for tag in (25, 28, 29, 256)}
