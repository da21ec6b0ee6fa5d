"""Hostile bytes at the one boundary: codec.decode and Wire.open.

ByzzFuzz style: start from valid frames of every message type and apply one
small, near-valid mutation.  When the mutation is inside the signed part the
frame is re-signed with the sender's real key, so only the canonical-encoding
and field checks stand between it and the replica.  Every mutated frame must
make ``Wire.open`` raise ``ProtocolError`` (never another exception), and the
replica must answer it with nothing but a Note and a ``rejected_`` count.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbftd.core import codec
from pbftd.core.actions import Note
from pbftd.core.messages import DOMAIN, Batch, CommittedBlock, ProtocolError
from tests.core.harness import NOW, Peers, rejected

SETTINGS = settings(max_examples=250, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
SIZE_MAX = 1 << 20


# --------------------------------------------------------------------------
# codec units


def _refused(data: bytes) -> str:
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(data, size_max=SIZE_MAX)
    return str(info.value)


def test_codec_round_trips_allowed_values():
    value = {"a": [1, -1, 0, codec.INT_MAX, codec.INT_MIN, b"", b"\x00" * 40, "é", True,
                   False, None, [], {}], "bb": {"c": [[[]]]}}
    assert codec.decode(codec.encode(value), size_max=SIZE_MAX) == value


def test_codec_refuses_trailing_bytes():
    assert "trailing" in _refused(codec.encode([1, 2]) + b"\x00")


def test_codec_refuses_duplicate_map_keys():
    _refused(bytes.fromhex("a2 61 76 00 61 76 01".replace(" ", "")))
    _refused(bytes.fromhex("a2 61 76 00 61 76 00".replace(" ", "")))


def test_codec_refuses_unsorted_map_keys():
    _refused(b"\xa2" + cbor2.dumps("b") + b"\x00" + cbor2.dumps("a") + b"\x00")
    _refused(b"\xa2" + cbor2.dumps("bb") + b"\x00" + cbor2.dumps("a") + b"\x00")


_KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(codec.INT_MIN, codec.INT_MAX) | st.binary(max_size=4)
    | _KEYS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12)


def _shuffled(value: Any, rng: Any) -> Any:
    """``value`` with every map's keys in a random insertion order."""
    if type(value) is list:
        return [_shuffled(item, rng) for item in value]
    if type(value) is dict:
        keys = list(value)
        rng.shuffle(keys)
        return {key: _shuffled(value[key], rng) for key in keys}
    return value


@SETTINGS
@given(_VALUES, st.randoms(use_true_random=False))
def test_codec_takes_exactly_the_canonical_spelling_whatever_the_key_order(value, rng):
    """``decode`` checks key order itself and re-encodes with cbor2's plain
    encoder; this holds it to cbor2's canonical one: a spelling of a value
    with its keys in any order is accepted exactly when it is canonical."""
    data = cbor2.dumps(_shuffled(value, rng))
    if data == cbor2.dumps(value, canonical=True):
        assert codec.decode(data, size_max=SIZE_MAX) == value
    else:
        assert "canonical" in _refused(data)


@pytest.mark.parametrize("opener", [b"\x81", b"\x9f", b"\xa1\x61k"])
def test_codec_survives_100000_nested_containers(opener):
    data = opener * 100_000 + b"\x00"
    _refused(data)  # a DecodeError, not a RecursionError or a crash


def test_codec_refuses_nesting_beyond_its_depth_limit_even_when_cbor2_accepts_it():
    deep: Any = 0
    for _ in range(codec.DEPTH_MAX + 1):
        deep = [deep]
    assert "deep" in _refused(cbor2.dumps(deep, canonical=True))
    with pytest.raises(ValueError):
        codec.encode(deep)


@pytest.mark.parametrize("data", [
    cbor2.dumps(cbor2.CBORTag(1, 1_700_000_000)),       # epoch datetime
    cbor2.dumps(cbor2.CBORTag(0, "2020-01-01T00:00:00Z")),
    cbor2.dumps(cbor2.CBORTag(2, b"\x01" * 9)),        # bignum out of range
    cbor2.dumps(cbor2.CBORTag(2, b"\x01")),            # bignum in range: not canonical
    cbor2.dumps(cbor2.CBORTag(3, b"\x01")),
    cbor2.dumps(cbor2.CBORTag(4, [-1, 5])),            # decimal
    cbor2.dumps(cbor2.CBORTag(30, [1, 0])),            # rational with zero denominator
    cbor2.dumps(cbor2.CBORTag(35, "(")),               # invalid regex
    cbor2.dumps(cbor2.CBORTag(37, b"short")),          # bad uuid
    cbor2.dumps(cbor2.CBORTag(258, [1, 2])),           # set
    cbor2.dumps(cbor2.CBORTag(260, b"abc")),           # bad ip address
    cbor2.dumps(cbor2.CBORTag(55799, 1)),              # self-describe wrapper
    cbor2.dumps(cbor2.CBORTag(24, cbor2.dumps(1))),    # embedded cbor
    cbor2.dumps(cbor2.CBORTag(9999, 1)),               # unknown tag
    b"\xd8\x1c\x81\xd8\x1d\x00",                       # shareable cycle: [<itself>]
    b"\x82\xd8\x1c\x81\x00\xd8\x1d\x00",               # shared reference
    b"\xd8\x1d\x05",                                   # dangling reference
    b"\xdb\xff\xff\xff\xff\xff\xff\xff\xff\x00",       # tag 2^64-1
])
def test_codec_refuses_every_tag(data):
    _refused(data)


def _shared_tree(width: int, depth: int) -> bytes:
    """``[l0, l1, ..., l_depth]`` where l0 = [0] and each l_i is a list of
    ``width`` references to l_(i-1), through CBOR value sharing (tag 28
    marks a value shareable, tag 29 refers to one): about 3 * width * depth
    bytes that cbor2 decodes into a value of width ** depth nodes."""
    items = [b"\xd8\x1c\x81\x00"]
    for i in range(1, depth + 1):
        items.append(b"\xd8\x1c" + cbor2.dumps([0] * width)[:-width]
                     + (b"\xd8\x1d" + cbor2.dumps(i - 1)) * width)
    return cbor2.dumps([0] * len(items))[:-len(items)] + b"".join(items)


def _shared_bytes(size: int, count: int) -> bytes:
    """One byte string of ``size`` and ``count`` value-sharing references to it."""
    return (cbor2.dumps([0] * (count + 1))[:-(count + 1)]
            + b"\xd8\x1c" + cbor2.dumps(b"x" * size) + b"\xd8\x1d\x00" * count)


def _string_refs(size: int, count: int) -> bytes:
    """The same through string references (namespace tag 256, reference tag 25)."""
    return (b"\xd9\x01\x00" + cbor2.dumps([0] * (count + 1))[:-(count + 1)]
            + cbor2.dumps(b"x" * size) + b"\xd8\x19\x00" * count)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("data", [
    _shared_tree(16, 8),            # 400 bytes, 16**8 = 4.3e9 nodes
    _shared_tree(2, 14),
    _shared_bytes(10_000, 20_000),  # 60 KB that re-encode to 200 MB
    _string_refs(10_000, 20_000),
    _string_refs(40, 3),
], ids=["tree-16^8", "tree-2^14", "shared-bytes", "string-refs", "string-refs-small"])
def test_codec_refuses_aliased_values_before_walking_or_re_encoding_them(data):
    """Regression: cbor2 decodes value-sharing (28/29) and string-reference
    (256/25) tags into one object referenced many times.  ``decode`` walked
    every reference (``_check``) and re-encoded every one in full before it
    could see that the spelling was not canonical: a 400-byte frame from
    any linked peer, before any signature is checked, kept the consensus
    task busy for hours, and 60 KB re-encoded to 200 MB.  The tags must be
    refused as the bytes are read."""
    assert "sharing" in _refused(data)


@pytest.mark.parametrize("data", [
    b"\xf9\x3c\x00",                       # half float 1.0
    b"\xfa\x3f\x80\x00\x00",               # single float 1.0
    b"\xfb" + struct.pack(">d", 1.0),      # double float 1.0
    b"\xf9\x7e\x00",                       # NaN
    b"\xf7",                               # undefined
    b"\xf0",                               # simple(16)
    b"\xf8\xff",                           # simple(255)
    b"\xff",                               # lone break
    b"\x1c",                               # reserved additional info
])
def test_codec_refuses_floats_undefined_and_simple_values(data):
    _refused(data)


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63) - 1, -(2**64)])
def test_codec_refuses_ints_outside_signed_64_bits(value):
    _refused(cbor2.dumps(value))
    with pytest.raises(ValueError):
        codec.encode(value)


@pytest.mark.parametrize("data", [
    b"\x18\x05",                           # 5 in two bytes
    b"\x19\x00\x05",
    b"\x1b\x00\x00\x00\x00\x00\x00\x00\x05",
    b"\x38\x00",                           # -1 in two bytes
    b"\x58\x01a",                          # one-byte bytes with a length byte
    b"\x9f\x01\xff",                       # indefinite array
    b"\xbf\x61a\x01\xff",                  # indefinite map
    b"\x5f\x41a\xff",                      # indefinite bytes
    b"\x7f\x61a\xff",                      # indefinite text
])
def test_codec_refuses_non_canonical_spellings(data):
    _refused(data)


@pytest.mark.parametrize("data", [
    b"", b"\x81", b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff",
    b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff", b"\x62\xc3\x28", b"\xa1\x81\x00\x00",
    b"\xa1\xa0\x00", b"\xa1\x01\x00",
])
def test_codec_refuses_truncated_huge_and_ill_typed_input(data):
    _refused(data)


def test_codec_refuses_oversized_and_non_bytes_input():
    with pytest.raises(codec.DecodeError, match="exceeds"):
        codec.decode(codec.encode(b"x" * 100), size_max=50)
    with pytest.raises(codec.DecodeError):
        codec.decode(bytearray(b"\x01"), size_max=10)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1.0, {1, 2}, object(), b"x".decode, frozenset()])
def test_codec_encode_refuses_types_outside_the_protocol(value):
    with pytest.raises(ValueError):
        codec.encode(value)


@pytest.mark.parametrize("value", [{1: 2}, {b"k": 1}, {None: 1}])
def test_codec_encode_refuses_map_keys_that_decode_refuses(value):
    with pytest.raises(ValueError):
        codec.encode(value)


_scalars = (st.integers(codec.INT_MIN, codec.INT_MAX) | st.binary(max_size=40)
            | st.text(max_size=20) | st.booleans() | st.none())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                       max_leaves=20)


@SETTINGS
@given(_values)
def test_codec_round_trip_is_exact_for_every_protocol_value(value):
    data = codec.encode(value)
    assert codec.decode(data, size_max=SIZE_MAX) == value
    assert codec.encode(codec.decode(data, size_max=SIZE_MAX)) == data


@SETTINGS
@given(st.binary(max_size=64))
def test_codec_raises_only_decode_error_on_random_bytes(data):
    try:
        value = codec.decode(data, size_max=SIZE_MAX)
    except codec.DecodeError:
        return
    assert codec.encode(value) == data


# --------------------------------------------------------------------------
# valid frames of every message type, and their mutations

RECEIVER = "n3"


@cache
def _world() -> tuple[Peers, dict[str, tuple[str, bytes]]]:
    """Peers and one valid frame of every type, each with the link it comes on."""
    p = Peers(4)
    b1, b5 = p.batch(1), p.batch(5)
    h4 = b"\x44" * 32
    proof = p.checkpoint_proof(4, h4, ["n0", "n1", "n2"])
    cert1 = p.prepared_cert(b1)
    vcs = [p.view_change("n0", 1, prepared=[cert1]), p.view_change("n1", 1),
           p.view_change("n2", 1)]
    frames = {
        "submit": ("n1", p.submit("n1", b"payload").frame()),
        "pre-prepare": ("n0", p.pre_prepare(b1).frame(b1.to_wire())),
        "prepare": ("n1", p.prepare("n1", 0, 1, p.digest(b1)).frame()),
        "commit": ("n1", p.commit("n1", 0, 1, p.digest(b1)).frame()),
        "checkpoint": ("n1", p.checkpoint("n1", 4, h4).frame()),
        "view-change": ("n1", p.view_change("n1", 1, 4, proof,
                                            [p.prepared_cert(b5)]).frame()),
        "new-view": ("n1", p.new_view(1, vcs, [b1]).frame()),
        "status": ("n1", p.status("n1", 0, True, 3, 0).frame()),
        "fetch": ("n1", p.fetch("n1", 1, 4).frame()),
        "blocks": ("n1", p.blocks("n1", (), [CommittedBlock(b1, p.commit_cert(b1))]).frame()),
    }
    return p, frames


TYPES = sorted(_world()[1])


def _fresh():
    peers, _frames = _world()
    return peers.replica(RECEIVER)


@pytest.mark.parametrize("kind", TYPES)
def test_every_valid_frame_is_accepted(kind):
    _p, frames = _world()
    via, frame = frames[kind]
    replica = _fresh()
    msg, _extra = replica.wire.open(frame)
    assert kind == msg.TYPE
    replica.on_message(via, frame, NOW)
    assert rejected(replica) == 0, dict(replica.stats)


def _split(frame: bytes) -> tuple[list[Any], Any]:
    signed, _sig, extra = cbor2.loads(frame)
    return cbor2.loads(signed), extra


def _enc_map(entries: list[tuple[bytes, bytes]], *, indefinite: bool = False) -> bytes:
    """A CBOR map from already-encoded (key, value) pairs, in the given order."""
    if indefinite:
        return b"\xbf" + b"".join(k + v for k, v in entries) + b"\xff"
    n = len(entries)
    head = bytes([0xa0 + n]) if n < 24 else bytes([0xb8, n])
    return head + b"".join(k + v for k, v in entries)


def _canonical_entries(body: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    entries = [(cbor2.dumps(k), cbor2.dumps(v, canonical=True)) for k, v in body.items()]
    entries.sort(key=lambda kv: (len(kv[0]), kv[0]))
    assert _enc_map(entries) == cbor2.dumps(body, canonical=True)  # our splice is exact
    return entries


def _resign(p: Peers, head: list[Any], body_bytes: bytes | None, extra: Any,
            signer: str) -> bytes:
    """Re-sign a head whose body is ``body_bytes`` (raw) or head[4] (canonical)
    with ``signer``'s real key: only field and encoding checks can refuse it."""
    if body_bytes is None:
        signed = cbor2.dumps(head, canonical=True)
    else:
        signed = b"\x85" + b"".join(cbor2.dumps(x) for x in head[:4]) + body_bytes
    sig = p.signers[signer].sign(signed)
    return cbor2.dumps([signed, sig, extra], canonical=True)


BAD_VALUES: list[Any] = [True, False, 1.5, 2**64 - 1, -1, codec.INT_MAX + 1, b"\x00" * 70_000,
                         "x", None, [1], {"a": 1}, b"\x00" * 31, codec.INT_MIN]


def _bad_for(field: str, value: Any) -> bool:
    """Whether ``value`` in ``field`` must be refused (a few happen to be valid)."""
    if field == "active":
        return type(value) is not bool
    return not (field in ("ckpt", "prepared", "vcs", "pps") and value == [])


RAW_BODY_MUTATIONS = ["duplicate_key", "indefinite_map", "unsorted", "tag_on_body",
                      "tag_on_field", "long_int", "float_field", "undefined_field",
                      "indefinite_field", "extra_key", "missing_key", "shared_ref"]


def _raw_body(body: dict[str, Any], how: str, pick: int) -> bytes:
    entries = _canonical_entries(body)
    i = pick % len(entries)
    key, val = entries[i]
    if how == "duplicate_key":
        return _enc_map([*entries, (key, val)])
    if how == "indefinite_map":
        return _enc_map(entries, indefinite=True)
    if how == "unsorted":
        if len(entries) < 2:
            return _enc_map(entries, indefinite=True)
        return _enc_map(entries[::-1])
    if how == "tag_on_body":
        return bytes([0xc1]) + _enc_map(entries)              # tag 1 (datetime)
    if how == "extra_key":
        return _enc_map([*entries, (cbor2.dumps("zz"), b"\x00")])
    if how == "missing_key":
        return _enc_map(entries[:i] + entries[i + 1:])
    if how == "tag_on_field":
        new = b"\xd9\xd9\xf7" + val                            # tag 55799 self-describe
    elif how == "long_int":
        value = body[cbor2.loads(key)]
        new = (b"\x1b" + value.to_bytes(8, "big") if type(value) is int and value >= 0
               else b"\xfb" + struct.pack(">d", 0.0))
    elif how == "float_field":
        new = b"\xf9\x3c\x00"                                  # half-precision 1.0
    elif how == "undefined_field":
        new = b"\xf7"
    elif how == "indefinite_field":
        value = body[cbor2.loads(key)]
        new = (b"\x9f" + b"".join(cbor2.dumps(x, canonical=True) for x in value) + b"\xff"
               if type(value) is list else b"\x5f" + cbor2.dumps(b"") + b"\xff")
    else:  # shared_ref: the field value wrapped as a shareable (tag 28)
        new = b"\xd8\x1c" + val
    return _enc_map([*entries[:i], (key, new), *entries[i + 1:]])


HEAD_MUTATIONS = ["domain", "chain", "type_unknown", "type_int", "sender_other_member",
                  "sender_non_member", "head_short", "head_long", "body_list"]


def _mutate_head(head: list[Any], how: str) -> list[Any]:
    head = list(head)
    if how == "domain":
        head[0] = "pbftd/0"
    elif how == "chain":
        head[1] = "another-chain"
    elif how == "type_unknown":
        head[2] = "reply"
    elif how == "type_int":
        head[2] = 3
    elif how == "sender_other_member":
        head[3] = "n2" if head[3] != "n2" else "n1"           # signed by the real sender
    elif how == "sender_non_member":
        head[3] = "mallory"
    elif how == "head_short":
        head = head[:4]
    elif how == "head_long":
        head = [*head, 0]
    else:
        head[4] = list(head[4].values())
    return head


ENVELOPE_MUTATIONS = ["sig_short", "sig_long", "sig_zero", "signed_not_bytes",
                      "frame_short", "frame_long", "frame_map", "extra_on_plain_type",
                      "frame_tagged"]


def _mutate_envelope(frame: bytes, how: str, kind: str) -> bytes | None:
    signed, sig, extra = cbor2.loads(frame)
    if how == "sig_short":
        return cbor2.dumps([signed, sig[:-1], extra], canonical=True)
    if how == "sig_long":
        return cbor2.dumps([signed, sig + b"\x00", extra], canonical=True)
    if how == "sig_zero":
        return cbor2.dumps([signed, bytes(64), extra], canonical=True)
    if how == "signed_not_bytes":
        return cbor2.dumps([cbor2.loads(signed), sig, extra], canonical=True)
    if how == "frame_short":
        return cbor2.dumps([signed, sig], canonical=True)
    if how == "frame_long":
        return cbor2.dumps([signed, sig, extra, None], canonical=True)
    if how == "frame_map":
        return cbor2.dumps({"s": signed, "g": sig, "x": extra}, canonical=True)
    if how == "extra_on_plain_type":
        if kind in ("pre-prepare", "blocks"):
            return None  # their extra is checked by the replica: see below
        return cbor2.dumps([signed, sig, [1]], canonical=True)
    return b"\xc1" + frame  # tag 1 around the frame


mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10**9)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("field"), st.tuples(st.integers(0, 10), st.sampled_from(range(len(
        BAD_VALUES))))),
    st.tuples(st.just("raw_body"), st.tuples(st.sampled_from(RAW_BODY_MUTATIONS),
                                             st.integers(0, 10))),
    st.tuples(st.just("head"), st.sampled_from(HEAD_MUTATIONS)),
    st.tuples(st.just("envelope"), st.sampled_from(ENVELOPE_MUTATIONS)),
)


def _apply(kind: str, mutation: tuple[str, Any]) -> bytes | None:
    """The mutated frame, or None when the mutation does not apply."""
    p, frames = _world()
    _via, frame = frames[kind]
    how, arg = mutation
    if how == "truncate":
        return frame[: arg % len(frame)]
    if how == "append":
        return frame + arg
    if how == "envelope":
        return _mutate_envelope(frame, arg, kind)
    head, extra = _split(frame)
    signer = head[3]
    if how == "head":
        return _resign(p, _mutate_head(head, arg), None, extra, signer)
    body = head[4]
    if how == "field":
        pick, bad = arg
        field = sorted(body)[pick % len(body)]
        value = BAD_VALUES[bad]
        if not _bad_for(field, value):
            return None
        if type(value) is float or (type(value) is int and not (
                codec.INT_MIN <= value <= codec.INT_MAX)):
            entries = _canonical_entries(body)
            key = cbor2.dumps(field)
            entries = [(k, cbor2.dumps(value) if k == key else v) for k, v in entries]
            return _resign(p, head, _enc_map(entries), extra, signer)
        head[4] = {**body, field: value}
        return _resign(p, head, None, extra, signer)
    how_raw, pick = arg
    return _resign(p, head, _raw_body(body, how_raw, pick), extra, signer)


@SETTINGS
@given(kind=st.sampled_from(TYPES), mutation=mutations)
def test_mutated_frame_is_refused_by_wire_and_replica(kind, mutation):
    frame = _apply(kind, mutation)
    if frame is None:
        return
    _p, frames = _world()
    via = frames[kind][0]
    replica = _fresh()
    with pytest.raises(ProtocolError):
        replica.wire.open(frame)
    out = replica.on_message(via, frame, NOW)
    assert all(isinstance(a, Note) for a in out), out
    assert rejected(replica) == 1, dict(replica.stats)
    assert replica.log == {} and replica.peer_status == {} and replica.vc_latest == {}


@SETTINGS
@given(kind=st.sampled_from(TYPES), data=st.data())
def test_flipped_bit_anywhere_never_gets_past_the_replica(kind, data):
    _p, frames = _world()
    via, frame = frames[kind]
    i = data.draw(st.integers(0, len(frame) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    mutated = frame[:i] + bytes([frame[i] ^ (1 << bit)]) + frame[i + 1:]
    replica = _fresh()
    try:
        replica.wire.open(mutated)
        opened = True
    except ProtocolError:
        opened = False
    out = replica.on_message(via, mutated, NOW)
    assert all(isinstance(a, Note) for a in out), out
    if not opened:
        assert rejected(replica) == 1
    else:
        # only the unsigned extra can have changed: a PRE-PREPARE's batch is bound
        # by its digest, BLOCKS by commit certificates
        assert kind in ("pre-prepare", "blocks"), kind
    assert replica.log == {} or all(e.pp is None for e in replica.log.values())
    assert replica.next_exec == 1 and replica.stable_seq == 0


BATCH_FIELDS = ["n", "v", "p", "t", "subs"]


@SETTINGS
@given(kind=st.sampled_from(["pre-prepare", "blocks"]), field=st.sampled_from(BATCH_FIELDS),
       bad=st.sampled_from(range(len(BAD_VALUES))))
def test_mutated_batch_in_unsigned_extra_is_refused_by_the_replica(kind, field, bad):
    """The extra is not signed: Wire.open passes it, the replica must not."""
    _p, frames = _world()
    via, frame = frames[kind]
    signed, sig, extra = cbor2.loads(frame)
    value = BAD_VALUES[bad]
    if type(value) is float or (type(value) is int and not
                                codec.INT_MIN <= value <= codec.INT_MAX):
        value = -1  # the outer frame must stay decodable: the codec would refuse these
    if kind == "pre-prepare":
        extra = {**extra, field: value}
    else:
        extra = [[{**extra[0][0], field: value}, extra[0][1]]]
    mutated = cbor2.dumps([signed, sig, extra], canonical=True)
    replica = _fresh()
    replica.wire.open(mutated)
    out = replica.on_message(via, mutated, NOW)
    assert all(isinstance(a, Note) for a in out), out
    assert rejected(replica) == 1, (field, value, dict(replica.stats))


@pytest.mark.parametrize("kind", ["pre-prepare", "blocks"])
@pytest.mark.parametrize("extra", [7, "x", {}, [1], [[1, 2]], None, b"\x00"])
def test_malformed_extra_is_refused_by_the_replica(kind, extra):
    if kind == "pre-prepare" and extra == [1]:
        extra = [[1]]
    _p, frames = _world()
    via, frame = frames[kind]
    signed, sig, _extra = cbor2.loads(frame)
    mutated = cbor2.dumps([signed, sig, extra], canonical=True)
    replica = _fresh()
    out = replica.on_message(via, mutated, NOW)
    assert all(isinstance(a, Note) for a in out), out
    assert rejected(replica) == 1, dict(replica.stats)


def test_batch_parse_refuses_repeated_submission_and_unknown_proposer():
    p, _frames = _world()
    replica = _fresh()
    sub = p.submit("n1")
    batch = Batch(1, 0, "n0", NOW + 1, (sub, sub))
    with pytest.raises(ProtocolError):
        Batch.parse(batch.to_wire(), replica.wire)
    with pytest.raises(ProtocolError):
        Batch.parse({**Batch(1, 0, "n0", NOW, (sub,)).to_wire(), "p": "mallory"}, replica.wire)


def test_status_active_must_be_a_bool():
    p, frames = _world()
    head, extra = _split(frames["status"][1])
    head[4] = {**head[4], "active": 1}
    with pytest.raises(ProtocolError):
        _fresh().wire.open(_resign(p, head, None, extra, "n1"))


def test_domain_is_the_protocol_tag():
    p, frames = _world()
    head, _extra = _split(frames["prepare"][1])
    assert head[0] == DOMAIN and head[1] == p.chain


@pytest.mark.parametrize("field", [2, 3], ids=["type", "sender"])
def test_a_refusal_quotes_at_most_80_characters_of_a_hostile_text(field):
    """A peer chooses the type and sender texts (up to the frame size); the
    refusal's detail ends up in the node's log, so it quotes a bounded part."""
    p, frames = _world()
    head, extra = _split(frames["prepare"][1])
    head[field] = "x" * 100_000
    with pytest.raises(ProtocolError) as caught:
        _fresh().wire.open(_resign(p, head, None, extra, "n1"))
    assert len(str(caught.value)) < 200
