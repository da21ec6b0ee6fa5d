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

import re
import unicodedata
from typing import Any

from .core import codec
from .core.chain import BlockHeader, Tx

__all__ = ["KINDS", "EvidenceError", "attest_payload", "index_block", "parse_payload",
           "records_for"]

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
    {op: "attest", kind, [title,] sha256, case_no}, laid out as ``_scan``
    reads it (an attestBatch builds thousands per call)."""
    if type(sha256_hex) is not str or not SHA256_HEX.fullmatch(sha256_hex):
        raise EvidenceError("sha256 must be 64 hex characters")
    kind_item = _KIND_ITEM_OF.get(kind) if type(kind) is str else None
    if kind_item is None:
        raise EvidenceError(f"kind must be one of {', '.join(KINDS)}")
    case_item = codec.encode_item(_text(case_no, "case_no", CASE_NO_CHARS_MAX))
    sha = bytes.fromhex(sha256_hex)
    if title is None:
        return b"".join((b"\xa4", _OP_KIND, kind_item, _SHA_KEY, sha, _CASE_KEY, case_item))
    title_item = codec.encode_item(_text(title, "title", TITLE_CHARS_MAX))
    return b"".join((b"\xa5", _OP_KIND, kind_item, _TITLE_KEY, title_item, _SHA_KEY, sha,
                     _CASE_KEY, case_item))


def parse_payload(payload: bytes) -> dict[str, Any] | None:
    """The attestation in a transaction, or None if it is not one."""
    scanned = _scan(payload)
    if scanned is not None:
        sha, kind, _kind_item, title, _title_item, case_no, _case_item = scanned
        body: dict[str, Any] = {"op": "attest", "kind": kind}
        if title is not None:
            body["title"] = title
        body["sha256"] = sha
        body["case_no"] = case_no
        return body
    return _parse_general(payload)


def _parse_general(payload: bytes) -> dict[str, Any] | None:
    try:
        body = codec.decode(payload, size_max=PAYLOAD_BYTES_MAX)
    except codec.DecodeError:
        return None
    if type(body) is not dict or body.get("op") != "attest":
        return None
    digest = body.get("sha256")
    if type(digest) is not bytes or len(digest) != 32 or body.get("kind") not in KINDS:
        return None
    return body


# The canonical spelling of an attestation as attest_payload makes it: a map
# of 4 or 5 entries in canonical key order (op, kind, [title,] sha256,
# case_no).  Every block decodes each one twice (the workflow engine skips
# attestations, the index records them); reading that one spelling by its
# known offsets costs a fraction of a generic decode, and anything else,
# including every non-canonical spelling, falls back to the generic path.
_OP_KIND = b"\x62op\x66attest\x64kind"
_TITLE_KEY = b"\x65title"
_SHA_KEY = b"\x66sha256\x58\x20"
_CASE_KEY = b"\x67case_no"
_KIND_ITEMS = {codec.encode_item(kind): kind for kind in KINDS}
_KIND_ITEM_OF = {kind: item for item, kind in _KIND_ITEMS.items()}

# (sha256, kind, kind item, title | None, title item | None, case_no, case_no item)
_Scanned = tuple[bytes, str, bytes, str | None, bytes | None, str, bytes]


def _scan(payload: bytes) -> _Scanned | None:
    """The parts of a payload spelled exactly as attest_payload spells it,
    each text with its CBOR item verbatim; None for any other bytes (which
    parse_payload then decodes the general way)."""
    size = len(payload)
    if size > PAYLOAD_BYTES_MAX or size < 16 or payload[0] not in (0xA4, 0xA5) \
            or not payload.startswith(_OP_KIND, 1):
        return None
    kind_end = _text_end(payload, 16)
    if kind_end < 0:
        return None
    kind_item = payload[16:kind_end]
    kind = _KIND_ITEMS.get(kind_item)
    if kind is None:
        return None
    pos, title, title_item = kind_end, None, None
    if payload[0] == 0xA5:
        if not payload.startswith(_TITLE_KEY, pos):
            return None
        end = _text_end(payload, pos + 6)
        if end < 0:
            return None
        title_item = payload[pos + 6:end]
        title = _utf8(title_item)
        if title is None:
            return None
        pos = end
    if not payload.startswith(_SHA_KEY, pos):
        return None
    sha = payload[pos + 9:pos + 41]
    pos += 41
    if not payload.startswith(_CASE_KEY, pos) or _text_end(payload, pos + 8) != size:
        return None
    case_item = payload[pos + 8:]
    case_no = _utf8(case_item)
    if case_no is None:
        return None
    return sha, kind, kind_item, title, title_item, case_no, case_item


def _text_end(data: bytes, pos: int) -> int:
    """Where the canonically headed text string at ``pos`` ends; -1 if there
    is none (another major type, a non-shortest head, or past the end)."""
    if pos >= len(data):
        return -1
    head = data[pos]
    if 0x60 <= head <= 0x77:
        end = pos + 1 + head - 0x60
    elif head == 0x78 and pos + 1 < len(data) and data[pos + 1] >= 24:
        end = pos + 2 + data[pos + 1]
    elif head == 0x79 and pos + 2 < len(data) and data[pos + 1] != 0:
        end = pos + 3 + int.from_bytes(data[pos + 1:pos + 3], "big")
    else:
        return -1
    return end if end <= len(data) else -1


def _utf8(item: bytes) -> str | None:
    """The text of a canonical text item (head included), None if not UTF-8."""
    start = 1 if item[0] < 0x78 else 2 if item[0] == 0x78 else 3
    try:
        return item[start:].decode()
    except UnicodeDecodeError:
        return None


def index_block(put_state: Any, header: BlockHeader, fresh: tuple[Tx, ...]) -> None:
    """Called inside the block's write batch: index every new attestation.

    The record is the canonical map {kind, court, title, tx_id, client,
    height, case_no, time_ms, request_id} (see ``_record``), spliced from the
    payload's own text items where it has them rather than decoded and
    encoded again."""
    height, time_ms = codec.encode_item(header.height), codec.encode_item(header.time_ms)
    for tx in fresh:
        scanned = _scan(tx.payload)
        if scanned is not None:
            sha, _kind, kind_item, _title, title_item, _case_no, case_item = scanned
            value = b"".join((
                _RECORD_HEAD_KIND, kind_item, _KEY_COURT, codec.encode_item(tx.origin),
                _KEY_TITLE, title_item or _NULL, _KEY_TX_ID, _BYTES32, tx.tx_id,
                _KEY_CLIENT, codec.encode_item(tx.client), _KEY_HEIGHT, height,
                _KEY_CASE_NO, case_item, _KEY_TIME_MS, time_ms,
                _KEY_REQUEST_ID, codec.encode_item(tx.rid)))
        else:
            body = _parse_general(tx.payload)
            if body is None:
                continue
            sha = body["sha256"]
            value = codec.encode(_record(tx, header.height, header.time_ms, body))
        put_state(INDEX_PREFIX + sha + tx.tx_id, value)


def _record(tx: Tx, height: int, time_ms: int, body: dict[str, Any]) -> dict[str, Any]:
    """An index record as a value: what records_for returns (tx_id as bytes)."""
    return {"tx_id": tx.tx_id, "height": height, "court": tx.origin, "client": tx.client,
            "request_id": tx.rid, "kind": body["kind"], "case_no": body["case_no"],
            "title": body.get("title"), "time_ms": time_ms}


# The record's keys in canonical order, each as its CBOR text item.
_RECORD_HEAD_KIND = b"\xa9" + codec.encode_item("kind")
_KEY_COURT, _KEY_TITLE, _KEY_TX_ID, _KEY_CLIENT, _KEY_HEIGHT, _KEY_CASE_NO, _KEY_TIME_MS, \
    _KEY_REQUEST_ID = (codec.encode_item(k) for k in ("court", "title", "tx_id", "client",
                                                      "height", "case_no", "time_ms",
                                                      "request_id"))
_NULL = b"\xf6"
_BYTES32 = b"\x58\x20"


def records_for(iter_state: Any, digest: bytes) -> list[dict[str, Any]]:
    out = []
    for _key, raw in iter_state(INDEX_PREFIX + digest):
        rec = codec.decode(raw, size_max=RECORD_BYTES_MAX)
        rec["tx_id"] = rec["tx_id"].hex()
        out.append(rec)
    return sorted(out, key=lambda r: (r["height"], r["tx_id"]))
