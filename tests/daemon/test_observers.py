"""4 validators + 1 observer from testnet init: blocks commit, the observer
follows to the same block hash, serves reads, and forwards writes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from pbftd.testnet import init_testnet
from rpc.client import RpcClient

from .harness import free_base_port, wait_until


@pytest.fixture
def network(tmp_path: Path):
    files = init_testnet(tmp_path / "net", nodes=4, observers=1, base_port=free_base_port(10))
    procs = []
    for court in files:
        with open(court.folder / "pbftd.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pbftd.cli", "run", "--config", str(court.config)],
                stdout=log, stderr=log))
    try:
        yield files
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _client(court) -> RpcClient:
    return RpcClient(court.rpc_url, (court.folder / "admin.token").read_text().strip(), 30)


def test_observer_follows_serves_reads_and_forwards_writes(network) -> None:
    validator, observer = _client(network[1]), _client(network[4])
    for c in (validator, observer):
        wait_until(lambda c=c: c.call("node.status"), 30, "nodes to answer")
    assert observer.call("node.status")["role"] == "observer"
    acked = [validator.call("evidence.attest", {
        "sha256": hashlib.sha256(f"doc{i}".encode()).hexdigest(), "kind": "judgment",
        "case_no": f"(2023)吉0102民初{i}号", "wait": True}) for i in range(20)]
    height = acked[-1]["height"]

    def same_block():
        st = observer.call("node.status")
        if st["height"] < height:
            return None
        return observer.call("chain.getBlock", {"height": height})["block_hash"]
    observed = wait_until(same_block, 30, "the observer to reach the validators' height")
    assert observed == validator.call("chain.getBlock", {"height": height})["block_hash"]
    found = RpcClient(network[4].rpc_url).call(
        "evidence.verify", {"sha256": hashlib.sha256(b"doc7").hexdigest()})
    assert found["attested"] and found["records"][0]["court"] == network[1].court_id

    via_observer = observer.call("evidence.attest", {
        "sha256": hashlib.sha256(b"from an observer court").hexdigest(), "kind": "ruling",
        "case_no": "(2023)吉01执1号", "wait": True})
    assert via_observer["status"] == "committed"
    tx = wait_until(lambda: validator.call("chain.getTx", {"tx_id": via_observer["tx_id"]}),
                     30, "the validator to have the observer's transaction")
    assert tx["tx"]["origin"] == network[4].court_id
    assert observer.call("node.status")["view"] == validator.call("node.status")["view"]
