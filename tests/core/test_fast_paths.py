"""The hot-path shortcuts give exactly what the general paths give.

Issue 6's profile made things cheaper: values are checked without being
rebuilt and encoded by cbor2's C encoder, a SUBMIT seen once is not decoded
and verified again when a PRE-PREPARE carries it, and a batch's transaction
bytes and Merkle root are computed once.  Each shortcut must be invisible:
same bytes, same refusals, same messages.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbftd.core import codec
from pbftd.core.chain import Tx, batch_txs
from pbftd.core.merkle import merkle_root
from pbftd.core.messages import (
    Batch,
    Commit,
    Limits,
    ProtocolError,
    Request,
    Submit,
    Wire,
    encode_tx,
)
from tests.core.harness import CHAIN_ID, NOW, CountingVerifier, Peers

SETTINGS = settings(max_examples=400, derandomize=True, deadline=None)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(codec.INT_MIN, codec.INT_MAX),
    st.integers(0, 2**40), st.integers(-300, 300),
    st.text(max_size=40), st.binary(max_size=300),
)
flat_lists = st.lists(scalars, max_size=30)
flat_maps = st.dictionaries(st.text(max_size=30), scalars, max_size=30)


@SETTINGS
@given(st.one_of(flat_lists, flat_maps))
def test_flat_values_encode_exactly_as_cbor2_canonical(value: Any) -> None:
    assert codec.encode(value) == cbor2.dumps(value, canonical=True)


@SETTINGS
@given(flat_lists)
def test_checked_fields_encode_exactly_as_encode(value: list[Any]) -> None:
    """encode_fields (transactions, request records, index records) skips
    the type walk and nothing else."""
    assert codec.encode_fields(tuple(value)) == codec.encode(value)


@SETTINGS
@given(st.one_of(flat_lists, flat_maps))
def test_flat_values_decode_back(value: Any) -> None:
    data = codec.encode(value)
    assert codec.decode(data, size_max=1 << 20) == value


@SETTINGS
@given(flat_lists)
def test_tuples_encode_as_arrays(value: list[Any]) -> None:
    assert codec.encode(tuple(value)) == codec.encode(value)


def test_nested_values_and_tuples_inside_them_encode_as_cbor2_canonical() -> None:
    value = ["a", [1, 2], {"k": [b"x"]}]
    assert codec.encode(value) == cbor2.dumps(value, canonical=True)
    assert codec.encode(("a", (1, 2), {"k": (b"x",)})) == codec.encode(value)


@pytest.mark.parametrize("value", [[2**63], [-(2**63) - 1], {"k": 2**64}])
def test_flat_encoding_refuses_out_of_range_ints(value: Any) -> None:
    with pytest.raises(ValueError, match="out of range"):
        codec.encode(value)


@pytest.mark.parametrize("value", [[1.5], {"k": 1.5}, [{1, 2}], 1.5, [[[1.5]]], object()])
def test_flat_encoding_refuses_other_types(value: Any) -> None:
    with pytest.raises(ValueError):
        codec.encode(value)


def test_flat_maps_refuse_non_text_keys() -> None:
    with pytest.raises(ValueError, match="not a text string"):
        codec.encode({1: "a"})


def test_decode_still_refuses_a_long_form_int_in_a_flat_array() -> None:
    data = b"\x82\x18\x01\x02"  # [1, 2] with 1 spelled in two bytes
    with pytest.raises(codec.DecodeError, match="canonical"):
        codec.decode(data, size_max=100)


def test_decode_still_refuses_unsorted_map_keys() -> None:
    data = b"\xa2\x61b\x01\x61a\x02"  # {"b": 1, "a": 2}
    with pytest.raises(codec.DecodeError, match="canonical"):
        codec.decode(data, size_max=100)


@SETTINGS
@given(st.text(min_size=1, max_size=64), st.integers(1, codec.INT_MAX),
       st.text(min_size=1, max_size=128), st.text(min_size=1, max_size=128),
       st.binary(max_size=2000))
def test_encode_tx_is_the_canonical_array(origin: str, sid: int, client: str, rid: str,
                                          payload: bytes) -> None:
    expected = cbor2.dumps([origin, sid, client, rid, payload], canonical=True)
    assert encode_tx(origin, sid, client, rid, payload) == expected
    tx = Tx(origin, sid, client, rid, payload)
    assert tx.encode() == expected
    assert tx == Tx(origin, sid, client, rid, payload, expected)


def _batch(peers: Peers) -> Batch:
    subs = [peers.submit(peers.ids[i % 4], f"p{i}".encode(), f"q{i}".encode()) for i in range(5)]
    return peers.batch(1, subs=subs)


def test_batch_caches_match_a_fresh_computation() -> None:
    peers = Peers()
    batch = _batch(peers)
    expected = [cbor2.dumps([s.sender, s.sid, r.client, r.rid, r.payload], canonical=True)
                for s in batch.subs for r in s.requests]
    assert batch.txs() == expected
    assert batch.tx_root() == merkle_root(expected)
    assert batch.tx_root() is batch.tx_root()  # computed once
    assert [t.encode() for t in batch_txs(batch)] == expected
    # The caches are not part of the value.
    fresh = Batch(batch.seq, batch.view, batch.proposer, batch.time_ms, batch.subs)
    assert fresh == batch and hash(fresh) == hash(batch)


def _wire(peers: Peers, limits: Limits | None = None) -> tuple[Wire, CountingVerifier]:
    verifier = CountingVerifier()
    return Wire(CHAIN_ID, peers.vals, verifier, limits), verifier


def test_a_submit_inside_a_pre_prepare_is_not_verified_twice() -> None:
    peers = Peers()
    batch = _batch(peers)
    wire, verifier = _wire(peers)
    direct = [wire.open(s.frame())[0] for s in batch.subs]
    assert verifier.calls == len(batch.subs)
    again = Batch.parse(batch.to_wire(), wire)
    assert verifier.calls == len(batch.subs)
    assert again == batch and list(again.subs) == direct
    assert not wire._submits and wire._submits_bytes == 0  # each was reused once


def test_a_forged_copy_of_a_known_signature_is_still_checked() -> None:
    peers = Peers()
    sub = peers.submit(peers.ids[1], b"real")
    wire, verifier = _wire(peers)
    wire.open(sub.frame())
    other = peers.submit(peers.ids[1], b"forged", sid=sub.sid)
    forged = [other.env.signed, sub.env.sig]  # the known signature on other bytes
    with pytest.raises(ProtocolError, match="bad_signature"):
        wire.open_envelope(forged, Submit)
    assert verifier.calls == 2


def test_a_known_submit_is_not_accepted_where_another_type_is_expected() -> None:
    peers = Peers()
    sub = peers.submit(peers.ids[1], b"x")
    wire, _ = _wire(peers)
    wire.open(sub.frame())
    with pytest.raises(ProtocolError, match="wrong_type"):
        wire.open_envelope(sub.env.to_wire(), Commit)


def test_the_submit_memory_is_bounded() -> None:
    peers = Peers()
    wire, verifier = _wire(peers, Limits(opened_submits_max=3))
    subs = [peers.submit(peers.ids[1], f"p{i}".encode()) for i in range(5)]
    for s in subs:
        wire.open(s.frame())
    assert len(wire._submits) == 3
    wire.open_envelope(subs[0].env.to_wire(), Submit)  # forgotten: verified again
    assert verifier.calls == 6
    wire.open_envelope(subs[4].env.to_wire(), Submit)  # remembered
    assert verifier.calls == 6
    wire.open_envelope(subs[4].env.to_wire(), Submit)  # remembered for one reuse only
    assert verifier.calls == 7


def test_the_submit_memory_is_bounded_in_bytes() -> None:
    peers = Peers()
    sub = peers.submit(peers.ids[1], b"x" * 1000)
    wire, _ = _wire(peers, Limits(opened_submits_bytes_max=len(sub.env.signed) - 1))
    wire.open(sub.frame())
    assert not wire._submits


def test_a_primary_forgets_the_submits_it_ordered() -> None:
    """The memory holds SUBMITs until the PRE-PREPARE that brings them back;
    a primary never opens its own, so it forgets them when it proposes."""
    peers = Peers(4, batch_wait_ms=0)
    primary = peers.replica("n0")
    subs = [peers.submit(f"n{1 + i}") for i in range(3)]
    for sub in subs:
        peers.deliver(primary, sub)
    assert primary.stats["proposed"] >= 1
    assert not primary.wire._submits and primary.wire._submits_bytes == 0


def test_forgetting_keeps_submits_not_ordered_and_checks_the_bytes() -> None:
    peers = Peers()
    wire, _ = _wire(peers)
    a, b = (peers.submit(peers.ids[1], p) for p in (b"a", b"b"))
    wire.open(a.frame())
    wire.open(b.frame())
    forged = peers.submit(peers.ids[2], b"other")
    wire.forget_submits([a, forged])
    assert list(wire._submits) == [b.env.sig]
    assert wire._submits_bytes == len(b.env.signed)


def test_submits_opened_inside_a_batch_are_not_kept() -> None:
    """A catch-up reply or a view change carries batches whose SUBMITs will
    not come back; keeping them filled the memory for nothing."""
    peers = Peers()
    wire, verifier = _wire(peers)
    batch = _batch(peers)
    Batch.parse(batch.to_wire(), wire)
    assert verifier.calls == len(batch.subs)
    assert not wire._submits and wire._submits_bytes == 0


def test_a_backup_does_not_verify_its_own_submit_when_its_pre_prepare_brings_it() -> None:
    peers = Peers(4, batch_wait_ms=0)
    backup = peers.replica("n1")
    counting = CountingVerifier()
    backup.wire.verifier = counting
    key, _out = backup.submit([Request("client", "r-1", b"mine")], NOW)
    (own,) = backup.wire._submits.values()
    assert own.key == key
    peers.deliver_pre_prepare(backup, peers.batch(1, subs=(own,)))
    assert counting.calls == 1  # the PRE-PREPARE's signature only
    assert not backup.wire._submits
