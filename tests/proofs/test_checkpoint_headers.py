"""Stable checkpoint certificates served with headers certify whole headers:
a light client then trusts state_root and prev_hash too, not only the
transactions a commit certificate covers."""

import copy
from pathlib import Path

import pytest

from config import load_genesis
from pbftd.core.chain import BlockHeader
from rpc.verify import HeaderChain, ProofError, header_from_json, trust_from_genesis
from tests.daemon.harness import Cluster, wait_until

CHECKPOINT = 16  # testnet genesis: checkpoint_interval_blocks


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with Cluster.running(tmp_path_factory.mktemp("ckpt") / "testnet", nodes=4) as c:
        court = c.ids[1]
        while c.status(court)["height"] < CHECKPOINT + 2:
            c.attest(court)
        yield c


def _headers(cluster: Cluster, to: int) -> list[dict]:
    court = cluster.ids[2]
    wait_until(lambda: cluster.status(court)["stable_checkpoint"] >= CHECKPOINT, 30,
               "a stable checkpoint")
    return cluster.call(court, "chain.getHeaders", {"from_height": 1, "to_height": to})["headers"]


def _trust(cluster: Cluster):
    return trust_from_genesis(load_genesis(cluster.directory / "genesis.json"))


def test_light_client_certifies_every_header_up_to_a_checkpoint(cluster) -> None:
    entries = _headers(cluster, CHECKPOINT + 1)
    assert "checkpoint" in entries[CHECKPOINT - 1]
    assert all("checkpoint" not in e for e in entries[: CHECKPOINT - 1])
    light = HeaderChain(_trust(cluster))
    light.extend(entries)
    assert light.certified_height == CHECKPOINT


def test_a_forged_state_root_below_a_checkpoint_is_caught(cluster) -> None:
    entries = copy.deepcopy(_headers(cluster, CHECKPOINT))
    forged = entries[CHECKPOINT - 5]
    forged["header"]["state_root"] = "00" * 32
    forged["block_hash"] = header_from_json(forged["header"]).hash().hex()
    # Re-link every later header too, as a consistent forger would, up to the
    # checkpoint: its quorum signature over the real hash still catches it.
    for prev, entry in zip(entries[CHECKPOINT - 5:], entries[CHECKPOINT - 4:], strict=False):
        entry["header"]["prev_hash"] = prev["block_hash"]
        entry["block_hash"] = BlockHeader(*header_from_json(entry["header"]).fields()).hash().hex()
    with pytest.raises(ProofError) as caught:
        HeaderChain(_trust(cluster)).extend(entries)
    assert caught.value.code == "checkpoint_mismatch"


def test_a_checkpoint_with_a_repeated_signer_is_refused(cluster) -> None:
    entries = copy.deepcopy(_headers(cluster, CHECKPOINT))
    sigs = entries[CHECKPOINT - 1]["checkpoint"]["signatures"]
    sigs[1] = dict(sigs[0])
    with pytest.raises(ProofError) as caught:
        HeaderChain(_trust(cluster)).extend(entries)
    assert caught.value.code == "duplicate_signer"


def test_headers_survive_restart(cluster, tmp_path: Path) -> None:
    entries = _headers(cluster, CHECKPOINT)
    court = cluster.ids[2]
    cluster.stop(court)
    cluster.start(court)
    cluster.wait_ready([court])
    again = cluster.call(court, "chain.getHeaders", {"from_height": 1, "to_height": CHECKPOINT})
    assert again["headers"][CHECKPOINT - 1]["checkpoint"] == entries[CHECKPOINT - 1]["checkpoint"]
