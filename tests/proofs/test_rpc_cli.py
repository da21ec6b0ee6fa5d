"""evidence.getProof and chain.getHeaders through the Dispatcher, and the
``pbftd verify-proof`` command as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pbftd.proof_methods import register_proof_methods
from rpc.jsonrpc import Dispatcher
from rpc.verify import trust_from_genesis, verify_proof
from tests.rpc.fakes import READER, call, request

from .chainfix import CHAIN_ID, SampleChain, build_sample, make_genesis, open_chain

CLI = [sys.executable, "-m", "pbftd.cli", "verify-proof"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleChain]:
    with open_chain(tmp_path_factory.mktemp("rpc-chain") / "node") as tc:
        build_sample(tc)
        yield tc


@pytest.fixture(scope="module")
def dispatcher(sample: SampleChain) -> Dispatcher:
    d = Dispatcher()
    register_proof_methods(d, SimpleNamespace(chain=sample.chain, genesis=sample.genesis))
    return d


def _some_tx(sample: SampleChain) -> str:
    return next(iter(sample.attested))


# --------------------------------------------------------------------------
# RPC


def test_get_proof_is_public_and_verifies(dispatcher, sample):
    tx_id = _some_tx(sample)
    got = call(dispatcher, request("evidence.getProof", {"tx_id": tx_id.upper()}))
    proof = got["result"]
    result = verify_proof(proof, trust_from_genesis(sample.genesis).validators, CHAIN_ID,
                          genesis_hash=sample.genesis.genesis_hash())
    assert result.tx_id == tx_id


def test_get_proof_unknown_and_invalid_ids(dispatcher):
    got = call(dispatcher, request("evidence.getProof", {"tx_id": "ab" * 32}))
    assert got["error"]["code"] == -32004
    assert got["error"]["data"] == {"tx_id": "ab" * 32}
    for bad in ({"tx_id": "ab"}, {"tx_id": "zz" * 32}, {}, {"tx_id": "ab" * 32, "x": 1}):
        got = call(dispatcher, request("evidence.getProof", bad))
        assert got["error"]["code"] == -32602, bad


def test_get_headers_needs_evidence_read(dispatcher):
    got = call(dispatcher, request("chain.getHeaders", {"from_height": 1, "to_height": 2}))
    assert got["error"]["code"] == -32001
    assert got["error"]["data"]["required_scope"] == "evidence:read"


def test_get_headers_returns_certified_headers(dispatcher, sample):
    got = call(dispatcher, request("chain.getHeaders", {"from_height": 1, "to_height": 1000}),
               READER)
    result = got["result"]
    assert result["height"] == 3
    assert [e["header"]["height"] for e in result["headers"]] == [1, 2, 3]
    assert result["headers"][0]["header"]["prev_hash"] == sample.genesis.genesis_hash_hex()
    for entry in result["headers"]:
        assert len(entry["commit_certificate"]["signatures"]) == 3


@pytest.mark.parametrize(("params", "member", "words"), [
    ({"from_height": 5, "to_height": 4}, "to_height", "below"),
    ({"from_height": 1, "to_height": 1001}, "to_height", "at most 1000"),
    ({"from_height": 0, "to_height": 3}, "from_height", ">= 1"),
    ({"from_height": 1}, "to_height", "required"),
    ({"from_height": 1, "to_height": 1.5}, "to_height", "integer"),
])
def test_get_headers_invalid_ranges_name_the_problem(dispatcher, params, member, words):
    got = call(dispatcher, request("chain.getHeaders", params), READER)
    assert got["error"]["code"] == -32602
    assert got["error"]["data"]["member"] == member
    assert words in got["error"]["data"]["reason"]


def test_discover_describes_both_methods(dispatcher):
    doc = call(dispatcher, request("rpc.discover"))["result"]
    methods = {m["name"]: m for m in doc["methods"]}
    for name in ("evidence.getProof", "chain.getHeaders"):
        assert methods[name]["result"]["schema"]["type"] == "object"
        assert methods[name]["params"]
    proof_schema = methods["evidence.getProof"]["result"]["schema"]
    assert set(proof_schema["required"]) == {
        "version", "chain_id", "genesis_hash", "tx", "tx_id", "merkle", "header", "block_hash",
        "commit_certificate", "validators"}


# --------------------------------------------------------------------------
# CLI


def _files(sample: SampleChain, tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    tx_id = next(t for t, a in sample.attested.items() if a[4] == 2)
    d = Dispatcher()
    register_proof_methods(d, SimpleNamespace(chain=sample.chain, genesis=sample.genesis))
    proof = call(d, request("evidence.getProof", {"tx_id": tx_id}))["result"]
    proof_file, genesis_file = tmp_path / "proof.json", tmp_path / "genesis.json"
    proof_file.write_text(json.dumps(proof, indent=2))
    genesis_file.write_text(json.dumps(sample.genesis.to_dict(), ensure_ascii=False, indent=2))
    return proof_file, genesis_file, proof


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_cli_valid_proof_prints_what_is_proven(sample, tmp_path):
    proof_file, genesis_file, proof = _files(sample, tmp_path)
    done = _run(str(proof_file), "--genesis", str(genesis_file))
    assert done.returncode == 0, done.stderr
    sha, kind, case_no, court, height = sample.attested[proof["tx_id"]]
    out = done.stdout
    for text in (sha, kind, case_no, court, "吉林省高级人民法院" if court == "jl-high" else court,
                 f"height {height}", "Asia/Shanghai", "UTC", proof["tx_id"]):
        assert text in out, (text, out)
    # 2026-01-01 00:00:02 UTC is 08:00:02 in Shanghai (block 2: genesis + 2 s)
    assert "2026-01-01 08:00:02.000 Asia/Shanghai (2026-01-01 00:00:02.000 UTC)" in out
    assert done.stderr == ""


def test_cli_tampered_proof_exits_2_with_one_line(sample, tmp_path):
    proof_file, genesis_file, proof = _files(sample, tmp_path)
    text = proof_file.read_text()
    sig = proof["commit_certificate"]["signatures"][1]["sig_hex"]
    cases = {
        "bad_signature": text.replace(sig, sig[:10] + ("0" if sig[10] != "0" else "1")
                                      + sig[11:]),
        "tx_id_mismatch": text.replace(proof["tx_id"], "0" + proof["tx_id"][1:]),
        "not_json": text[:-1],
    }
    for code, tampered in cases.items():
        assert tampered != text
        proof_file.write_text(tampered)
        done = _run(str(proof_file), "--genesis", str(genesis_file))
        assert done.returncode == 2, (code, done)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"proof invalid: {code}"), lines
        assert done.stdout == ""


def test_cli_other_genesis_is_an_invalid_proof(sample, tmp_path):
    proof_file, _genesis_file, _ = _files(sample, tmp_path)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(make_genesis("court-other").to_dict()))
    done = _run(str(proof_file), "--genesis", str(other))
    assert done.returncode == 2
    assert done.stderr.startswith("proof invalid: chain_id_mismatch")


def test_cli_unreadable_files_exit_1_with_one_line(sample, tmp_path):
    proof_file, genesis_file, _ = _files(sample, tmp_path)
    bad_genesis = tmp_path / "bad-genesis.json"
    bad_genesis.write_text("{}")
    for args in ((str(tmp_path / "missing.json"), "--genesis", str(genesis_file)),
                 (str(proof_file), "--genesis", str(tmp_path / "missing-genesis.json")),
                 (str(proof_file), "--genesis", str(bad_genesis))):
        done = _run(*args)
        assert done.returncode == 1, (args, done)
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
