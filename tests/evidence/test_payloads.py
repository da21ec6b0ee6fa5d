"""Attestation payloads: what attest_payload writes, what execution reads.

``parse_payload`` and ``index_block`` run at execution on every node over
payloads any court may have submitted, so a payload of the wrong shape must
be "not an attestation", never an exception: until session 6 one without a
``case_no`` raised KeyError in ``index_block`` and stopped every node at
that block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbftd import evidence
from pbftd.core import codec
from pbftd.core.chain import BlockHeader, Tx

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None)

# Text that passes evidence._text: no control characters, no ID-like digit runs.
texts = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="0123456789"),
                min_size=1, max_size=60).filter(lambda t: t.strip() == t and t)
titles = st.one_of(st.none(), texts, st.text("标题題", min_size=60, max_size=200))
payloads = st.builds(lambda sha, kind, case_no, title: evidence.attest_payload(
    sha.hex(), kind, case_no, title), st.binary(min_size=32, max_size=32),
    st.sampled_from(evidence.KINDS), texts, titles)


def _well_formed(body: Mapping[str, Any]) -> bool:
    keys = {"op", "kind", "sha256", "case_no"}
    return (body["op"] == "attest" and body.keys() in (keys, keys | {"title"})
            and type(body["sha256"]) is bytes and len(body["sha256"]) == 32
            and body["kind"] in evidence.KINDS
            and type(body["case_no"]) is str and 0 < len(body["case_no"]) <= 64
            and (type(body.get("title", "t")) is str and 0 < len(body.get("title", "t")) <= 200))


def _header(height: int = 7, time_ms: int = 1_700_000_000_000) -> BlockHeader:
    return BlockHeader("chain", height, b"p" * 32, time_ms, time_ms - 5, b"r" * 32, 1,
                       b"s" * 32, "spc", 0)


def _index(txs: list[Tx], header: BlockHeader) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    evidence.index_block(out.__setitem__, header, tuple(txs))
    return out


def _record_bytes(tx: Tx, header: BlockHeader) -> bytes:
    """Store format 2: the fields as a canonical CBOR array, the tx id only in the key."""
    body = evidence.parse_payload(tx.payload)
    assert body is not None
    return cbor2.dumps([body["kind"], tx.origin, body.get("title"), tx.client, header.height,
                        body["case_no"], header.time_ms, tx.rid], canonical=True)


def _format_1_record_bytes(tx: Tx, header: BlockHeader) -> bytes:
    """Store format 1: a canonical map of the fields and the tx id."""
    body = evidence.parse_payload(tx.payload)
    assert body is not None
    return cbor2.dumps({"tx_id": tx.tx_id, "height": header.height, "court": tx.origin,
                        "client": tx.client, "request_id": tx.rid, "kind": body["kind"],
                        "case_no": body["case_no"], "title": body.get("title"),
                        "time_ms": header.time_ms}, canonical=True)


@SETTINGS
@given(payloads)
def test_every_attest_payload_parses_back_to_its_body(payload: bytes) -> None:
    body = evidence.parse_payload(payload)
    assert body is not None and _well_formed(body)
    assert codec.encode(dict(body)) == payload


@SETTINGS
@given(payloads, st.data())
def test_a_mutated_payload_is_an_attestation_only_if_well_formed(payload: bytes,
                                                                 data: st.DataObject) -> None:
    """Flip, cut or insert bytes anywhere: non-canonical heads, wrong lengths,
    broken UTF-8, other kinds.  Never an exception; a body only if whole."""
    raw = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        how = data.draw(st.sampled_from(("flip", "cut", "insert", "byte")))
        if how == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "cut" and len(raw) > 1:
            del raw[at]
        elif how == "insert":
            raw.insert(at, data.draw(st.integers(0, 255)))
        else:
            raw[at] = data.draw(st.sampled_from((0x18, 0x38, 0x58, 0x78, 0x79, 0xA4, 0xA5,
                                                 0xF6, 0xFF, 0x80, 0xC0)))
    mutated = bytes(raw)
    body = evidence.parse_payload(mutated)
    assert body is None or (_well_formed(body) and codec.encode(dict(body)) == mutated)
    _index([Tx("spc", 1, "c", "r", mutated)], _header())  # never raises


@pytest.mark.parametrize("body", [
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment"},
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment", "case_no": 5},
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment", "case_no": ""},
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment", "case_no": "c" * 65},
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment", "case_no": "c", "extra": 1},
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment", "case_no": "c", "title": None},
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment", "case_no": "c", "title": [1]},
    {"op": "attest", "sha256": b"x" * 32, "kind": "judgment", "case_no": "c", "title": ""},
    {"op": "attest", "sha256": b"x" * 31, "kind": "judgment", "case_no": "c"},
    {"op": "attest", "sha256": "x" * 32, "kind": "judgment", "case_no": "c"},
    {"op": "attest", "sha256": b"x" * 32, "kind": "verdict", "case_no": "c"},
    {"op": "attest", "sha256": b"x" * 32, "kind": ["judgment"], "case_no": "c"},
    {"op": "attest", "sha256": b"x" * 32, "kind": {"judgment": 1}, "case_no": "c"},
    ["attest", b"x" * 32],
])
def test_a_payload_of_another_shape_is_not_an_attestation_and_indexes_nothing(
        body: Any) -> None:
    """Payloads a court may submit that attest_payload would never make."""
    payload = codec.encode(body)
    assert evidence.parse_payload(payload) is None
    assert _index([Tx("spc", 1, "c", "r", payload)], _header()) == {}


# Any value canonical CBOR may carry here: a court can put it in any field.
cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(codec.INT_MIN, codec.INT_MAX)
    | st.text(max_size=8) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)

attest_shaped = st.fixed_dictionaries(
    {"op": st.one_of(st.just("attest"), cbor_values),
     "kind": st.one_of(st.sampled_from(evidence.KINDS), cbor_values),
     "sha256": st.one_of(st.binary(min_size=32, max_size=32), cbor_values),
     "case_no": st.one_of(texts, cbor_values)},
    optional={"title": st.one_of(texts, cbor_values)})


@SETTINGS
@given(attest_shaped)
def test_an_attest_shaped_map_with_any_values_never_raises(body: dict[str, Any]) -> None:
    """Every field of every shape, hashable or not (a list as ``kind``
    raised TypeError in every node's execution until session 16)."""
    payload = codec.encode(body)
    parsed = evidence.parse_payload(payload)
    assert parsed is None or (_well_formed(parsed) and dict(parsed) == body)
    assert (parsed is not None) == _well_formed(body)
    _index([Tx("spc", 1, "c", "r", payload)], _header())  # never raises


def _parse_by_decode(payload: bytes) -> dict[str, Any] | None:
    """parse_payload's answer as it was before session 16: codec.decode's
    generic walk and re-encode, then the shape."""
    try:
        body = codec.decode(payload, size_max=evidence.PAYLOAD_BYTES_MAX)
    except codec.DecodeError:
        return None
    keys = {"op", "kind", "sha256", "case_no"}
    if type(body) is not dict or body.keys() not in (keys, keys | {"title"}):
        return None
    return body if _well_formed(body) else None


@st.composite
def spellings(draw: st.DrawFn) -> bytes:
    """Payload bytes of every kind parse_payload meets: canonical ones, the
    same maps with their keys in another order or with an extra or repeated
    key, with trailing bytes or an indefinite-length head, and byte edits."""
    body = draw(st.one_of(attest_shaped, payloads.map(cbor2.loads)))
    how = draw(st.sampled_from(("canonical", "reordered", "extra", "repeated", "trailing",
                                "indefinite", "edited")))
    if how == "reordered":
        keys = draw(st.permutations(list(body)))
        return cbor2.dumps({k: body[k] for k in keys})
    if how == "extra":
        return cbor2.dumps({**body, draw(st.text(max_size=8)): draw(cbor_values)},
                           canonical=True)
    canonical = cbor2.dumps(body, canonical=True)
    if how == "repeated":  # the first key once more, its value first: cbor2 keeps the last
        head, rest = canonical[0], canonical[1:]
        first = cbor2.dumps(next(iter(body)))
        return bytes([head + 1]) + first + cbor2.dumps(draw(cbor_values)) + rest
    if how == "trailing":
        return canonical + draw(st.binary(min_size=1, max_size=3))
    if how == "indefinite":
        return b"\xbf" + canonical[1:] + b"\xff"
    if how == "edited":
        raw = bytearray(canonical)
        at = draw(st.integers(0, len(raw) - 1))
        raw[at] = draw(st.integers(0, 255))
        return bytes(raw)
    return canonical


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(spellings())
def test_parse_payload_answers_as_codec_decode_and_the_shape_rules_do(payload: bytes) -> None:
    """Session 16 checks the fixed shape itself instead of codec.decode's
    walk (a third of a parse); the answers must be the same for every
    spelling, canonical or not."""
    parsed = evidence.parse_payload(payload)
    assert (None if parsed is None else dict(parsed)) == _parse_by_decode(payload)


@pytest.mark.parametrize(("chars", "attests"), [(5000, False), (64, True)])
def test_a_payload_over_4096_bytes_or_a_long_case_number_is_not_an_attestation(
        chars: int, attests: bool) -> None:
    body = {"op": "attest", "kind": "judgment", "sha256": b"x" * 32, "case_no": "a" * chars}
    assert evidence.parse_payload(codec.encode(body)) == (body if attests else None)


@SETTINGS
@given(st.lists(st.tuples(payloads, texts, texts), min_size=1, max_size=8),
       st.integers(1, 2**40), st.integers(0, codec.INT_MAX))
def test_index_records_are_the_canonical_record_arrays(items: list[tuple[bytes, str, str]],
                                                     height: int, time_ms: int) -> None:
    txs = [Tx(f"court-{i}", i + 1, client, rid, payload)
           for i, (payload, client, rid) in enumerate(items)]
    header = _header(height, time_ms)
    expected = {evidence.INDEX_PREFIX + evidence.parse_payload(tx.payload)["sha256"]  # type: ignore[index]
                + tx.tx_id: _record_bytes(tx, header) for tx in txs}
    assert _index(txs, header) == expected


def test_records_for_reads_what_index_block_wrote() -> None:
    sha = bytes(range(32))
    payload = evidence.attest_payload(sha.hex(), "ruling", "(2024)京01民终1号", "判决书")
    txs = [Tx("spc", 1, "clerk", "r1", payload), Tx("bj-high", 2, "clerk", "r2", payload),
           Tx("spc", 3, "clerk", "r3", evidence.attest_payload("00" * 32, "other", "x", None)),
           Tx("spc", 4, "clerk", "r4", b"\xa1\x62op\x68workflow")]
    stored = _index(txs, _header(9))
    assert len(stored) == 3

    def iter_state(prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in stored.items() if k.startswith(prefix))

    records = evidence.records_for(iter_state, sha)
    assert records == sorted(
        ({"kind": "ruling", "court": tx.origin, "title": "判决书", "tx_id": tx.tx_id.hex(),
          "client": "clerk", "height": 9, "case_no": "(2024)京01民终1号",
          "time_ms": _header(9).time_ms, "request_id": tx.rid} for tx in txs[:2]),
        key=lambda r: r["tx_id"])
    fields = evidence.RECORD_FIELDS
    assert [list(r) for r in records] == [[*fields[:3], "tx_id", *fields[3:]]] * 2


def test_records_for_reads_format_1_records_as_format_2_ones() -> None:
    """A store upgraded from format 1 holds both shapes; callers see one."""
    sha = bytes(range(32))
    payload = evidence.attest_payload(sha.hex(), "judgment", "(2023)吉01执5号", None)
    old, new = Tx("spc", 1, "clerk", "r1", payload), Tx("jl-high", 2, "clerk", "r2", payload)
    stored = {evidence.index_key(sha, old.tx_id): _format_1_record_bytes(old, _header(4)),
              **_index([new], _header(5))}

    def iter_state(prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in stored.items() if k.startswith(prefix))

    old_rec, new_rec = evidence.records_for(iter_state, sha)
    assert (old_rec["height"], old_rec["court"], old_rec["tx_id"]) == (4, "spc", old.tx_id.hex())
    assert (new_rec["height"], new_rec["court"], new_rec["tx_id"]) == (5, "jl-high",
                                                                        new.tx_id.hex())
    assert {k: v for k, v in old_rec.items() if k not in ("height", "court", "tx_id",
                                                          "request_id", "time_ms")} == \
        {k: v for k, v in new_rec.items() if k not in ("height", "court", "tx_id",
                                                       "request_id", "time_ms")}


def test_a_damaged_index_record_is_an_error_not_a_wrong_answer() -> None:
    key = evidence.index_key(bytes(32), bytes(range(32)))
    with pytest.raises(ValueError, match="damaged"):
        evidence.decode_record(key, cbor2.dumps(["judgment", "spc"]))


@SETTINGS
@given(st.binary(min_size=32, max_size=32), st.sampled_from(evidence.KINDS), texts, titles)
def test_attest_payload_is_the_canonical_map(sha: bytes, kind: str, case_no: str,
                                             title: str | None) -> None:
    """The stored bytes must stay cbor2's canonical map (chains already hold them)."""
    body: dict[str, Any] = {"op": "attest", "sha256": sha, "kind": kind, "case_no": case_no}
    if title is not None:
        body["title"] = title
    assert evidence.attest_payload(sha.hex(), kind, case_no, title) == cbor2.dumps(
        body, canonical=True)


def test_the_control_regex_is_exactly_unicode_cc_and_cs() -> None:
    import unicodedata

    by_regex = {cp for cp in range(0x110000) if evidence.CONTROL.match(chr(cp))}
    by_category = {cp for cp in range(0x110000)
                   if unicodedata.category(chr(cp)) in ("Cc", "Cs")}
    assert by_regex == by_category


@pytest.mark.parametrize(("field", "value"), [
    ("kind", "verdict"), ("kind", ["judgment"]), ("sha256", "ab" * 31),
    ("case_no", "a\x85b"), ("case_no", "a\ud800"), ("case_no", " "), ("title", "x" * 201),
    ("case_no", "11010519491231002X"), ("title", "call 13912345678"),
])
def test_attest_payload_still_refuses_bad_fields(field: str, value: Any) -> None:
    args: dict[str, Any] = {"sha256_hex": "ab" * 32, "kind": "judgment", "case_no": "c",
                            "title": None}
    args["sha256_hex" if field == "sha256" else field] = value
    with pytest.raises(evidence.EvidenceError):
        evidence.attest_payload(**args)


def test_a_parsed_attestation_is_shared_and_read_only() -> None:
    """Answers are remembered across callers (the engine, the index, events):
    one caller changing its copy would change what the next one sees."""
    payload = evidence.attest_payload("ab" * 32, "ruling", "c", None)
    body = evidence.parse_payload(payload)
    assert body is evidence.parse_payload(payload)
    with pytest.raises(TypeError):
        body["kind"] = "judgment"  # type: ignore[index]


def test_a_block_larger_than_the_default_cache_is_parsed_once_per_attestation() -> None:
    """Execution asks twice per transaction in block order; with the cache
    smaller than the block, least-recently-used eviction made every second
    ask a miss (session 9 saw blocks of 3,000 run slower for it)."""
    size = evidence.PARSED_MIN + 500
    block = [evidence.attest_payload(f"{i:064x}", "judgment", f"(2024)京01民终{i}号", None)
             for i in range(size)]
    evidence.remember_parsed(size)
    try:
        for _ask in range(2):
            for payload in block:
                assert evidence.parse_payload(payload) is not None
        assert evidence._parse_cached.cache_info().misses == size
    finally:
        evidence.remember_parsed(evidence.PARSED_MIN)
