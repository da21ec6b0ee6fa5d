"""A real one-court daemon: attest, fetch the proof over HTTP, verify it offline,
follow the headers as a light client, and check the agencies' client helper."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from config import load_genesis
from rpc.client import RpcCallError, RpcClient, verify_attestation
from rpc.verify import HeaderChain, ProofError, trust_from_genesis
from tests.daemon.harness import PYTHON, Cluster, random_sha256


@pytest.fixture
def cluster(tmp_path: Path):
    with Cluster.running(tmp_path / "testnet", nodes=1) as c:
        yield c


def test_proof_from_a_running_node_verifies_offline(cluster: Cluster, tmp_path: Path) -> None:
    [court] = cluster.ids
    genesis = load_genesis(cluster.directory / "genesis.json")
    acked = [cluster.attest(court) for _ in range(2)]
    sha = cluster.acked[0]["sha256"]

    anonymous = RpcClient(cluster.court(court).rpc_url, timeout_s=10)
    proof = anonymous.get_proof(acked[0]["tx_id"])
    assert proof["tx_id"] == acked[0]["tx_id"]
    [proven] = verify_attestation(anonymous, sha, genesis)
    assert (proven.sha256, proven.court, proven.height) == (sha, court, acked[0]["height"])
    assert verify_attestation(anonymous, random_sha256(), genesis) == []

    with pytest.raises(RpcCallError) as info:
        anonymous.call("chain.getHeaders", {"from_height": 1, "to_height": 10})
    assert info.value.code == -32001
    reader = cluster.client(court)
    answer = reader.call("chain.getHeaders", {"from_height": 1, "to_height": 1000})
    light = HeaderChain(trust_from_genesis(genesis))
    assert light.extend(answer["headers"]) == answer["height"] >= acked[1]["height"]
    assert light.verify_proof(proof).tx_id == acked[0]["tx_id"]

    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof, indent=2))
    done = subprocess.run([PYTHON, "-m", "pbftd.cli", "verify-proof", str(proof_file),
                           "--genesis", str(cluster.directory / "genesis.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sha in done.stdout and "(2024)吉0102民初1234号" in done.stdout

    # a node serving another record's proof for this hash is caught by the helper
    class Lying(RpcClient):
        def get_proof(self, tx_id: str) -> dict:
            return super().get_proof(acked[1]["tx_id"])

    # With a token: the anonymous bucket (20 tokens a second, 40 at once) has
    # paid for two proofs (14 tokens each) and three verifications above.
    lying = Lying(cluster.court(court).rpc_url, token=reader.token, timeout_s=10)
    with pytest.raises(ProofError) as perr:
        verify_attestation(lying, sha, genesis)
    assert perr.value.code == "proof_mismatch"
