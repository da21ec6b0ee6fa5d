"""Disk full on a running node: it stops acknowledging, keeps serving reads,
says why, and resumes when space returns with nothing acknowledged lost.

Needs root (to mount a small tmpfs as the node's data directory); skips with
the reason otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pbftd.testnet import init_testnet
from rpc.client import RpcCallError, RpcClient

from .harness import fill_disk, free_base_port, wait_until


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    net = tmp_path / "net"
    files = init_testnet(net, nodes=1, base_port=free_base_port(2))
    court = files[0]
    data = court.folder / "data"
    data.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(data)],
                      capture_output=True).returncode != 0:
        pytest.skip("mount -t tmpfs failed (no privileges for mounts here)")
    config = court.config.read_text().replace(
        "ballast_bytes = 16777216", "ballast_bytes = 4194304").replace(
        "write_buffer_bytes = 8388608", "write_buffer_bytes = 1048576")
    court.config.write_text(config)
    with open(court.folder / "pbftd.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pbftd.cli", "run", "--config",
                                 str(court.config)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield court, data, proc
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["umount", "-l", str(data)], check=False)


def _health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url + "health", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_disk_full_stops_acks_keeps_reads_and_recovers(small_disk) -> None:
    court, data, proc = small_disk
    token = (court.folder / "admin.token").read_text().strip()
    client = RpcClient(court.rpc_url, token, timeout_s=30)
    wait_until(lambda: client.call("node.status"), 30, "the node to answer")

    def attest(i: int) -> dict:
        digest = hashlib.sha256(f"doc-{i}".encode()).hexdigest()
        return client.call("evidence.attest", {"sha256": digest, "kind": "efile_item",
                                               "case_no": f"(2024)吉0102执{i}号", "wait": True,
                                               "request_id": f"r{i}"})

    acked = [attest(0)]
    filler = data / "filler"
    fill_disk(filler)  # every free byte but the ballast's worth
    refused, i = None, 1
    while refused is None and i < 5_000:
        try:
            acked.append(attest(i))
        except RpcCallError as exc:
            refused = exc
        i += 1
    assert refused is not None, "the node kept acknowledging on a full disk"
    assert refused.code == -32010 and "cannot write" in refused.data["reason"]
    assert proc.poll() is None, "the node crashed instead of going read-only"
    _status, body = wait_until(lambda: (lambda h: h if h[0] == 503 else None)(
        _health(court.rpc_url)), 30, "/health to report the node cannot write")
    assert body["read_only"] is True and "space" in (body["read_only_reason"] or "")
    first = acked[0]
    found = RpcClient(court.rpc_url).call(
        "evidence.verify", {"sha256": hashlib.sha256(b"doc-0").hexdigest()})
    assert found["attested"] and found["records"][0]["tx_id"] == first["tx_id"]

    filler.unlink()
    again = wait_until(lambda: attest(10_000), 60, "writes to work again after freeing space")
    assert again["status"] == "committed"
    assert _health(court.rpc_url)[0] == 200
    for ack in acked:
        tx = client.call("chain.getTx", {"tx_id": ack["tx_id"]})
        assert tx["height"] == ack["height"]
