"""codec.decode_stored: the same values as decode for what the node wrote,
still bounded, still refusing unknown tags; only the spelling is not
re-checked."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbftd.core import codec

scalars = st.one_of(st.integers(codec.INT_MIN, codec.INT_MAX), st.binary(max_size=64),
                    st.text(max_size=32), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(values)
def test_stored_bytes_decode_to_what_decode_gives(value: Any) -> None:
    raw = codec.encode(value)
    assert codec.decode_stored(raw, size_max=len(raw)) == codec.decode(raw, size_max=len(raw))


def test_the_spelling_is_what_it_does_not_check() -> None:
    long_form = b"\x19\x00\x05"  # 5 as a two-byte int
    with pytest.raises(codec.DecodeError, match="not canonically encoded"):
        codec.decode(long_form, size_max=16)
    assert codec.decode_stored(long_form, size_max=16) == 5


@pytest.mark.parametrize(("data", "size_max", "message"), [
    (cbor2.dumps(cbor2.CBORTag(4000, 5)), 64, "tag 4000"),
    (codec.encode(b"x" * 100), 50, "exceeds 50"),
    (b"\x82\x01", 16, "malformed CBOR"),
    (bytearray(b"\x01"), 16, "not bytes"),
])
def test_bounds_and_tags_still_hold(data: Any, size_max: int, message: str) -> None:
    with pytest.raises(codec.DecodeError, match=message):
        codec.decode_stored(data, size_max=size_max)
