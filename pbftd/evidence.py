"""Document attestation (存证) and verification (核验): the first application.

Only a document's SHA-256 goes on chain, with its kind, case number and an
optional title; the attesting court is the node's own court, the client is
the bearer token's name.  Fields are checked at the RPC edge: the case
number is NFC-normalised and bounded but never parsed for meaning, and no
field may carry what looks like a resident identity number or a mobile phone
number (SPC opinion, principle 4: personal data never goes on chain in the
clear).  Execution indexes each attestation by its hash so ``evidence.verify``
is one prefix scan.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .core import codec
from .core.chain import BlockHeader, Tx

__all__ = ["KINDS", "EvidenceError", "attest_payload", "decode_record", "encode_record",
           "index_block", "index_key", "parse_payload", "records_for"]

KINDS = ("judgment", "ruling", "mediation_agreement", "effectiveness_certificate", "efile_item",
         "delivery_receipt", "enforcement_notice", "enforcement_application",
         "electronic_evidence", "other")
CASE_NO_CHARS_MAX = 64
TITLE_CHARS_MAX = 200
INDEX_PREFIX = b"ev/"
PAYLOAD_BYTES_MAX = 4096
RECORD_BYTES_MAX = 4096
RESIDENT_ID = re.compile(r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
                         r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
# Unicode's Cc (control) and Cs (surrogate) categories, which are fixed sets
# of code points: one regex search instead of a category lookup per character.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class EvidenceError(ValueError):
    """A caller's field is unacceptable; the message names it."""


def _text(value: Any, name: str, chars_max: int) -> str:
    if type(value) is not str:
        raise EvidenceError(f"{name} must be a string")
    text = unicodedata.normalize("NFC", value).strip()
    if not 0 < len(text) <= chars_max:
        raise EvidenceError(f"{name} must be 1..{chars_max} characters")
    if CONTROL.search(text):
        raise EvidenceError(f"{name} must not contain control characters")
    if RESIDENT_ID.search(text) or MOBILE.search(text):
        raise EvidenceError(f"{name} looks like it holds personal data (an identity or phone "
                            "number); only hashes and case references may go on chain")
    return text


def attest_payload(sha256_hex: str, kind: str, case_no: str, title: str | None) -> bytes:
    """The transaction payload of one attestation: the canonical CBOR of
    {op: "attest", kind, [title,] sha256, case_no}."""
    if type(sha256_hex) is not str or not SHA256_HEX.fullmatch(sha256_hex):
        raise EvidenceError("sha256 must be 64 hex characters")
    if type(kind) is not str or kind not in _KIND_SET:
        raise EvidenceError(f"kind must be one of {', '.join(KINDS)}")
    case_text = _text(case_no, "case_no", CASE_NO_CHARS_MAX)
    # Keys in canonical order (by length), so cbor2 need not sort them: this
    # runs once per attestation on the node that takes the call.
    body: dict[str, Any] = {"op": "attest", "kind": kind}
    if title is not None:
        body["title"] = _text(title, "title", TITLE_CHARS_MAX)
    body["sha256"] = bytes.fromhex(sha256_hex)
    body["case_no"] = case_text
    return codec.encode_ordered(body)


def parse_payload(payload: bytes) -> Mapping[str, Any] | None:
    """The attestation in a transaction (read-only), or None if it is not one.

    Runs at execution on every node, over payloads any court may have
    submitted, so it checks the whole shape: the canonical spelling,
    exactly the keys ``attest_payload`` writes, and their types and
    lengths.  Anything else is not an attestation (still a
    transaction on chain, just not indexed).  Nothing here may depend on
    the Python build (no Unicode normalisation): nodes must agree.

    Every block asks twice per transaction (the workflow engine skips
    attestations, the index records them), so answers are remembered for
    the last block's payloads (``remember_parsed``); they are read-only
    views because they are shared.
    """
    if type(payload) is not bytes or len(payload) > PAYLOAD_BYTES_MAX:
        return None
    return _parse_cached(payload)


def remember_parsed(block_requests_max: int) -> None:
    """Size the cache of parsed payloads to hold a whole block of up to
    ``block_requests_max`` transactions (the daemon passes ``[consensus]
    batch_requests_max`` at start-up).

    Why: the two asks walk a block in the same order, so a block larger than
    the cache misses on every second ask (least recently used goes first) and
    parses each attestation twice.  It holds at most that many payloads of
    at most ``PAYLOAD_BYTES_MAX`` each, and a small map per payload: 8 MiB
    of payloads at worst with the default 2,000 (a block of the bench's
    attestations is about 0.2 MiB)."""
    global _parse_cached
    size = max(PARSED_MIN, block_requests_max)
    if _parse_cached.cache_info().maxsize != size:
        _parse_cached = functools.lru_cache(maxsize=size)(_parse)


PARSED_MIN = 1024


def _parse(payload: bytes) -> Mapping[str, Any] | None:
    try:
        body = codec.decode_stored(payload, size_max=PAYLOAD_BYTES_MAX)
    except codec.DecodeError:
        return None
    # The shape is fixed, so it is checked here instead of by codec.decode's
    # walk over the value (a third of a parse, which every node does once
    # per attestation): exactly attest_payload's keys, in canonical order,
    # and every value a str or bytes.  Then the spelling check is the rest.
    if type(body) is not dict or body.get("op") != "attest":
        return None
    keys = tuple(body)
    if keys != _ORDER and keys != _ORDER_TITLED:
        return None
    digest, kind = body["sha256"], body["kind"]
    # kind's type first: a list or map there is unhashable, and asking the
    # set about it raised TypeError in every node's execution of the block
    if type(digest) is not bytes or len(digest) != 32 or type(kind) is not str \
            or kind not in _KIND_SET:
        return None
    if not _is_text(body["case_no"], CASE_NO_CHARS_MAX):
        return None
    if "title" in body and not _is_text(body["title"], TITLE_CHARS_MAX):
        return None
    if not codec.spelled_canonically(body, payload):
        return None
    return MappingProxyType(body)


_parse_cached = functools.lru_cache(maxsize=PARSED_MIN)(_parse)


def _is_text(value: Any, chars_max: int) -> bool:
    return type(value) is str and 0 < len(value) <= chars_max


# attest_payload's keys in canonical order: by the length of their encoding
_ORDER = ("op", "kind", "sha256", "case_no")
_ORDER_TITLED = ("op", "kind", "title", "sha256", "case_no")
_KIND_SET = frozenset(KINDS)


def index_block(put_state: Any, header: BlockHeader, fresh: tuple[Tx, ...]) -> None:
    """Called inside the block's write batch: index every new attestation."""
    for tx in fresh:
        body = parse_payload(tx.payload)
        if body is None:
            continue
        put_state(index_key(body["sha256"], tx.tx_id),
                  encode_record(kind=body["kind"], court=tx.origin, title=body.get("title"),
                                client=tx.client, height=header.height, case_no=body["case_no"],
                                time_ms=header.time_ms, request_id=tx.rid))


def index_key(digest: bytes, tx_id: bytes) -> bytes:
    """Records of one document hash are adjacent: ``evidence.verify`` is one scan."""
    return INDEX_PREFIX + digest + tx_id


# An index record (store format 2, storage/keys.py) is these fields as a CBOR
# array.  The tx id is the key's tail and the field names are implied, which
# halves the record (format 1 was a map of them with the tx id: 193 bytes an
# attestation against about 100).  Not covered by any root: it is this node's
# index, rebuilt from blocks on a replica that fetches them.
RECORD_FIELDS = ("kind", "court", "title", "client", "height", "case_no", "time_ms", "request_id")
_TX_ID_BYTES = 32  # SHA-256


def encode_record(*, kind: str, court: str, title: str | None, client: str, height: int,
                  case_no: str, time_ms: int, request_id: str) -> bytes:
    return codec.encode_fields((kind, court, title, client, height, case_no, time_ms, request_id))


def decode_record(key: bytes, raw: bytes) -> dict[str, Any]:
    """The record under ``key`` (an ``index_key``) as records_for returns it,
    with the tx id as bytes; format 1's map is read as well."""
    rec = codec.decode(raw, size_max=RECORD_BYTES_MAX)
    if type(rec) is dict:
        return rec
    if type(rec) is not list or len(rec) != len(RECORD_FIELDS):
        raise ValueError(f"evidence index record {key.hex()} is damaged: {rec!r:.80}")
    kind, court, title, client, height, case_no, time_ms, request_id = rec
    return {"kind": kind, "court": court, "title": title, "tx_id": key[-_TX_ID_BYTES:],
            "client": client, "height": height, "case_no": case_no, "time_ms": time_ms,
            "request_id": request_id}


def records_for(iter_state: Any, digest: bytes) -> list[dict[str, Any]]:
    out = []
    for key, raw in iter_state(INDEX_PREFIX + digest):
        rec = decode_record(key, raw)
        rec["tx_id"] = rec["tx_id"].hex()
        out.append(rec)
    return sorted(out, key=lambda r: (r["height"], r["tx_id"]))
