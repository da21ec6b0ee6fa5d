"""docs/PROOFS.md's worked example is the proof the test chain produces."""

from __future__ import annotations

from pathlib import Path

from pbftd.core import codec
from pbftd.core.merkle import leaf_hash
from pbftd.proofcli import format_attestation
from pbftd.proofs import build_proof
from rpc.verify import header_from_json, trust_from_genesis, verify_proof

from .chainfix import build_sample, open_chain

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROOFS.md"


def test_worked_example_matches_the_generated_proof(tmp_path: Path) -> None:
    text = DOC.read_text()
    with open_chain(tmp_path / "node") as tc:
        build_sample(tc)
        tx_id = [t for t, a in tc.attested.items()
                 if a[4] == 2 and a[3] == "jl-cc-nanguan-basic"][1]
        proof = build_proof(tc.chain, tc.genesis, bytes.fromhex(tx_id))
        trust = trust_from_genesis(tc.genesis)
        result = verify_proof(proof, trust.validators, trust.chain_id,
                              genesis_hash=trust.genesis_hash)
        lines = format_attestation(result, tc.genesis)
    assert proof is not None
    header = header_from_json(proof["header"])
    cert = proof["commit_certificate"]
    full = [proof["tx_id"], proof["header"]["tx_root"], cert["digest"], proof["block_hash"],
            result.sha256]
    short = [leaf_hash(bytes.fromhex(proof["tx"]["tx_hex"])).hex()[:16],
             *(p[:16] for p in proof["merkle"]["path"]),
             cert["signatures"][0]["sig_hex"][:16], cert["signatures"][0]["sig_hex"][-8:],
             proof["validators"][0]["public_key"][:16], proof["header"]["prev_hash"][:8],
             proof["header"]["state_root"][:8]]
    for value in full + short:
        assert value in text, value
    signed = bytes.fromhex(cert["signatures"][0]["signed_hex"])
    assert " ".join(text.split("COMMIT (spc)")[1].split("=")[0].split()).replace(" ", "") \
        .replace("07296148…", cert["digest"]) == signed.hex()
    batch = codec.encode(["pbftd/1", "batch", header.chain_id, header.height, header.view,
                          header.proposer, header.batch_time_ms, header.tx_root]).hex()
    doc_batch = "".join(text.split("batch CBOR")[1].split("=")[0].split())
    assert doc_batch.replace("53ad2143…", proof["header"]["tx_root"]) == batch
    for line in lines:
        if not line.startswith(("chain", "tx ")):
            assert line in text, line
