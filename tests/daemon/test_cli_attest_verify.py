"""pbftd attest FILE and pbftd verify FILE against real daemons: the file is
hashed locally, and verify proves every record with the genesis keys."""

import subprocess
import sys
from pathlib import Path

import pytest

from .harness import Cluster


@pytest.fixture
def cluster(tmp_path: Path):
    with Cluster.running(tmp_path / "testnet", nodes=4) as c:
        yield c


def _pbftd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pbftd.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_attest_then_verify_on_another_court(cluster, tmp_path: Path) -> None:
    doc = tmp_path / "judgment.pdf"
    doc.write_bytes(b"%PDF fake judgment " * 1000)
    first, other = cluster.ids[1], cluster.ids[3]
    token = (cluster.court(first).folder / "admin.token").read_text().strip()
    done = _pbftd("attest", str(doc), "--kind", "judgment", "--case", "(2020)吉0102民初1234号",
                  "--rpc", cluster.court(first).rpc_url, "--token", token, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tx_id = next(line.split()[2] for line in done.stdout.splitlines() if line.startswith("tx id"))
    genesis = str(cluster.directory / "genesis.json")
    shown = _pbftd("verify", str(doc), "--rpc", cluster.court(other).rpc_url,
                   "--genesis", genesis, cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert tx_id in shown.stdout and "(2020)吉0102民初1234号" in shown.stdout
    assert "1 attestation(s)" in shown.stdout

    unknown = tmp_path / "never-attested.txt"
    unknown.write_text("not on chain")
    missing = _pbftd("verify", str(unknown), "--rpc", cluster.court(other).rpc_url,
                     "--genesis", genesis, cwd=tmp_path)
    assert missing.returncode == 1 and "not attested" in missing.stdout
