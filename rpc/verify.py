"""Offline verification of evidence proofs and of header chains (docs/PROOFS.md).

Pure functions, no network and no clock: an agency's system, the
``pbftd verify-proof`` command and the tests all call the same code.  What
they trust is supplied by the caller (normally read from the chain's genesis
file): the chain id, the genesis hash and the validators' Ed25519 keys.
Nothing the proof says about itself is trusted.

Every check that fails raises ``ProofError`` whose ``code`` is a stable
machine name and whose message says what failed, e.g.
``merkle_path_invalid: the Merkle path does not lead from tx to header.tx_root``.

Signatures are checked with ``cryptography`` (via pbftd.core.crypto) and the
signed CBOR is read with the project's canonical codec, which refuses any
non-canonical spelling, so one value has exactly one accepted encoding.

What the commit certificate signs is the batch digest: chain id, height,
view, proposer, proposed time (``batch_time_ms``) and the transaction root.
``prev_hash``, ``time_ms``, ``tx_count`` and ``state_root`` are bound only by
``block_hash``; a light client following ``chain.getHeaders`` from genesis
(``HeaderChain`` below) checks those too, by recomputing every block hash,
linking ``prev_hash`` and recomputing ``time_ms`` from certified times.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pbftd import evidence
from pbftd.core import codec
from pbftd.core.chain import BlockHeader
from pbftd.core.crypto import PUBLIC_KEY_BYTES, Verifier, sha256
from pbftd.core.merkle import verify_path
from pbftd.core.messages import DOMAIN
from pbftd.core.validators import ValidatorSet

from .schema import SchemaViolation, validate
from .strict_json import has_lone_surrogate

__all__ = [
    "CERT_SCHEMA",
    "HEADER_ENTRY_SCHEMA",
    "HEADER_SCHEMA",
    "PROOF_SCHEMA",
    "PROOF_VERSION",
    "HeaderChain",
    "ProofError",
    "Trust",
    "VerifiedAttestation",
    "check_commit_certificate",
    "header_from_json",
    "parse_proof_json",
    "trust_from_genesis",
    "verify_proof",
    "verify_proof_bytes",
]

PROOF_VERSION = 1
INT_MAX = codec.INT_MAX
SIGNED_BYTES_MAX = 4096
PAYLOAD_BYTES_MAX = 64 * 1024
SIGNATURES_MAX = 10_000
PATH_LEN_MAX = 64

_HEX64: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$",
                          "description": "32 bytes, lowercase hex"}
_U64: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": INT_MAX}
_ID: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 128}


def _hex(bytes_max: int, what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": "^(?:[0-9a-f]{2})*$", "maxLength": 2 * bytes_max,
            "description": f"{what}, lowercase hex"}


def _obj(props: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "required": list(props),
                           "additionalProperties": False, "properties": props}
    if description:
        out["description"] = description
    return out


HEADER_SCHEMA = _obj({
    "chain_id": _ID,
    "height": {**_U64, "minimum": 1},
    "prev_hash": _HEX64,
    "time_ms": {**_U64, "description": "block time, Unix ms"},
    "batch_time_ms": {**_U64, "description": "time proposed by the primary; certified"},
    "tx_root": _HEX64,
    "tx_count": _U64,
    "state_root": _HEX64,
    "proposer": _ID,
    "view": _U64,
}, "a block header, every field by name")

CERT_SCHEMA = _obj({
    "view": _U64,
    "seq": {**_U64, "minimum": 1},
    "digest": _HEX64,
    "signatures": {"type": "array", "maxItems": SIGNATURES_MAX, "items": _obj({
        "validator": _ID,
        "signed_hex": _hex(SIGNED_BYTES_MAX, "the signed COMMIT bytes, verbatim"),
        "sig_hex": {"type": "string", "pattern": "^[0-9a-f]{128}$",
                    "description": "Ed25519 signature, lowercase hex"},
    })},
}, "the commit certificate: COMMITs of a quorum of validators for the batch digest")

CHECKPOINT_SCHEMA = _obj({
    "seq": {**_U64, "minimum": 1},
    "block_hash": _HEX64,
    "signatures": {"type": "array", "maxItems": SIGNATURES_MAX, "items": _obj({
        "validator": _ID,
        "signed_hex": _hex(SIGNED_BYTES_MAX, "the signed CHECKPOINT bytes, verbatim"),
        "sig_hex": {"type": "string", "pattern": "^[0-9a-f]{128}$",
                    "description": "Ed25519 signature, lowercase hex"},
    })},
}, "a stable checkpoint: CHECKPOINTs of a quorum of validators for this block's hash")

HEADER_ENTRY_SCHEMA = _obj({
    "header": HEADER_SCHEMA,
    "block_hash": _HEX64,
    "commit_certificate": CERT_SCHEMA,
})
# Present at checkpoint heights: certifies the whole header (state_root included).
HEADER_ENTRY_SCHEMA["properties"]["checkpoint"] = CHECKPOINT_SCHEMA

PROOF_SCHEMA = _obj({
    "version": {"const": PROOF_VERSION},
    "chain_id": _ID,
    "genesis_hash": _HEX64,
    "tx": _obj({
        "origin": _ID,
        "submission": {**_U64, "minimum": 1},
        "client": _ID,
        "request_id": _ID,
        "payload_hex": _hex(PAYLOAD_BYTES_MAX, "the transaction payload"),
        "tx_hex": _hex(PAYLOAD_BYTES_MAX + 1024, "the exact transaction bytes"),
    }),
    "tx_id": _HEX64,
    "merkle": _obj({
        "index": _U64,
        "size": {**_U64, "minimum": 1},
        "path": {"type": "array", "maxItems": PATH_LEN_MAX, "items": _HEX64},
    }),
    "header": HEADER_SCHEMA,
    "block_hash": _HEX64,
    "commit_certificate": CERT_SCHEMA,
    "validators": {"type": "array", "minItems": 1, "maxItems": SIGNATURES_MAX, "items": _obj({
        "id": _ID, "public_key": _HEX64})},
}, "a self-contained proof that a transaction is in a committed block (docs/PROOFS.md)")


class ProofError(ValueError):
    """The proof does not hold; ``code`` is stable, the message says what failed."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Trust:
    """What a verifier trusts: normally read from the genesis file."""

    chain_id: str
    validators: Mapping[str, bytes]
    genesis_hash: bytes | None = None
    genesis_time_ms: int | None = None


def trust_from_genesis(genesis: Any) -> Trust:
    """A Trust from a config.Genesis (duck-typed: no import of the config package)."""
    return Trust(genesis.chain_id,
                 {c.id: bytes.fromhex(c.public_key) for c in genesis.validators()},
                 genesis.genesis_hash(), genesis.genesis_time_ms)


@dataclass(frozen=True, slots=True)
class VerifiedAttestation:
    """What a valid proof proves."""

    chain_id: str
    tx_id: str
    court: str              # the attesting node's court id (the tx origin)
    client: str             # the client of that court that made the write
    request_id: str
    kind: str
    case_no: str
    title: str | None
    sha256: str
    height: int
    time_ms: int            # certified: the batch time the quorum signed
    block_time_ms: int      # header time; bound by block_hash, see module doc
    block_hash: str
    signers: tuple[str, ...]


def _fail(code: str, detail: str) -> ProofError:
    return ProofError(code, detail)


def header_from_json(h: Mapping[str, Any]) -> BlockHeader:
    """A schema-valid header as a BlockHeader; ProofError if a text in it is not
    Unicode text (a lone surrogate, "\\ud800" in JSON): hashing it would raise."""
    for name in ("chain_id", "proposer"):
        if has_lone_surrogate(h[name]):
            raise _fail("malformed", f"header/{name}: contains a lone surrogate")
    return BlockHeader(h["chain_id"], h["height"], bytes.fromhex(h["prev_hash"]), h["time_ms"],
                       h["batch_time_ms"], bytes.fromhex(h["tx_root"]), h["tx_count"],
                       bytes.fromhex(h["state_root"]), h["proposer"], h["view"])


def _validator_set(validators: Mapping[str, bytes]) -> ValidatorSet:
    if not validators:
        raise _fail("no_trusted_validators", "the trusted validator set is empty")
    for vid, key in validators.items():
        if type(key) is not bytes or len(key) != PUBLIC_KEY_BYTES:
            raise _fail("bad_trusted_key", f"trusted key of {vid!r} is not 32 bytes")
    try:
        return ValidatorSet.of(list(validators.items()))
    except ValueError as exc:
        raise _fail("bad_trusted_validators", str(exc)) from None


def check_commit_certificate(cert: Mapping[str, Any], header: BlockHeader,
                             vals: ValidatorSet, verifier: Verifier | None = None
                             ) -> tuple[str, ...]:
    """Check a (schema-valid) commit certificate against a header; return the signers.

    seq must be the height, view at least the header's view (a batch re-issued
    after a view change keeps its original view and proposer), digest the
    header's batch digest; every signature is a COMMIT for exactly that
    (view, seq, digest) on this chain, by a distinct trusted validator, valid
    under its key; and there are at least quorum of them.
    """
    verifier = verifier or Verifier()
    if cert["seq"] != header.height:
        raise _fail("cert_seq_mismatch",
                    f"certificate seq {cert['seq']} is not the header height {header.height}")
    if cert["view"] < header.view:
        raise _fail("cert_view_mismatch",
                    f"certificate view {cert['view']} is before the header view {header.view}")
    digest = header.batch_digest()
    if cert["digest"] != digest.hex():
        raise _fail("batch_digest_mismatch",
                    "certificate digest is not the header's batch digest "
                    "(chain_id, height, view, proposer, batch_time_ms, tx_root)")
    body = {"v": cert["view"], "n": cert["seq"], "d": digest}
    return _check_quorum_signatures(cert["signatures"], header.chain_id, "commit", body, vals,
                                    verifier)


def check_checkpoint_certificate(ckpt: Mapping[str, Any], header: BlockHeader,
                                 vals: ValidatorSet, verifier: Verifier | None = None
                                 ) -> tuple[str, ...]:
    """A quorum of trusted validators signed CHECKPOINT(height, hash of this header):
    every header field, state_root included, is then certified."""
    block_hash = header.hash()
    if ckpt["seq"] != header.height or ckpt["block_hash"] != block_hash.hex():
        raise _fail("checkpoint_mismatch", "checkpoint is not for this header's height and hash")
    return _check_quorum_signatures(ckpt["signatures"], header.chain_id, "checkpoint",
                                    {"n": header.height, "h": block_hash}, vals,
                                    verifier or Verifier())


def _check_quorum_signatures(signatures: Sequence[Mapping[str, Any]], chain_id: str,
                             kind: str, body: Mapping[str, Any], vals: ValidatorSet,
                             verifier: Verifier) -> tuple[str, ...]:
    """Each entry signs exactly [DOMAIN, chain_id, kind, validator, body], by a
    distinct trusted validator, with a valid signature; at least quorum of them."""
    seen: list[str] = []
    for i, entry in enumerate(signatures):
        who = entry["validator"]
        where = f"signatures[{i}] ({who})"
        if who not in vals:
            raise _fail("unknown_signer", f"{where}: not a trusted validator")
        if who in seen:
            raise _fail("duplicate_signer", f"{where}: validator signed twice")
        seen.append(who)
        signed = bytes.fromhex(entry["signed_hex"])
        try:
            value = codec.decode(signed, size_max=SIGNED_BYTES_MAX)
        except codec.DecodeError as exc:
            raise _fail(f"bad_{kind}_encoding", f"{where}: signed bytes: {exc}") from None
        if value != [DOMAIN, chain_id, kind, who, dict(body)] or _has_bool(value):
            raise _fail(f"{kind}_mismatch",
                        f"{where}: signed bytes are not [\"{DOMAIN}\", chain_id, \"{kind}\", "
                        f"validator, {{{', '.join(body)}}}] for this certificate")
        if not verifier.verify(vals.key(who), signed, bytes.fromhex(entry["sig_hex"])):
            raise _fail("bad_signature", f"{where}: Ed25519 signature does not verify")
    if len(seen) < vals.quorum:
        raise _fail("insufficient_quorum",
                    f"{len(seen)} valid signatures from distinct validators; "
                    f"quorum of {vals.n} validators is {vals.quorum}")
    return tuple(seen)


def _has_bool(value: Any) -> bool:
    """True/False compare equal to 1/0 in Python; CBOR tells them apart."""
    if type(value) is bool:
        return True
    if type(value) is list:
        return any(_has_bool(v) for v in value)
    if type(value) is dict:
        return any(_has_bool(v) for v in value.values())
    return False


def verify_proof(proof: Any, trusted_validators: Mapping[str, bytes], chain_id: str, *,
                 genesis_hash: bytes | None = None) -> VerifiedAttestation:
    """Verify a proof (parsed JSON) against what the caller trusts.

    Raises ProofError naming the first check that failed; returns what the
    proof proves.  ``genesis_hash``, when given, must equal the proof's.
    """
    try:
        validate(proof, PROOF_SCHEMA)
    except SchemaViolation as exc:
        raise _fail("malformed", f"{exc.path or '(proof)'}: {exc.reason}") from None
    vals = _validator_set(trusted_validators)

    # 1. the chain and the validator set
    if proof["chain_id"] != chain_id:
        raise _fail("chain_id_mismatch",
                    f"proof is for chain {proof['chain_id']!r}, trusted chain is {chain_id!r}")
    if genesis_hash is not None and proof["genesis_hash"] != genesis_hash.hex():
        raise _fail("genesis_hash_mismatch", "proof names another genesis than the trusted one")
    listed: dict[str, str] = {}
    for v in proof["validators"]:
        if v["id"] in listed:
            raise _fail("validator_set_mismatch", f"validator {v['id']!r} listed twice")
        listed[v["id"]] = v["public_key"]
    if listed != {k: key.hex() for k, key in trusted_validators.items()}:
        raise _fail("validator_set_mismatch",
                    "the proof's validator set differs from the trusted validator set")

    # 2. the transaction: its id, and its fields as its bytes say
    tx = proof["tx"]
    tx_bytes = bytes.fromhex(tx["tx_hex"])
    if sha256(tx_bytes).hex() != proof["tx_id"]:
        raise _fail("tx_id_mismatch", "tx_id is not the SHA-256 of tx_hex")
    try:
        fields = codec.decode(tx_bytes, size_max=PAYLOAD_BYTES_MAX + 1024)
    except codec.DecodeError as exc:
        raise _fail("bad_tx_encoding", f"tx_hex: {exc}") from None
    if (type(fields) is not list or len(fields) != 5
            or [type(x) for x in fields] != [str, int, str, str, bytes]):
        raise _fail("bad_tx_encoding", "tx_hex is not [origin, submission, client, "
                                       "request_id, payload]")
    claimed = [tx["origin"], tx["submission"], tx["client"], tx["request_id"],
               bytes.fromhex(tx["payload_hex"])]
    names = ("origin", "submission", "client", "request_id", "payload_hex")
    for name, mine, theirs in zip(names, claimed, fields, strict=True):
        if mine != theirs:
            raise _fail("tx_field_mismatch", f"tx.{name} does not match tx_hex")

    # 3. the header and its hash
    h = proof["header"]
    if h["chain_id"] != chain_id:
        raise _fail("chain_id_mismatch", f"header.chain_id {h['chain_id']!r} is not {chain_id!r}")
    header = header_from_json(h)
    if header.hash().hex() != proof["block_hash"]:
        raise _fail("block_hash_mismatch", "block_hash is not the hash of the header")
    if header.time_ms < header.batch_time_ms:
        raise _fail("bad_header_time", "header time_ms is before batch_time_ms")

    # 4. inclusion: Merkle audit path from the tx bytes to header.tx_root
    m = proof["merkle"]
    if m["size"] != header.tx_count:
        raise _fail("merkle_size_mismatch",
                    f"merkle.size {m['size']} is not header.tx_count {header.tx_count}")
    if not verify_path(tx_bytes, m["index"], m["size"], [bytes.fromhex(p) for p in m["path"]],
                       header.tx_root):
        raise _fail("merkle_path_invalid",
                    "the Merkle path does not lead from tx to header.tx_root")

    # 5. the commit certificate over the header's batch digest
    signers = check_commit_certificate(proof["commit_certificate"], header, vals)

    # 6. what it attests
    body = evidence.parse_payload(claimed[4])
    if body is None:
        raise _fail("not_an_attestation", "the transaction's payload is not an attestation")
    return VerifiedAttestation(
        chain_id=chain_id, tx_id=proof["tx_id"], court=tx["origin"], client=tx["client"],
        request_id=tx["request_id"], kind=body["kind"], case_no=str(body.get("case_no")),
        title=body.get("title"), sha256=body["sha256"].hex(), height=header.height,
        time_ms=header.batch_time_ms, block_time_ms=header.time_ms,
        block_hash=proof["block_hash"], signers=signers)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def parse_proof_json(data: bytes) -> Any:
    """Strict JSON (UTF-8, no duplicate keys, no NaN, no lone surrogates, no
    nesting deep enough to exhaust the stack); ProofError if not."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                           parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise _fail("not_json", "the proof is not UTF-8 text") from None
    except ValueError as exc:
        raise _fail("not_json", f"the proof is not valid JSON: {exc}") from None
    except RecursionError:
        raise _fail("not_json", "the proof is not valid JSON: nested too deeply") from None
    stack = [value]
    while stack:  # iterative: what parsed may still be nested deeply
        item = stack.pop()
        if type(item) is str:
            if has_lone_surrogate(item):
                raise _fail("not_json", "the proof holds a string with a lone surrogate")
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
    return value


def verify_proof_bytes(data: bytes, trust: Trust) -> VerifiedAttestation:
    """A proof file's bytes, verified against ``trust`` (what verify-proof runs)."""
    return verify_proof(parse_proof_json(data), trust.validators, trust.chain_id,
                        genesis_hash=trust.genesis_hash)


# --------------------------------------------------------------------------
# light client


class HeaderChain:
    """A light client's view of the chain: follows chain.getHeaders from genesis.

    For every header it checks the commit certificate (as for a proof), that
    ``prev_hash`` is the previous block's hash (the genesis hash for block 1),
    that ``time_ms`` is ``max(batch_time_ms, previous time_ms + 1)`` (block 1:
    the genesis time), and that ``block_hash`` is the header's hash.  After
    that, a proof whose block hash is one it has accepted is checked against
    a header it already trusts.
    """

    def __init__(self, trust: Trust) -> None:
        if trust.genesis_hash is None or trust.genesis_time_ms is None:
            raise ValueError("a light client starts from the genesis hash and time")
        self.trust = trust
        self.vals = _validator_set(trust.validators)
        self.height = 0
        self.tip_hash = trust.genesis_hash
        self.tip_time_ms = trust.genesis_time_ms
        self.hashes: dict[int, bytes] = {}
        # Headers up to here are certified in full (state_root too): a stable
        # checkpoint signs a block hash, and prev_hash links reach back.
        self.certified_height = 0
        self._verifier = Verifier()

    def extend(self, entries: Sequence[Any]) -> int:
        """Check and append headers (chain.getHeaders entries, in order); new height."""
        for entry in entries:
            try:
                validate(entry, HEADER_ENTRY_SCHEMA)
            except SchemaViolation as exc:
                raise _fail("malformed", f"{exc.path or '(header)'}: {exc.reason}") from None
            header = header_from_json(entry["header"])
            where = f"header {header.height}"
            if header.chain_id != self.trust.chain_id:
                raise _fail("chain_id_mismatch", f"{where}: chain id {header.chain_id!r}")
            if header.height != self.height + 1:
                raise _fail("header_gap", f"{where}: expected height {self.height + 1}")
            if header.prev_hash != self.tip_hash:
                raise _fail("prev_hash_mismatch", f"{where}: prev_hash is not block "
                                                  f"{self.height}'s hash")
            if header.time_ms != max(header.batch_time_ms, self.tip_time_ms + 1):
                raise _fail("bad_header_time", f"{where}: time_ms is not "
                                               "max(batch_time_ms, previous time_ms + 1)")
            block_hash = header.hash()
            if entry["block_hash"] != block_hash.hex():
                raise _fail("block_hash_mismatch", f"{where}: block_hash is not the hash of "
                                                   "the header")
            check_commit_certificate(entry["commit_certificate"], header, self.vals,
                                     self._verifier)
            if "checkpoint" in entry:
                check_checkpoint_certificate(entry["checkpoint"], header, self.vals,
                                             self._verifier)
                self.certified_height = header.height
            self.height, self.tip_hash, self.tip_time_ms = (header.height, block_hash,
                                                            header.time_ms)
            self.hashes[header.height] = block_hash
        return self.height

    def verify_proof(self, proof: Any) -> VerifiedAttestation:
        """A proof, verified on its own and against the header this client holds."""
        result = verify_proof(proof, self.trust.validators, self.trust.chain_id,
                              genesis_hash=self.trust.genesis_hash)
        known = self.hashes.get(result.height)
        if known is None:
            raise _fail("header_unknown", f"block {result.height} is beyond this light "
                                          f"client's height {self.height}")
        if known.hex() != result.block_hash:
            raise _fail("block_hash_mismatch", f"block {result.height} differs from the "
                                               "header this light client accepted")
        return result

