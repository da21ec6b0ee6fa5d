"""Happy-path behaviour of the mesh over real loopback sockets."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from p2p import FRAMES, Mesh, MeshConfig
from p2p.link import CLOSE_DUPLICATE
from p2p.wire import GOODBYE, PING, encode_batch
from tests.p2p.harness import (
    cluster_configs,
    config,
    nodes,
    raw_peer,
    receive,
    run,
    start,
    start_connected,
    wait_all_connected,
    wait_closed,
)


def _frames(sender: str, receiver: str, count: int) -> list[bytes]:
    # Varied sizes, including empty and 1 MiB, so framing bugs show up.
    sizes = [0, 1, 23, 24, 255, 256, 65535, 65536, 1 << 20]
    return [f"{sender}>{receiver}#{k}|".encode() + bytes([k % 251]) * sizes[k % len(sizes)]
            for k in range(count)]


def test_three_tls_meshes_connect_and_deliver_in_order() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b", "c")
        meshes = {i: Mesh(cfg, random=random.Random(7)) for i, cfg in
                  cluster_configs(all_nodes).items()}
        async with trio.open_nursery() as nursery:
            for mesh in meshes.values():
                await start(nursery, mesh)
            await wait_all_connected(meshes)
            for i, mesh in meshes.items():
                assert mesh.connected_peers() == set(meshes) - {i}

            sent = {(i, j): _frames(i, j, 30) for i in meshes for j in meshes if i != j}
            for (i, j), frames in sent.items():
                assert all(meshes[i].send(j, f) for f in frames)
            for j, mesh in meshes.items():
                got = await receive(mesh, 30 * 2)
                for i in set(meshes) - {j}:
                    assert [f for src, f in got if src == i] == sent[(i, j)]

            meshes["b"].broadcast(b"to-everyone")
            for j in ("a", "c"):
                assert await receive(meshes[j], 1) == [("b", b"to-everyone")]
            assert meshes["b"].stats["frames_dropped_queue_full"] == 0
            nursery.cancel_scope.cancel()

    run(body)


def test_idle_links_stay_up_on_heartbeats() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b")
        meshes = {i: Mesh(cfg) for i, cfg in cluster_configs(all_nodes).items()}
        async with trio.open_nursery() as nursery:
            for mesh in meshes.values():
                await start(nursery, mesh)
            await wait_all_connected(meshes)
            # The idle period is what is under test: three dead-peer windows.
            await trio.sleep(3 * 0.4)
            for mesh in meshes.values():
                stats = mesh.stats
                assert stats["links_dead"] == 0
                assert stats["messages_sent"] >= 5  # PINGs kept the link alive
                # No link was made again while idle. Both sides may dial at
                # start; the duplicate is then retired (and counted), which
                # once made this 2 in CI with no link ever lost.
                assert 1 <= stats["links_established"] <= 1 + stats["links_duplicate_closed"]
                assert stats["links_duplicate_closed"] <= 1
            assert all(len(mesh.connected_peers()) == 1 for mesh in meshes.values())
            nursery.cancel_scope.cancel()

    run(body)


def test_plaintext_requires_plaintext_ok() -> None:
    n = nodes("a", "b")
    with pytest.raises(ValueError, match="plaintext_ok"):
        config(n["a"], [n["b"]], tls=False)


def test_a_message_s_frames_arrive_as_one_inbox_item() -> None:
    """Frames queued together leave as one websocket message and reach the
    consumer as one item: one channel operation and one wake-up, not one per
    frame (the runtime takes them on its own channel, Mesh.run(deliver_to))."""
    async def body() -> None:
        all_nodes = nodes("a", "b")
        async with trio.open_nursery() as nursery:
            meshes = await start_connected(nursery, cluster_configs(all_nodes))
            frames = [b"one", b"two", b"three"]
            for frame in frames:  # queued before the writer runs: one batch
                assert meshes["a"].send("b", frame)
            assert await meshes["b"].inbox.receive() == (FRAMES, "a", frames)
            assert meshes["b"].stats["inbox_bytes"]["a"] == sum(map(len, frames))
            meshes["b"].release("a", sum(map(len, frames)))
            assert meshes["b"].stats["inbox_bytes"]["a"] == 0
            nursery.cancel_scope.cancel()

    run(body)


def test_plaintext_links_work_with_loud_warning() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b")
        cfgs = cluster_configs(all_nodes, tls=False, plaintext_ok=True)
        with capture_logs() as logs:
            meshes = {i: Mesh(cfg) for i, cfg in cfgs.items()}
        assert [e["log_level"] for e in logs if e["event"] == "p2p_plaintext_links"] == [
            "warning", "warning"]
        async with trio.open_nursery() as nursery:
            for mesh in meshes.values():
                await start(nursery, mesh)
            await wait_all_connected(meshes)
            assert meshes["a"].send("b", b"hello in clear")
            assert await receive(meshes["b"], 1) == [("a", b"hello in clear")]
            nursery.cancel_scope.cancel()

    run(body)


def test_burst_is_coalesced_into_few_messages_and_unpacked_in_order() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b")
        cfgs = cluster_configs(all_nodes, heartbeat_interval_ms=1000, peer_dead_after_ms=5000)
        async with trio.open_nursery() as nursery:
            meshes = await start_connected(nursery, cfgs)
            before = meshes["a"].stats["messages_sent"]
            frames = [b"small-%d" % k for k in range(600)]
            for frame in frames:  # one burst: no checkpoint between sends
                assert meshes["a"].send("b", frame)
            got = await receive(meshes["b"], len(frames))
            assert got == [("a", f) for f in frames]
            messages = meshes["a"].stats["messages_sent"] - before
            # 600 frames at batch_frames_max=256 need 3 messages; allow PINGs.
            assert messages <= 5, messages
            await trio.testing.wait_all_tasks_blocked()  # reader counts after delivery
            assert meshes["b"].stats["frames_received"] == 600
            nursery.cancel_scope.cancel()

    run(body)


def test_batches_respect_frame_bytes_max() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b")
        cfgs = cluster_configs(all_nodes, frame_bytes_max=1000)
        async with trio.open_nursery() as nursery:
            meshes = await start_connected(nursery, cfgs)
            frames = [bytes([k]) * 400 for k in range(10)]
            assert all(meshes["a"].send("b", f) for f in frames)
            assert not meshes["a"].send("b", b"x" * 1001)
            assert await receive(meshes["b"], 10) == [("a", f) for f in frames]
            stats = meshes["a"].stats
            assert stats["frames_dropped_oversize"] == 1
            assert stats["messages_oversize"] == 0 and meshes["b"].stats["messages_oversize"] == 0
            nursery.cancel_scope.cancel()

    run(body)


def test_simultaneous_dials_leave_one_agreed_link() -> None:
    async def body() -> None:
        for _ in range(3):
            all_nodes = nodes("a", "b")
            meshes = {i: Mesh(cfg) for i, cfg in cluster_configs(all_nodes).items()}
            async with trio.open_nursery() as nursery:
                # Both listening before either dials makes duplicates likely.
                for mesh in meshes.values():
                    nursery.start_soon(mesh.run)
                await wait_all_connected(meshes)
                # The acceptor adopts a link one message before the dialer does,
                # so for a moment each side may hold a different link (frames on
                # the losing one are drained, not lost); they must converge.
                with trio.fail_after(5):
                    while True:
                        a_links = meshes["a"].stats["links"]
                        b_links = meshes["b"].stats["links"]
                        duplicates = sum(m.stats["links_duplicate_closed"]
                                         for m in meshes.values())
                        agreed = a_links.get("b") == b_links.get("a") is not None
                        if agreed and (not duplicates or a_links["b"] == "a"):
                            break
                        await trio.sleep(0.01)
                if duplicates:
                    assert a_links["b"] == "a"  # the smaller node id's dial wins
                assert meshes["a"].send("b", b"after-dedup")
                assert await receive(meshes["b"], 1) == [("a", b"after-dedup")]
                nursery.cancel_scope.cancel()

    run(body)


def test_observer_in_extra_known_may_connect_but_is_not_dialed() -> None:
    async def body() -> None:
        n = nodes("a", "obs")
        a_cfg = config(n["a"], [], extra_known={"obs": n["obs"].public})
        obs_cfg = config(n["obs"], [n["a"]])
        a, obs = Mesh(a_cfg), Mesh(obs_cfg)
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            await start(nursery, obs)
            await a.wait_connected("obs")
            assert a.stats["links"] == {"obs": "obs"}
            assert a.send("obs", b"state for observer")
            assert await receive(obs, 1) == [("a", b"state for observer")]
            a.broadcast(b"validators only")
            assert a.stats["queue_depth"]["obs"] == 0
            nursery.cancel_scope.cancel()

    run(body)


def test_config_rejects_own_id_as_peer() -> None:
    n = nodes("a")
    with pytest.raises(ValueError, match="own node_id"):
        MeshConfig(chain_id="x", node_id="a", private_key=n["a"].key, listen_host="127.0.0.1",
                   listen_port=0, peers=(n["a"].info(),), tls=True)


def test_retired_duplicate_link_still_delivers_what_was_sent_on_it() -> None:
    async def body() -> None:
        n = nodes("a", "b")
        b = Mesh(config(n["b"], [n["a"]]))
        async with trio.open_nursery() as nursery:
            await start(nursery, b)
            async with raw_peer(n["b"], "a", n["a"].key) as old:
                await b.wait_connected("a")
                async with raw_peer(n["b"], "a", n["a"].key) as new:
                    # b keeps the newer link from the same dialer and retires
                    # the old one: its last message there is GOODBYE.
                    while (message := await old.get_message()) != GOODBYE:
                        assert message == PING
                    # The old link still carries what a sends before its GOODBYE,
                    # however many heartbeat intervals (100 ms here) pass first;
                    # the time is what is under test, within the dead-peer
                    # window (400 ms).
                    await trio.sleep(0.25)
                    await old.send_message(encode_batch([b"late on old link"]))
                    await old.send_message(GOODBYE)
                    assert await receive(b, 1) == [("a", b"late on old link")]
                    assert (await wait_closed(old)).reason.code == CLOSE_DUPLICATE
                    assert b.send("a", b"via the new link")
                    while (message := await new.get_message()) == PING:
                        pass
                    assert message == encode_batch([b"via the new link"])
            assert b.stats["links_duplicate_closed"] == 1
            nursery.cancel_scope.cancel()

    run(body)
