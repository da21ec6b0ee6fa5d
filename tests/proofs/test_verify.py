"""build_proof -> verify_proof on a real chain store, and tampering of every kind.

The mutation tests change the proof one field (and one byte) at a time and
require verification to fail with the reason that names what was changed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pbftd.core.chain import BlockHeader
from pbftd.core.crypto import Signer, sha256
from pbftd.core.messages import Commit
from pbftd.proofs import build_proof, headers
from rpc.verify import (
    HeaderChain,
    ProofError,
    header_from_json,
    trust_from_genesis,
    verify_proof,
    verify_proof_bytes,
)

from .chainfix import CHAIN_ID, IDS, SampleChain, build_sample, make_genesis, open_chain


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleChain]:
    with open_chain(tmp_path_factory.mktemp("proof-chain") / "node") as tc:
        build_sample(tc)
        yield tc


@pytest.fixture(scope="module")
def proof(sample: SampleChain) -> dict[str, Any]:
    # block 2, the second submission's second tx: index 4 of 6, a non-trivial path
    tx_id = [t for t, (_s, _k, _c, court, h) in sample.attested.items()
             if h == 2 and court == "jl-cc-nanguan-basic"][1]
    made = build_proof(sample.chain, sample.genesis, bytes.fromhex(tx_id))
    assert made is not None
    return made


def _trusted(sample: SampleChain) -> dict[str, bytes]:
    return trust_from_genesis(sample.genesis).validators


def _verify(sample: SampleChain, p: Any, trusted: dict[str, bytes] | None = None) -> Any:
    return verify_proof(p, trusted or _trusted(sample), CHAIN_ID,
                        genesis_hash=sample.genesis.genesis_hash())


def _reason(sample: SampleChain, p: Any, trusted: dict[str, bytes] | None = None) -> str:
    with pytest.raises(ProofError) as info:
        _verify(sample, p, trusted)
    return info.value.code


# --------------------------------------------------------------------------
# valid proofs


def test_every_transaction_of_every_block_has_a_proof_that_verifies(sample: SampleChain):
    assert len(sample.attested) == 12
    for tx_id, (sha, kind, case_no, court, height) in sample.attested.items():
        p = build_proof(sample.chain, sample.genesis, bytes.fromhex(tx_id))
        assert p is not None
        json.dumps(p)  # plain JSON
        result = _verify(sample, p)
        assert (result.tx_id, result.sha256, result.kind, result.case_no, result.court,
                result.height) == (tx_id, sha, kind, case_no, court, height)
        header = sample.chain.block_json(height)["header"]  # type: ignore[index]
        assert result.time_ms == header["batch_time_ms"]
        assert result.block_time_ms == header["time_ms"]
        assert len(result.signers) == 3


def test_a_block_committed_in_a_later_view_by_other_validators_verifies(sample: SampleChain):
    [(tx_id, _)] = [(t, a) for t, a in sample.attested.items() if a[4] == 3]
    p = build_proof(sample.chain, sample.genesis, bytes.fromhex(tx_id))
    assert p is not None and p["header"]["view"] == 1 and p["merkle"]["path"] == []
    assert _verify(sample, p).signers == ("jl-high", "jl-cc-intermediate", "jl-cc-nanguan-basic")


def test_unknown_transaction_has_no_proof(sample: SampleChain):
    assert build_proof(sample.chain, sample.genesis, sha256(b"nothing")) is None


def test_proof_is_the_documented_shape(proof: dict[str, Any]):
    assert list(proof) == ["version", "chain_id", "genesis_hash", "tx", "tx_id", "merkle",
                           "header", "block_hash", "commit_certificate", "validators"]
    assert proof["merkle"]["size"] == 6 and proof["merkle"]["index"] == 4
    assert [v["id"] for v in proof["validators"]] == IDS


# --------------------------------------------------------------------------
# every field changed, one at a time


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


HEX = "0123456789abcdef"


def _is_hex(path: tuple[Any, ...], value: Any) -> bool:
    last = next(k for k in reversed(path) if isinstance(k, str))
    return isinstance(value, str) and (
        last.endswith("_hex") or last in ("genesis_hash", "tx_id", "block_hash", "digest",
                                          "prev_hash", "tx_root", "state_root", "public_key",
                                          "path"))


def _expected(path: tuple[Any, ...]) -> set[str]:
    """The reason a change at ``path`` must be reported with."""
    names = [k for k in path if isinstance(k, str)]
    top, last = names[0], names[-1]
    if top == "version":
        return {"malformed"}
    if top == "chain_id" or (top == "header" and last == "chain_id"):
        return {"chain_id_mismatch"}
    if top == "genesis_hash":
        return {"genesis_hash_mismatch"}
    if top == "validators":
        return {"validator_set_mismatch"}
    if top == "tx_id" or last == "tx_hex":
        return {"tx_id_mismatch"}
    if top == "tx":
        return {"tx_field_mismatch"}
    if top == "header" or top == "block_hash":
        return {"block_hash_mismatch"}
    if top == "merkle":
        return {"merkle_size_mismatch"} if last == "size" else {"merkle_path_invalid"}
    assert top == "commit_certificate"
    return {
        "view": {"commit_mismatch"}, "seq": {"cert_seq_mismatch"},
        "digest": {"batch_digest_mismatch"}, "validator": {"unknown_signer"},
        "signed_hex": {"bad_commit_encoding", "commit_mismatch"},
        "sig_hex": {"bad_signature"},
    }[last]


def test_every_hex_digit_of_every_hex_field_flipped_fails_naming_it(sample, proof):
    checked = 0
    for path, value in _leaves(proof):
        if not _is_hex(path, value):
            continue
        for pos, ch in enumerate(value):
            flipped = value[:pos] + HEX[(HEX.index(ch) + 1) % 16] + value[pos + 1:]
            reason = _reason(sample, _set(proof, path, flipped))
            assert reason in _expected(path), (path, pos, reason)
            checked += 1
    assert checked > 2000


def test_uppercase_hex_is_refused(sample, proof):
    for path, value in _leaves(proof):
        if _is_hex(path, value) and any(c in "abcdef" for c in value):
            assert _reason(sample, _set(proof, path, value.upper())) == "malformed", path


def test_every_integer_plus_one_and_every_name_changed_fails_naming_it(sample, proof):
    seen = set()
    for path, value in _leaves(proof):
        if type(value) is int:
            changed: Any = value + 1
        elif isinstance(value, str) and not _is_hex(path, value):
            changed = value + "x"
        else:
            continue
        reason = _reason(sample, _set(proof, path, changed))
        assert reason in _expected(path), (path, reason)
        seen.add(path[-1] if isinstance(path[-1], str) else path[-2])
    assert {"version", "height", "time_ms", "batch_time_ms", "tx_count", "view", "seq", "index",
            "size", "submission", "origin", "client", "request_id", "proposer",
            "validator", "id", "chain_id"} <= seen


def test_extra_missing_and_mistyped_members_are_malformed(sample, proof):
    assert _reason(sample, {**proof, "note": "trust me"}) == "malformed"
    assert _reason(sample, {k: v for k, v in proof.items() if k != "merkle"}) == "malformed"
    assert _reason(sample, _set(proof, ("header", "height"), True)) == "malformed"
    assert _reason(sample, _set(proof, ("header", "height"), 2.0)) == "malformed"
    assert _reason(sample, _set(proof, ("merkle", "index"), -1)) == "malformed"
    assert _reason(sample, [proof]) == "malformed"


# --------------------------------------------------------------------------
# the certificate and the validator set


def test_removing_a_signature_leaves_too_few(sample, proof):
    sigs = proof["commit_certificate"]["signatures"]
    for i in range(len(sigs)):
        fewer = _set(proof, ("commit_certificate", "signatures"), sigs[:i] + sigs[i + 1:])
        assert _reason(sample, fewer) == "insufficient_quorum"


def test_duplicating_a_signature_is_refused(sample, proof):
    sigs = proof["commit_certificate"]["signatures"]
    dup = _set(proof, ("commit_certificate", "signatures"), [*sigs[:2], sigs[0]])
    assert _reason(sample, dup) == "duplicate_signer"
    plus = _set(proof, ("commit_certificate", "signatures"), [*sigs, sigs[1]])
    assert _reason(sample, plus) == "duplicate_signer"


def test_swapping_a_validator_key_in_the_proof_or_in_the_trusted_set_fails(sample, proof):
    vals = proof["validators"]
    swapped = [dict(v) for v in vals]
    swapped[0]["public_key"], swapped[1]["public_key"] = vals[1]["public_key"], \
        vals[0]["public_key"]
    assert _reason(sample, _set(proof, ("validators",), swapped)) == "validator_set_mismatch"
    # the verifier's own set differs (another key for spc): the proof cannot pass
    trusted = dict(_trusted(sample))
    trusted["spc"] = Signer.from_seed(sha256(b"impostor")).public_key
    assert _reason(sample, proof, trusted) == "validator_set_mismatch"
    # both agree on the impostor's key: spc's real signature no longer verifies
    doctored = [dict(v) for v in vals]
    doctored[0]["public_key"] = trusted["spc"].hex()
    assert _reason(sample, _set(proof, ("validators",), doctored), trusted) == "bad_signature"
    # a validator dropped from both: its signature is from an unknown signer
    three = {k: v for k, v in _trusted(sample).items() if k != "spc"}
    p3 = _set(proof, ("validators",), [v for v in vals if v["id"] != "spc"])
    assert _reason(sample, p3, three) == "unknown_signer"


def _forged_commit(signer: Signer, sender: str, view: int, seq: int, digest: bytes,
                   chain_id: str = CHAIN_ID) -> dict[str, str]:
    c = Commit.create(signer, chain_id, sender, view, seq, digest)
    return {"validator": sender, "signed_hex": c.env.signed.hex(), "sig_hex": c.env.sig.hex()}


def test_forged_and_misdirected_commits_are_refused(sample, proof):
    cert = proof["commit_certificate"]
    sigs, view, seq = cert["signatures"], cert["view"], cert["seq"]
    digest = bytes.fromhex(cert["digest"])
    two = sigs[:2]

    def with_third(entry: dict[str, str]) -> str:
        return _reason(sample, _set(proof, ("commit_certificate", "signatures"), [*two, entry]))

    outsider = Signer.from_seed(sha256(b"outsider"))
    assert with_third(_forged_commit(outsider, "rogue", view, seq, digest)) == "unknown_signer"
    # the 4th validator's name, someone else's key
    assert with_third(_forged_commit(outsider, IDS[3], view, seq, digest)) == "bad_signature"
    # a real validator's real COMMIT, but for another block / another chain / prepare
    real = sample.signers[IDS[3]]
    assert with_third(_forged_commit(real, IDS[3], view, seq + 1, digest)) == "commit_mismatch"
    assert with_third(_forged_commit(real, IDS[3], view, seq, sha256(b"x"))) == "commit_mismatch"
    assert with_third(_forged_commit(real, IDS[3], view, seq, digest, "other-chain")) \
        == "commit_mismatch"
    # and the honest one completes the quorum
    assert _verify(sample, _set(proof, ("commit_certificate", "signatures"),
                                [*two, _forged_commit(real, IDS[3], view, seq, digest)]))
    # an entry naming one validator but carrying another's COMMIT
    relabelled = {**sigs[2], "validator": IDS[3]}
    assert with_third(relabelled) == "commit_mismatch"


def test_certificate_of_another_block_does_not_prove_this_one(sample, proof):
    other = sample.chain.block_json(1)["commit_certificate"]  # type: ignore[index]
    assert _reason(sample, {**proof, "commit_certificate": other}) in {
        "cert_seq_mismatch", "batch_digest_mismatch"}


# --------------------------------------------------------------------------
# a forger who recomputes block_hash: what the signatures do and do not cover


def _reheader(proof: dict[str, Any], **changes: Any) -> dict[str, Any]:
    header = {**proof["header"], **changes}
    return {**proof, "header": header,
            "block_hash": header_from_json(header).hash().hex()}


def test_certified_header_fields_cannot_be_changed_even_with_a_recomputed_hash(sample, proof):
    h = proof["header"]
    assert _reason(sample, _reheader(proof, height=h["height"] + 1)) == "cert_seq_mismatch"
    assert _reason(sample, _reheader(proof, view=h["view"] + 1)) == "cert_view_mismatch"
    assert _reason(sample, _reheader(proof, proposer=IDS[2])) == "batch_digest_mismatch"
    assert _reason(sample, _reheader(proof, batch_time_ms=h["batch_time_ms"] - 1)) \
        == "batch_digest_mismatch"
    assert _reason(sample, _reheader(proof, batch_time_ms=h["batch_time_ms"] + 1)) \
        == "bad_header_time"
    assert _reason(sample, _reheader(proof, tx_root=sha256(b"r").hex())) == "merkle_path_invalid"
    assert _reason(sample, _reheader(proof, tx_count=h["tx_count"] + 1)) == "merkle_size_mismatch"


def test_uncertified_header_fields_are_caught_by_a_light_client(sample, proof):
    """prev_hash, time_ms and state_root are bound by block_hash only (docs/PROOFS.md):
    a proof alone cannot tell, a light client holding the headers can."""
    trust = trust_from_genesis(sample.genesis)
    light = HeaderChain(trust)
    assert light.extend(headers(sample.chain, 1, 3)) == 3
    assert light.verify_proof(proof).height == 2
    forged = _reheader(proof, state_root=sha256(b"forged state").hex())
    assert _verify(sample, forged).height == 2          # signatures do not cover it
    with pytest.raises(ProofError) as info:
        light.verify_proof(forged)
    assert info.value.code == "block_hash_mismatch"


def test_light_client_checks_links_times_hashes_and_certificates(sample):
    entries = headers(sample.chain, 1, 3)
    trust = trust_from_genesis(sample.genesis)

    def fails(entries: list[Any]) -> str:
        with pytest.raises(ProofError) as info:
            HeaderChain(trust).extend(entries)
        return info.value.code

    assert fails(entries[1:]) == "header_gap"
    h2 = entries[1]["header"]
    bad_link = {**h2, "prev_hash": sha256(b"elsewhere").hex()}
    bad_time = {**h2, "time_ms": h2["time_ms"] + 5}
    for header, code in ((bad_link, "prev_hash_mismatch"), (bad_time, "bad_header_time")):
        entry = {**entries[1], "header": header,
                 "block_hash": header_from_json(header).hash().hex()}
        assert fails([entries[0], entry, entries[2]]) == code
    # a forged state_root in block 2 with every later link recomputed: the certificate
    # cannot tell (it signs the batch), the time and link rules pass; documented limit
    assert fails([entries[0], {**entries[1], "block_hash": "00" * 32}]) == "block_hash_mismatch"
    no_cert = copy.deepcopy(entries)
    no_cert[2]["commit_certificate"]["signatures"].pop()
    assert fails(no_cert) == "insufficient_quorum"
    with pytest.raises(ProofError) as info:
        HeaderChain(trust).verify_proof(
            build_proof(sample.chain, sample.genesis,
                        bytes.fromhex(next(iter(sample.attested)))))
    assert info.value.code == "header_unknown"


def test_headers_are_bounded_and_stop_at_the_tip(sample):
    assert [e["header"]["height"] for e in headers(sample.chain, 2, 900)] == [2, 3]
    assert headers(sample.chain, 4, 5) == []
    for lo, hi in ((0, 1), (3, 2), (1, 1001)):
        with pytest.raises(ValueError):
            headers(sample.chain, lo, hi)
    assert len(headers(sample.chain, 1, 1000)) == 3
    entry = headers(sample.chain, 1, 1)[0]
    header = BlockHeader(*sample.chain.block_record(1)["header"])  # type: ignore[index]
    assert entry["block_hash"] == header.hash().hex()


# --------------------------------------------------------------------------
# the file: any changed byte fails


def _substitute(ch: str) -> str:
    if ch in HEX:
        return HEX[(HEX.index(ch) + 1) % 16]
    if ch.isdigit():
        return "0"
    if ch.isalpha():
        return "Q" if ch != "Q" else "R"
    return "x" if ch != "x" else "y"


def test_every_changed_byte_of_the_proof_file_fails(sample, proof):
    trust = trust_from_genesis(sample.genesis)
    text = json.dumps(proof, indent=2) + "\n"
    assert verify_proof_bytes(text.encode(), trust).tx_id == proof["tx_id"]
    assert text.isascii()
    reasons: dict[str, int] = {}
    for pos, ch in enumerate(text):
        mutated = (text[:pos] + _substitute(ch) + text[pos + 1:]).encode()
        with pytest.raises(ProofError) as info:
            verify_proof_bytes(mutated, trust)
        reasons[info.value.code] = reasons.get(info.value.code, 0) + 1
    assert sum(reasons.values()) == len(text)
    assert {"not_json", "malformed", "bad_signature", "tx_id_mismatch",
            "block_hash_mismatch", "merkle_path_invalid"} <= set(reasons)


def test_proof_against_another_chains_genesis_fails(sample, proof):
    other = make_genesis("court-other-chain")
    with pytest.raises(ProofError) as info:
        verify_proof_bytes(json.dumps(proof).encode(), trust_from_genesis(other))
    assert info.value.code == "chain_id_mismatch"
    same_chain_other_genesis = trust_from_genesis(sample.genesis)
    moved = type(same_chain_other_genesis)(CHAIN_ID, same_chain_other_genesis.validators,
                                           sha256(b"another genesis"))
    with pytest.raises(ProofError) as info:
        verify_proof_bytes(json.dumps(proof).encode(), moved)
    assert info.value.code == "genesis_hash_mismatch"


def test_duplicate_json_keys_and_nan_are_not_json(sample, proof):
    trust = trust_from_genesis(sample.genesis)
    text = json.dumps(proof)
    dup = text.replace('"version": 1', '"version": 1, "version": 1', 1)
    for bad in (dup, text.replace('"version": 1', '"version": NaN'), "\ufeff" + text):
        with pytest.raises(ProofError) as info:
            verify_proof_bytes(bad.encode(), trust)
        assert info.value.code in {"not_json", "malformed"}


# --------------------------------------------------------------------------
# hostile JSON: a proof file comes from whoever hands it over, and a header
# list from whichever node a light client asks.  Every failure is a
# ProofError (pbftd verify-proof catches only that), never a traceback.


@pytest.mark.parametrize("body", [
    b"[" * 100_000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
], ids=["open", "closed", "objects"])
def test_deeply_nested_json_is_not_json(sample, body):
    with pytest.raises(ProofError) as info:
        verify_proof_bytes(body, trust_from_genesis(sample.genesis))
    assert info.value.code == "not_json"


def test_a_lone_surrogate_in_a_header_text_is_malformed(sample, proof):
    trust = trust_from_genesis(sample.genesis)
    for member in ("proposer", "chain_id"):
        bad = copy.deepcopy(proof)
        bad["header"][member] = "n\ud800"
        assert _reason(sample, bad) in {"malformed", "chain_id_mismatch"}
        text = json.dumps(bad)                  # ASCII: the surrogate as \ud800
        with pytest.raises(ProofError) as info:
            verify_proof_bytes(text.encode(), trust)
        assert info.value.code in {"not_json", "malformed", "chain_id_mismatch"}
    entries = copy.deepcopy(headers(sample.chain, 1, 1))
    entries[0]["header"]["proposer"] = "\udc00"
    with pytest.raises(ProofError) as info:
        HeaderChain(trust).extend(entries)
    assert info.value.code == "malformed"
