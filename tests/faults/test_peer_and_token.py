"""Scenario 17: an unknown peer key, and a token without the scope.

A real 4-court testnet.  Peers that dial a validator with a key genesis does
not list (under a made-up id, and under a real validator's id) run the
daemon's own p2p ``Mesh`` code, so the refusal tested is the handshake's;
the validator logs ``p2p_handshake_failed`` and keeps its links, view and
chain.  Bearer tokens declared in the court's config.toml (only their SHA-256
is stored) with read-only and ``agency:<id>`` scopes call every write method
and get -32001 "forbidden"; nothing is attested, and no block is made.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config import generate_token, load_genesis
from p2p import Mesh, MeshConfig, PeerInfo
from p2p.config import raw_public_key
from rpc.client import RpcCallError, RpcClient
from tests.daemon.harness import Cluster, log_events, random_sha256, wait_until
from tests.faults.invariants import check_all

FORBIDDEN = -32001
SETTLE_S = 2.0
WRITES_WITH_SCOPE = [
    "evidence.attest", "evidence.attestBatch", "case.register",
    "case.issueEffectivenessCertificate", "case.confirmPerformance", "case.signApplication",
    "case.transferToEnforcement", "enforcement.file", "enforcement.record",
]


def _add_tokens(cluster: Cluster, court_id: str, grants: dict[str, list[str]]) -> dict[str, str]:
    """Declare tokens in the court's config.toml; returns name -> token."""
    config = cluster.court(court_id).config
    tokens, text = {}, config.read_text()
    for name, scopes in grants.items():
        token, digest = generate_token()
        tokens[name] = token
        text += (f'\n[[rpc.tokens]]\nname = "{name}"\nsha256 = "{digest}"\n'
                 f"scopes = {json.dumps(scopes)}\n")
    config.write_text(text)
    return tokens


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One testnet for both checks (each leaves the chain as it found it)."""
    c = Cluster.create(tmp_path_factory.mktemp("scenario17") / "testnet", nodes=4)
    c.tokens = _add_tokens(c, c.ids[1], {  # type: ignore[attr-defined]
        "reader": ["evidence:read"],
        "agency": ["agency:gongan-jl"],
        "cases": ["case:read", "case:write"],
    })
    with c.serving():
        yield c


def _snapshot(cluster: Cluster) -> dict[str, tuple[Any, ...]]:
    return {i: (s["height"], s["last_block_hash"], s["view"], s["stable_checkpoint"],
                tuple(s["peers"]))
            for i, s in cluster.statuses().items()}


def _intruder(cluster: Cluster, node_id: str, target: str) -> tuple[MeshConfig, Mesh]:
    genesis = load_genesis(cluster.directory / "genesis.json")
    court = genesis.court(target)
    host, _, port = court.p2p_address.rpartition(":")
    key = Ed25519PrivateKey.generate()  # listed nowhere
    cfg = MeshConfig(chain_id=genesis.chain_id, node_id=node_id, private_key=key,
                     listen_host="127.0.0.1", listen_port=0,
                     peers=(PeerInfo(target, bytes.fromhex(court.public_key), host, int(port)),),
                     tls=True, reconnect_backoff_min_ms=200, reconnect_backoff_max_ms=400)
    assert raw_public_key(key).hex() not in {c.public_key for c in genesis.courts}
    return cfg, Mesh(cfg)


def _dial_for(mesh: Mesh, seconds: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            await trio.sleep(seconds)
            stats = dict(mesh.stats)
            stats["connected"] = sorted(mesh.connected_peers())
            nursery.cancel_scope.cancel()
        return stats
    return trio.run(main)


def test_unknown_peer_key_is_refused_without_state_change(
        cluster: Cluster, figures: dict[str, Any]) -> None:
    """17a. Unknown peer key refused"""
    target = cluster.ids[1]
    log_offset = cluster.log_path(target).stat().st_size
    before = _snapshot(cluster)
    refused = {}
    for claimed in ("mallory", cluster.ids[2]):  # a made-up id; a real one, wrong key
        _cfg, mesh = _intruder(cluster, claimed, target)
        stats = _dial_for(mesh, 3.0)
        assert stats["connected"] == [] and stats["links_established"] == 0, stats
        refused[claimed] = stats["reconnects"] + 1
    events = [e for e in log_events(cluster.log_path(target), log_offset)
              if e.get("event") == "p2p_handshake_failed"]
    reasons = [str(e.get("reason")) for e in events]
    assert any("unknown node_id 'mallory'" in r for r in reasons), reasons
    assert any(f"bad signature for '{cluster.ids[2]}'" in r for r in reasons), reasons
    time.sleep(SETTLE_S)
    after = _snapshot(cluster)
    assert after == before, (before, after)
    figures.update(dial_attempts=sum(refused.values()), refusals_logged=len(events))
    figures.update(check_all(cluster, cluster.ids, []))


def test_token_without_the_scope_is_refused_without_state_change(
        cluster: Cluster, figures: dict[str, Any]) -> None:
    """17b. Token without the scope refused"""
    court = cluster.court(cluster.ids[1])
    tokens = cluster.tokens  # type: ignore[attr-defined]
    before = _snapshot(cluster)
    sha = random_sha256()
    attempts = 0
    for name in ("reader", "agency", "cases"):
        client = RpcClient(court.rpc_url, tokens[name], timeout_s=10)
        for method in WRITES_WITH_SCOPE:
            if name == "cases" and method.startswith("case."):
                continue  # this token holds case:write
            params: dict[str, Any] = {"sha256": sha, "kind": "judgment",
                                      "case_no": "(2024)吉0102民初1号", "wait": True}
            with pytest.raises(RpcCallError) as info:
                client.call(method, params)
            attempts += 1
            assert info.value.code == FORBIDDEN, (name, method, info.value)
            assert "forbidden" in str(info.value), (name, method, info.value)
    # agency.report needs no fixed scope but acts only for the token's own agency
    agency = RpcClient(court.rpc_url, tokens["agency"], timeout_s=10)
    with pytest.raises(RpcCallError) as info:
        agency.call("agency.report", {"order_id": "x", "result": "done",
                                      "agency": "another-agency"})
    attempts += 1
    assert info.value.code == FORBIDDEN, info.value
    # a token nobody declared is 401/-32001 "unauthorized"
    with pytest.raises(RpcCallError) as info:
        RpcClient(court.rpc_url, "not-a-token", timeout_s=10).call("evidence.attest", {})
    assert info.value.code == FORBIDDEN
    time.sleep(SETTLE_S)
    assert _snapshot(cluster) == before
    for i in cluster.ids:
        assert cluster.call(i, "evidence.verify", {"sha256": sha})["attested"] is False
    # the same court still accepts the write with a token that has the scope
    cluster.attest(court.court_id)
    figures.update(refused_calls=attempts)
    wait_until(lambda: len({s["height"] for s in cluster.statuses().values()}) == 1, 30,
               "heights to agree")
