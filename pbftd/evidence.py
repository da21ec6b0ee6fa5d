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
RESIDENT_ID = re.compile(r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
                         r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


class EvidenceError(ValueError):
    """A caller's field is unacceptable; the message names it."""


def _text(value: Any, name: str, chars_max: int) -> str:
    if type(value) is not str:
        raise EvidenceError(f"{name} must be a string")
    text = unicodedata.normalize("NFC", value).strip()
    if not 0 < len(text) <= chars_max:
        raise EvidenceError(f"{name} must be 1..{chars_max} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        raise EvidenceError(f"{name} must not contain control characters")
    if RESIDENT_ID.search(text) or MOBILE.search(text):
        raise EvidenceError(f"{name} looks like it holds personal data (an identity or phone "
                            "number); only hashes and case references may go on chain")
    return text


def attest_payload(sha256_hex: str, kind: str, case_no: str, title: str | None) -> bytes:
    """The transaction payload of one attestation, canonical CBOR."""
    if type(sha256_hex) is not str or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256_hex):
        raise EvidenceError("sha256 must be 64 hex characters")
    if kind not in KINDS:
        raise EvidenceError(f"kind must be one of {', '.join(KINDS)}")
    body: dict[str, Any] = {"op": "attest", "sha256": bytes.fromhex(sha256_hex), "kind": kind,
                            "case_no": _text(case_no, "case_no", CASE_NO_CHARS_MAX)}
    if title is not None:
        body["title"] = _text(title, "title", TITLE_CHARS_MAX)
    return codec.encode(body)


def parse_payload(payload: bytes) -> dict[str, Any] | None:
    """The attestation in a transaction, or None if it is not one."""
    try:
        body = codec.decode(payload, size_max=4096)
    except codec.DecodeError:
        return None
    if type(body) is not dict or body.get("op") != "attest":
        return None
    digest = body.get("sha256")
    if type(digest) is not bytes or len(digest) != 32 or body.get("kind") not in KINDS:
        return None
    return body


def index_block(put_state: Any, header: BlockHeader, fresh: tuple[Tx, ...]) -> None:
    """Called inside the block's write batch: index every new attestation."""
    for tx in fresh:
        body = parse_payload(tx.payload)
        if body is None:
            continue
        record = {"tx_id": tx.tx_id, "height": header.height, "court": tx.origin,
                  "client": tx.client, "request_id": tx.rid, "kind": body["kind"],
                  "case_no": body["case_no"], "title": body.get("title"),
                  "time_ms": header.time_ms}
        put_state(INDEX_PREFIX + body["sha256"] + tx.tx_id, codec.encode(record))


def records_for(iter_state: Any, digest: bytes) -> list[dict[str, Any]]:
    out = []
    for _key, raw in iter_state(INDEX_PREFIX + digest):
        rec = codec.decode(raw, size_max=4096)
        rec["tx_id"] = rec["tx_id"].hex()
        out.append(rec)
    return sorted(out, key=lambda r: (r["height"], r["tx_id"]))
