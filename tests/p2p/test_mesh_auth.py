"""Nobody can take another court's identity or join from another chain."""

from __future__ import annotations

import secrets

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2p import Mesh
from p2p.wire import Hello, encode_hello
from tests.p2p.harness import (
    CHAIN,
    Node,
    cluster_configs,
    config,
    free_port,
    nodes,
    raw_peer,
    receive,
    run,
    start,
    wait_all_connected,
    wait_closed,
    watch_logs,
)


def test_impostor_mesh_with_wrong_key_is_refused_and_never_delivers() -> None:
    async def body() -> None:
        real = nodes("a", "b", "c")
        meshes = {i: Mesh(cfg) for i, cfg in cluster_configs(real).items()}
        fake_b = Node("b", Ed25519PrivateKey.generate(), free_port())
        async with trio.open_nursery() as nursery:
            for mesh in meshes.values():
                await start(nursery, mesh)
            await wait_all_connected(meshes)
            with watch_logs() as logs:
                impostor = Mesh(config(fake_b, [real["a"], real["c"]]))
                impostor.broadcast(b"forged")
                await start(nursery, impostor)
                for victim in ("a", "c"):
                    entry = await logs.wait_for(event="p2p_handshake_failed", node_id=victim)
                    assert entry["reason"] == "bad signature for 'b'"
                    assert meshes[victim].stats["handshakes_failed"] >= 1
            # Genuine links are untouched and the forged frame reached no inbox.
            for i, mesh in meshes.items():
                assert mesh.connected_peers() == {"a", "b", "c"} - {i}
            meshes["b"].send("a", b"genuine b")
            meshes["c"].send("a", b"genuine c")
            got = set(await receive(meshes["a"], 2))
            assert got == {("b", b"genuine b"), ("c", b"genuine c")}
            for mesh in meshes.values():
                assert mesh.inbox.statistics().current_buffer_used == 0
            nursery.cancel_scope.cancel()

    run(body)


async def _refused_hello(target: Node, hello: Hello) -> None:
    """Send a hand-made HELLO and wait until the target hangs up."""
    async with raw_peer(target, "raw", Ed25519PrivateKey.generate(),
                        authenticate=False) as ws:
        await ws.send_message(encode_hello(hello))
        await wait_closed(ws)


def _hello(node_id: str, chain_id: str = CHAIN) -> Hello:
    return Hello(chain_id=chain_id, node_id=node_id, nonce=secrets.token_bytes(32))


def test_claims_of_own_id_unknown_id_and_wrong_chain_are_refused() -> None:
    async def body() -> None:
        n = nodes("a", "b")
        b = Mesh(config(n["b"], [n["a"]]))
        async with trio.open_nursery() as nursery:
            await start(nursery, b)
            with watch_logs() as logs:
                await _refused_hello(n["b"], _hello("b"))
                await _refused_hello(n["b"], _hello("zz"))
                await _refused_hello(n["b"], _hello("a", chain_id="other-chain"))
            reasons = [e["reason"] for e in logs.matching(event="p2p_handshake_failed")]
            assert reasons == ["peer claims our own node_id", "unknown node_id 'zz'",
                               "wrong chain_id 'other-chain'"]
            assert b.stats["handshakes_failed"] == 3
            assert b.connected_peers() == set()
            nursery.cancel_scope.cancel()

    run(body)


def test_mesh_on_another_chain_is_refused_both_ways() -> None:
    async def body() -> None:
        n = nodes("a", "b")
        a = Mesh(config(n["a"], [n["b"]]))
        b_other = Mesh(config(n["b"], [n["a"]], chain_id="another-chain"))
        async with trio.open_nursery() as nursery:
            with watch_logs() as logs:
                await start(nursery, a)
                await start(nursery, b_other)
                for node_id in ("a", "b"):
                    entry = await logs.wait_for(event="p2p_handshake_failed", node_id=node_id)
                    assert entry["reason"].startswith("wrong chain_id")
            assert a.connected_peers() == set() and b_other.connected_peers() == set()
            nursery.cancel_scope.cancel()

    run(body)


def test_garbage_and_silence_during_handshake_are_refused() -> None:
    async def body() -> None:
        n = nodes("a", "b")
        a = Mesh(config(n["a"], [n["b"]], handshake_timeout_ms=300))
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            with watch_logs() as logs:
                async with raw_peer(n["a"], "b", n["b"].key, authenticate=False) as ws:
                    await ws.send_message(b"\xa1\x61t\x65hello\xff")  # trailing garbage
                    await wait_closed(ws)
                async with raw_peer(n["a"], "b", n["b"].key, authenticate=False) as ws:
                    await wait_closed(ws)  # we say nothing; a's deadline fires
            reasons = [e["reason"] for e in logs.matching(event="p2p_handshake_failed")]
            assert len(reasons) == 2
            assert "CBOR" in reasons[0]
            assert reasons[1] == "TooSlowError"
            assert a.stats["handshakes_failed"] == 2
            nursery.cancel_scope.cancel()

    run(body)
