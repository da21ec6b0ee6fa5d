"""Faulty peers: stalled, restarted, down, oversized or malformed."""

from __future__ import annotations

import cbor2
import trio

from p2p import FRAMES, Mesh
from p2p.link import CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG
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
    watch_logs,
    with_overrides,
)

DEAD_AFTER_MS = 300


def test_stalled_peer_is_declared_dead_within_the_deadline() -> None:
    async def body() -> None:
        n = nodes("a", "b")
        a = Mesh(config(n["a"], [n["b"]], heartbeat_interval_ms=100,
                        peer_dead_after_ms=DEAD_AFTER_MS))
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            with watch_logs() as logs:
                # b authenticates, then neither reads nor writes: like SIGSTOP,
                # except that its TCP stack (and websocket pongs) stay alive.
                async with raw_peer(n["a"], "b", n["b"].key) as ws:
                    await a.wait_connected("b")
                    up = trio.current_time()
                    await a.wait_disconnected("b")
                    elapsed_s = trio.current_time() - up
                    closed = await wait_closed(ws)
            assert DEAD_AFTER_MS / 1000 * 0.9 <= elapsed_s < DEAD_AFTER_MS / 1000 + 1.0
            assert closed.reason.code == 1001
            assert a.stats["links_dead"] == 1
            down = logs.matching(event="p2p_link_down", peer_id="b")
            assert down[0]["reason"] == "peer dead: heartbeat timeout"
            nursery.cancel_scope.cancel()

    run(body)


def test_reconnects_after_peer_restarts_on_same_port() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b")
        cfgs = cluster_configs(all_nodes)
        a, b = Mesh(cfgs["a"]), Mesh(cfgs["b"])
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            b_scope = await start(nursery, b)
            await wait_all_connected({"a": a, "b": b})
            b_scope.cancel()
            await a.wait_disconnected("b")
            assert a.send("b", b"queued while b is down")

            # The new b only accepts (it never dials a), so a's redial loop
            # with backoff is what restores the link.
            b2 = Mesh(with_overrides(cfgs["b"], peers=(),
                                     extra_known={"a": all_nodes["a"].public}))
            await start(nursery, b2)
            await wait_all_connected({"a": a, "b": b2})
            assert await receive(b2, 1) == [("a", b"queued while b is down")]
            assert b2.send("a", b"b is back")
            assert await receive(a, 1) == [("b", b"b is back")]
            assert a.stats["links_established"] >= 2  # initial duplicates may add one
            assert a.stats["reconnects"] >= 1
            nursery.cancel_scope.cancel()

    run(body)


def test_queue_to_a_down_peer_is_bounded_and_drops_newest() -> None:
    async def body() -> None:
        queue_max = 16
        all_nodes = nodes("a", "b")
        cfgs = cluster_configs(all_nodes, send_queue_frames_max=queue_max)
        a = Mesh(cfgs["a"])
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            accepted = []
            for k in range(10 * queue_max):
                accepted.append(a.send("b", b"%d" % k))  # sync: cannot block
                assert a.stats["queue_depth"]["b"] <= queue_max
            assert accepted == [True] * queue_max + [False] * 9 * queue_max
            stats = a.stats
            assert stats["frames_dropped_queue_full"] == 9 * queue_max
            assert stats["queue_depth"]["b"] == queue_max
            assert not a.send("nobody", b"x")
            assert a.stats["frames_dropped_unknown_peer"] == 1

            b = Mesh(cfgs["b"])  # b comes up: the oldest frames were kept
            await start(nursery, b)
            got = await receive(b, queue_max)
            assert got == [("a", b"%d" % k) for k in range(queue_max)]
            nursery.cancel_scope.cancel()

    run(body)


def _mesh_pair_where_b_is_raw(**overrides: object) -> tuple[dict, Mesh, dict]:
    n = nodes("a", "b")
    cfgs = cluster_configs(n, **overrides)
    return n, Mesh(cfgs["a"]), cfgs


async def _real_b_connects_and_talks(nursery: trio.Nursery, a: Mesh, b_cfg: object) -> None:
    b = Mesh(b_cfg)  # type: ignore[arg-type]
    await start(nursery, b)
    await wait_all_connected({"a": a, "b": b})
    assert a.send("b", b"still working")
    assert await receive(b, 1) == [("a", b"still working")]


def test_oversized_message_closes_link_and_mesh_recovers() -> None:
    async def body() -> None:
        n, a, cfgs = _mesh_pair_where_b_is_raw(frame_bytes_max=64 * 1024)
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            async with raw_peer(n["a"], "b", n["b"].key) as ws:
                await a.wait_connected("b")
                await ws.send_message(b"\x00" + b"x" * (80 * 1024))
                closed = await wait_closed(ws)
            assert closed.reason.code == CLOSE_TOO_BIG
            assert a.stats["messages_oversize"] == 1
            # A frame over the limit inside a message under the limit.
            async with raw_peer(n["a"], "b", n["b"].key) as ws:
                await ws.send_message(b"\x00" + cbor2.dumps([b"y" * (64 * 1024 + 1)]))
                closed = await wait_closed(ws)
            assert closed.reason.code == CLOSE_PROTOCOL_ERROR
            assert a.stats["envelopes_malformed"] == 1
            assert a.inbox.statistics().current_buffer_used == 0
            await _real_b_connects_and_talks(nursery, a, cfgs["b"])
            nursery.cancel_scope.cancel()

    run(body)


def test_malformed_envelopes_close_link_are_counted_and_mesh_recovers() -> None:
    async def body() -> None:
        n, a, cfgs = _mesh_pair_where_b_is_raw()
        bad_messages = [
            b"\x00\xff\xff",  # not CBOR
            b"\x00" + cbor2.dumps([b"ok"]) + b"\x00",  # trailing bytes
            b"\x00" + cbor2.dumps(["text, not bytes"]),
            b"\x00" + cbor2.dumps([]),  # an empty batch is not a PING
            b"\x01junk",  # PING with a body
            b"\x07",  # unknown kind
            "a text message",
        ]
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            for bad in bad_messages:
                async with raw_peer(n["a"], "b", n["b"].key) as ws:
                    await ws.send_message(b"\x00" + cbor2.dumps([b"good frame first"]))
                    await ws.send_message(bad)
                    closed = await wait_closed(ws)
                assert closed.reason.code == CLOSE_PROTOCOL_ERROR, bad
            assert a.stats["envelopes_malformed"] == len(bad_messages)
            got = await receive(a, len(bad_messages))
            assert got == [("b", b"good frame first")] * len(bad_messages)
            await _real_b_connects_and_talks(nursery, a, cfgs["b"])
            nursery.cancel_scope.cancel()

    run(body)


def test_slow_consumer_backpressures_one_link_without_loss_or_false_death() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b", "c")
        cfgs = cluster_configs(all_nodes)
        cfgs["a"] = with_overrides(cfgs["a"], send_queue_frames_max=4096)
        cfgs["b"] = with_overrides(cfgs["b"], inbox_messages_max=4)
        async with trio.open_nursery() as nursery:
            meshes = await start_connected(nursery, cfgs)
            # 48 MiB: more than kernel and websocket buffers can absorb.
            frames = [b"%d|" % k + b"p" * 16384 for k in range(3000)]
            for frame in frames:
                assert meshes["a"].send("b", frame)
            # b's consumer is stalled for two dead-peer windows (0.4 s each);
            # meanwhile a keeps talking to c.
            with trio.move_on_after(0.8):
                while True:
                    assert meshes["a"].send("c", b"unaffected")
                    assert await receive(meshes["c"], 1) == [("a", b"unaffected")]
            # b really pushes back: its inbox is full (four messages) and a
            # still holds frames.
            assert meshes["b"].inbox.statistics().current_buffer_used == 4
            assert meshes["a"].stats["queue_depth"]["b"] > 0
            got = await receive(meshes["b"], len(frames))
            assert got == [("a", f) for f in frames]
            for mesh in meshes.values():
                assert mesh.stats["links_dead"] == 0
            nursery.cancel_scope.cancel()

    run(body)


def test_a_peer_holds_at_most_its_byte_budget_of_unhandled_frames() -> None:
    """Frames count against their peer from the link's reader until the
    consumer releases them; over the budget that peer's link waits (nothing
    is lost, it is not declared dead), and other peers are still read."""
    frame_max, budget, size = 256 * 1024, 512 * 1024, 64 * 1024

    async def body() -> None:
        all_nodes = nodes("a", "b", "c")
        cfgs = cluster_configs(all_nodes, frame_bytes_max=frame_max)
        cfgs["b"] = with_overrides(cfgs["b"], inbox_bytes_per_peer_max=budget)
        async with trio.open_nursery() as nursery:
            meshes = await start_connected(nursery, cfgs)
            a, b, c = meshes["a"], meshes["b"], meshes["c"]
            frames = [b"%d|" % k + b"p" * (size - 8) for k in range(64)]  # 4 MiB
            for frame in frames:
                assert a.send("b", frame)
            # Take a's messages without releasing them, for two dead-peer windows.
            held: list[tuple[str, bytes]] = []
            with trio.move_on_after(0.8):
                while True:
                    _tag, peer, message_frames = await b.inbox.receive()
                    held += [(peer, f) for f in message_frames]
            unreleased = sum(len(f) for _, f in held)
            assert 0 < unreleased <= budget
            assert b.stats["inbox_bytes"]["a"] == unreleased
            assert len(held) < len(frames)
            # a's link waits; c's is read.
            assert c.send("b", b"from c")
            assert await receive(b, 1) == [("c", b"from c")]
            for peer, frame in held:
                b.release(peer, len(frame))
            rest = await receive(b, len(frames) - len(held))
            assert held + rest == [("a", f) for f in frames]
            assert b.stats["inbox_bytes"]["a"] == 0
            for mesh in meshes.values():
                assert mesh.stats["links_dead"] == 0
            nursery.cancel_scope.cancel()

    run(body)


def test_one_message_over_the_budget_passes_when_nothing_is_outstanding() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b")
        cfgs = cluster_configs(all_nodes)
        cfgs["b"] = with_overrides(cfgs["b"], inbox_bytes_per_peer_max=1024)
        async with trio.open_nursery() as nursery:
            meshes = await start_connected(nursery, cfgs)
            big = b"x" * 100_000
            assert meshes["a"].send("b", big)
            assert await receive(meshes["b"], 1) == [("a", big)]
            nursery.cancel_scope.cancel()

    run(body)


def test_frames_a_closed_link_never_queued_do_not_count_against_the_peer() -> None:
    async def body() -> None:
        all_nodes = nodes("a", "b")
        cfgs = cluster_configs(all_nodes)
        cfgs["b"] = with_overrides(cfgs["b"], inbox_messages_max=1)
        a, b = Mesh(cfgs["a"]), Mesh(cfgs["b"])
        async with trio.open_nursery() as nursery:
            a_scope = await start(nursery, a)
            await start(nursery, b)
            await wait_all_connected({"a": a, "b": b})
            frames = [b"%d" % k * 1000 for k in range(3)]
            assert a.send("b", frames[0])
            with trio.fail_after(5):  # b's inbox holds its one message
                while b.inbox.statistics().current_buffer_used < 1:
                    await trio.sleep(0.01)
            for frame in frames[1:]:
                assert a.send("b", frame)
            # b's reader counts the next message against a, then blocks on
            # the full inbox.
            with trio.fail_after(5):
                while b.stats["inbox_bytes"]["a"] < sum(map(len, frames)):
                    await trio.sleep(0.01)
            a_scope.cancel()  # the link goes while the reader is blocked
            await b.wait_disconnected("a")
            assert await b.inbox.receive() == (FRAMES, "a", [frames[0]])
            assert b.stats["inbox_bytes"]["a"] == len(frames[0])
            b.release("a", len(frames[0]))
            assert b.stats["inbox_bytes"]["a"] == 0
            nursery.cancel_scope.cancel()

    run(body)
