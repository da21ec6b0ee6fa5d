"""Four real daemons on loopback: commits, crashes, pauses, wipes, restarts.

One testnet is shared by the module; the autouse ``healthy`` fixture puts
every daemon back (restarting dead ones, resuming paused ones) and waits for
all four to agree on the tip after each test, so each test starts from a
healthy, quiescent cluster.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2p import Mesh, MeshConfig, PeerInfo
from rpc.client import RpcCallError, RpcClient
from tests.rpc.test_metrics import parse as parse_metrics

from .harness import (
    PYTHON,
    Cluster,
    LoadLoop,
    backups,
    log_events,
    pid_alive,
    random_sha256,
    wait_until,
)

VIEW_CHANGE_DEADLINE_S = 40
CATCH_UP_DEADLINE_S = 40


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster.running(tmp_path_factory.mktemp("daemon") / "testnet") as c:
        yield c


@pytest.fixture(autouse=True)
def healthy(cluster: Cluster) -> Iterator[Cluster]:
    yield cluster
    for court_id in cluster.ids:
        proc = cluster.procs.get(court_id)
        if proc is None or proc.poll() is not None:
            cluster.start(court_id)
        else:
            cluster.resume(court_id)  # harmless when it is not stopped
    cluster.wait_ready()
    cluster.wait_converged(timeout_s=CATCH_UP_DEADLINE_S,
                           what="the cluster to be healthy again after the test")


def _same_block(cluster: Cluster, a: str, b: str, height: int) -> None:
    assert cluster.block_hash(a, height) == cluster.block_hash(b, height), \
        f"{a} and {b} differ at height {height}"


# ---------------------------------------------------------------- 1. commits


def test_attestations_commit_and_every_node_holds_the_same_chain(cluster: Cluster) -> None:
    results = [cluster.attest(court_id) for court_id in cluster.ids for _ in range(3)]
    assert all(r["height"] >= 1 for r in results)

    tip = cluster.wait_converged()
    height = tip["height"]
    assert height >= max(r["height"] for r in results)
    for h in range(1, height + 1):
        hashes = {court_id: cluster.block_hash(court_id, h) for court_id in cluster.ids}
        assert len(set(hashes.values())) == 1, f"block {h} differs between nodes: {hashes}"
    assert cluster.block_hash("spc", height) == tip["last_block_hash"]

    attester, verifier = cluster.ids[0], cluster.ids[-1]
    first = cluster.acked[-len(results)]  # the first attestation, made through ``attester``
    public = RpcClient(cluster.court(verifier).rpc_url)  # no token: a public read

    def verified() -> dict | None:
        found = public.call("evidence.verify", {"sha256": first["sha256"]})
        return found if found["attested"] else None

    found = wait_until(verified, 10, f"{verifier} to find an attestation made through {attester}")
    [record] = found["records"]
    assert (record["tx_id"], record["height"], record["court"]) == \
        (first["tx_id"], first["height"], attester)


def test_attest_batch_answers_every_item_in_order_and_a_repeat_writes_nothing(
        cluster: Cluster) -> None:
    """1,201 items (two submissions at the default batch_requests_max of
    1,000): items the attestation checks refuse get an error object in
    their own slot, the rest commit; the same call again answers the same
    transactions; an item that breaks the item schema refuses the call."""
    client = cluster.client(cluster.ids[1], timeout_s=60)
    tag = random_sha256()[:8]
    items = [{"sha256": random_sha256(), "kind": "efile_item", "case_no": f"(2026)吉0102执{i}号",
              "request_id": f"batch-{tag}-{i}"} for i in range(1201)]
    items[7]["case_no"] = "(2026)吉0102执7号 13912345678"   # a mobile number
    items[1100]["title"] = "卷宗\x07"                         # a control character
    refused = {7: "personal data", 1100: "control characters"}

    first = client.call("evidence.attestBatch", {"items": items, "wait": True})["results"]
    assert len(first) == len(items)
    for i, result in enumerate(first):
        if i in refused:
            error = result["error"]
            assert error["code"] == -32602 and error["data"]["index"] == i, result
            assert refused[i] in error["data"]["reason"], result
        else:
            assert result["status"] == "committed" and result["height"] >= 1, (i, result)
    assert len({r["tx_id"] for i, r in enumerate(first) if i not in refused}) == 1199

    again = client.call("evidence.attestBatch", {"items": items, "wait": True})["results"]
    assert again == first
    public = RpcClient(cluster.court(cluster.ids[2]).rpc_url)
    for i in (0, 999, 1000, 1200):
        found = wait_until(lambda i=i: (a := public.call(
            "evidence.verify", {"sha256": items[i]["sha256"]}))["attested"] and a,
            10, f"item {i} to be visible on another node")
        assert [(r["tx_id"], r["height"]) for r in found["records"]] == \
            [(first[i]["tx_id"], first[i]["height"])], f"item {i} attested more than once"
    assert not public.call("evidence.verify", {"sha256": items[7]["sha256"]})["attested"]

    fine = {"sha256": random_sha256(), "kind": "judgment", "case_no": "(2026)吉0102民初1号"}
    with pytest.raises(RpcCallError) as info:
        client.call("evidence.attestBatch", {"items": [fine, {**fine, "kind": "memo"}]})
    assert info.value.code == -32602 and info.value.data["member"] == "items/1/kind", info.value


def test_concurrent_calls_with_one_request_id_get_one_transaction(cluster: Cluster) -> None:
    """At most once through RPC: eight callers racing with the same
    request_id (none sees the others' result before submitting), and one
    attestBatch naming it twice, all answer the one transaction that
    executed, and the index holds one record."""
    court = cluster.ids[2]
    sha, rid = random_sha256(), f"race-{random_sha256()[:12]}"
    params = {"sha256": sha, "kind": "judgment", "case_no": "(2026)吉0102民初7号",
              "request_id": rid, "wait": True}
    answers: list[Any] = [None] * 8

    def call(i: int) -> None:
        try:
            answers[i] = cluster.client(court, timeout_s=30).call("evidence.attest", params)
        except Exception as exc:  # reported below, with the others' answers
            answers[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(answers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["status"] == "committed", answers[0]

    item = {k: params[k] for k in ("sha256", "kind", "case_no", "request_id")}
    other = {**item, "sha256": random_sha256(), "request_id": rid + "-b"}
    results = cluster.client(court, timeout_s=30).call(
        "evidence.attestBatch", {"items": [item, other, other], "wait": True})["results"]
    assert results[0] == answers[0], results
    assert results[1] == results[2] and results[1]["status"] == "committed", results
    for digest, tx_id in ((sha, answers[0]["tx_id"]), (other["sha256"], results[1]["tx_id"])):
        found = cluster.call(court, "evidence.verify", {"sha256": digest})
        assert [r["tx_id"] for r in found["records"]] == [tx_id], found


# ---------------------------------------------------------------- 2. crash


def test_backup_killed_with_sigkill_catches_up_after_restart(cluster: Cluster) -> None:
    primary, others = backups(cluster.statuses())
    victim, via = others[0], others[1]
    assert cluster.stop(victim, signal.SIGKILL) == -signal.SIGKILL

    with LoadLoop(cluster, via) as load:
        load.wait_commits(10, 30, f"while {victim} is down")
        down_height = cluster.status(via)["height"]
        cluster.start(victim)
        wait_until(lambda: cluster.status(victim)["height"] >= down_height,
                   CATCH_UP_DEADLINE_S,
                   f"restarted {victim} to reach height {down_height} (primary {primary})")
        _same_block(cluster, victim, via, down_height)
        load.wait_commits(5, 30, f"after {victim} restarted")
    tip = cluster.wait_converged(timeout_s=CATCH_UP_DEADLINE_S)
    assert tip["height"] > down_height
    _same_block(cluster, victim, primary, tip["height"])


# ---------------------------------------------------------------- 3. pause


def test_paused_primary_is_replaced_and_rejoins_without_another_view_change(
        cluster: Cluster) -> None:
    before = cluster.statuses()
    primary, others = backups(before)
    view_before = before[primary]["view"]

    with LoadLoop(cluster, others[0]) as load:
        load.wait_commits(3, 20, "before the pause")
        cluster.pause(primary)

        def replaced() -> int | None:
            st = cluster.statuses(others)
            views = {(s["view"], s["view_active"], s["primary"]) for s in st.values()}
            if len(views) != 1:
                return None
            view, active, new_primary = views.pop()
            ok = view > view_before and active and new_primary != primary
            return view if ok else None

        new_view = wait_until(replaced, VIEW_CHANGE_DEADLINE_S,
                              f"{others} to agree on an active view above {view_before} "
                              f"with a primary other than the paused {primary}")
        load.wait_commits(5, 30, f"in view {new_view} while {primary} is paused")

        offsets = {i: cluster.log_path(i).stat().st_size for i in cluster.ids}
        cluster.resume(primary)
        at_rejoin = {court_id: cluster.status(court_id)["view"] for court_id in others}
        assert set(at_rejoin.values()) == {new_view}, at_rejoin
        seen_views: dict[str, set[int]] = {court_id: set() for court_id in others}

        def rejoined() -> bool:
            ref = cluster.statuses(others)
            for court_id, s in ref.items():
                seen_views[court_id].add(s["view"])
            old = cluster.status(primary)
            target = min(s["height"] for s in ref.values())
            return (old["view"] == new_view and old["view_active"]
                    and old["height"] >= target)

        wait_until(rejoined, CATCH_UP_DEADLINE_S,
                   f"resumed {primary} to reach view {new_view} and the others' height")
        assert seen_views == {court_id: {new_view} for court_id in others}, \
            f"another view change happened while {primary} rejoined: {seen_views}"
        load.wait_commits(3, 30, f"after {primary} rejoined")

    tip = cluster.wait_converged(timeout_s=CATCH_UP_DEADLINE_S)
    after = cluster.statuses()
    assert {s["view"] for s in after.values()} == {new_view}, after
    started = {i: [e["view"] for e in log_events(cluster.log_path(i), offsets[i])
                   if e.get("event") == "view_change_started"] for i in cluster.ids}
    assert all(v <= new_view for views in started.values() for v in views), \
        f"a view change beyond {new_view} started after {primary} resumed: {started}"
    assert not any(started[i] for i in others), \
        f"the other nodes started a view change after {primary} resumed: {started}"
    _same_block(cluster, primary, others[0], tip["height"])


# ---------------------------------------------------------------- 4. wipe


def test_wiped_backup_recovers_the_identical_chain(cluster: Cluster) -> None:
    _primary, others = backups(cluster.statuses())
    victim, via = others[0], others[1]
    assert cluster.stop(victim) == 0
    shutil.rmtree(cluster.court(victim).folder / "data")

    with LoadLoop(cluster, via) as load:
        load.wait_commits(5, 30, f"while {victim} is wiped")
        ref_height = cluster.status(via)["height"]
        cluster.start(victim)
        wait_until(lambda: cluster.status(victim)["height"] >= ref_height,
                   CATCH_UP_DEADLINE_S, f"wiped {victim} to recover height {ref_height}")
        for h in (1, ref_height):
            _same_block(cluster, victim, via, h)

        load.wait_commits(10, 30, f"after {victim} recovered")
        later = cluster.status(via)["height"]
        wait_until(lambda: cluster.status(victim)["height"] >= later, CATCH_UP_DEADLINE_S,
                   f"wiped {victim} to keep up with {via} (height {later})")
        _same_block(cluster, victim, via, later)
    cluster.wait_converged(timeout_s=CATCH_UP_DEADLINE_S)


# ---------------------------------------------------------------- 5. restart all


def test_sigterm_every_node_then_restart_loses_nothing(cluster: Cluster) -> None:
    cluster.attest(cluster.ids[0])
    tip = cluster.wait_converged()
    acked = list(cluster.acked)
    assert acked, "earlier tests acknowledged no attestations"

    for court_id in cluster.ids:
        cluster.procs[court_id].send_signal(signal.SIGTERM)
    for court_id in cluster.ids:
        try:
            code = cluster.procs[court_id].wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{court_id} did not exit within 30 s of SIGTERM")
        assert code == 0, f"{court_id} exited with {code} on SIGTERM"
        assert not cluster.pid_file(court_id).exists(), f"{court_id} left its pbftd.pid"

    cluster.start_all()
    cluster.wait_ready()
    for court_id, st in cluster.statuses().items():
        assert (st["height"], st["last_block_hash"]) == \
            (tip["height"], tip["last_block_hash"]), f"{court_id} after restart: {st}"
    for court_id in cluster.ids:
        client = cluster.client(court_id)
        for item in acked:
            tx = client.call("chain.getTx", {"tx_id": item["tx_id"]})
            assert (tx["status"], tx["height"]) == ("committed", item["height"]), \
                f"{court_id}: {item} after restart: {tx}"
    fresh = cluster.attest(cluster.ids[1])
    assert fresh["height"] > tip["height"]


# ---------------------------------------------------------------- 6. impostor


IMPOSTOR_OF = "jl-high"  # an existing court whose id the impostor claims
IMPOSTOR_TARGET = "spc"


def _run_impostor(cluster: Cluster) -> tuple[list[dict], list[set[str]], dict]:
    """Dial IMPOSTOR_TARGET's p2p port over TLS as IMPOSTOR_OF with a fresh key.

    Runs until the target logs a refusal (20 s at most) and one second more,
    sampling the impostor's connected peers every 10 ms.  Returns the target's
    new p2p_handshake_failed events, the samples and the impostor's stats.
    """
    log = cluster.log_path(IMPOSTOR_TARGET)
    offset = log.stat().st_size
    genesis = json.loads((cluster.directory / "genesis.json").read_text())
    court = next(c for c in genesis["courts"] if c["id"] == IMPOSTOR_TARGET)
    host, port = court["p2p_address"].rsplit(":", 1)
    mesh = Mesh(MeshConfig(
        chain_id=genesis["chain_id"], node_id=IMPOSTOR_OF,
        private_key=Ed25519PrivateKey.generate(), listen_host="127.0.0.1", listen_port=0,
        peers=(PeerInfo(IMPOSTOR_TARGET, bytes.fromhex(court["public_key"]), host, int(port)),),
        tls=True, reconnect_backoff_min_ms=50, reconnect_backoff_max_ms=200,
        handshake_timeout_ms=2000))
    samples: list[set[str]] = []

    def refusals() -> list[dict]:
        return [e for e in log_events(log, offset) if e.get("event") == "p2p_handshake_failed"]

    async def sample_for(seconds: float, until: Callable[[], object] = lambda: False) -> None:
        with trio.move_on_after(seconds):
            while not until():
                for _ in range(10):
                    samples.append(mesh.connected_peers())
                    await trio.sleep(0.01)

    async def impostor() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            await sample_for(20, until=refusals)
            await sample_for(1.0)  # redials must be refused as well
            nursery.cancel_scope.cancel()

    trio.run(impostor)
    return refusals(), samples, mesh.stats


def test_peer_with_an_unknown_key_is_refused_by_the_real_node(cluster: Cluster) -> None:
    refused, _samples, _stats = _run_impostor(cluster)
    assert refused, f"{IMPOSTOR_TARGET}'s pbftd.log gained no p2p_handshake_failed event"
    assert {e.get("reason") for e in refused} == {f"bad signature for '{IMPOSTOR_OF}'"}, refused
    st = cluster.status(IMPOSTOR_TARGET)
    assert IMPOSTOR_OF in st["peers"], "the genuine link to the impersonated court was lost"
    assert cluster.attest(IMPOSTOR_TARGET)["height"] > st["height"]


def test_impostor_mesh_never_lists_the_real_node_as_connected(cluster: Cluster) -> None:
    refused, samples, stats = _run_impostor(cluster)
    assert refused, f"{IMPOSTOR_TARGET}'s pbftd.log gained no p2p_handshake_failed event"
    assert stats["links_established"] == 0, stats
    assert not any(samples), f"impostor listed {IMPOSTOR_TARGET} as connected"


# ---------------------------------------------------------------- 8. data lock


def test_second_daemon_on_the_same_data_directory_is_refused(cluster: Cluster) -> None:
    court_id = cluster.ids[2]
    first = cluster.procs[court_id]
    pid_file = cluster.pid_file(court_id)
    assert pid_file.read_text().strip() == str(first.pid)

    second = subprocess.Popen(
        [PYTHON, "-m", "pbftd.cli", "run", "--config", str(cluster.court(court_id).config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    cluster.started.append(second)  # SIGKILLed by the fixture if it lingers
    try:
        out, err = second.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"second daemon on {court_id}'s data directory kept running")
    lines = err.decode().splitlines()
    assert second.returncode != 0
    assert len(lines) == 1 and "lock" in lines[0], lines
    assert "Traceback" not in err.decode() + out.decode()

    assert first.poll() is None and pid_alive(first.pid), "the first daemon died"
    assert pid_file.read_text().strip() == str(first.pid), "pid file was overwritten"
    assert cluster.attest(court_id)["status"] == "committed"


def test_metrics_show_resident_memory_and_rocksdb_memory_by_kind(cluster: Cluster) -> None:
    """An admin watching RSS must be able to tell RocksDB's bounded memory
    (memtables, block cache) from the rest: both are on /metrics."""
    court = cluster.ids[0]
    cluster.attest(court)
    with urllib.request.urlopen(cluster.court(court).rpc_url + "metrics", timeout=10) as resp:
        text = resp.read().decode()
    families = parse_metrics(text)  # every line valid; every ..._total a counter
    assert families["pbftd_transactions_total"][0][2] >= 1
    assert "pbftd_votes_not_needed_total" in families
    values = {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
              for line in text.splitlines() if line and not line.startswith("#")}
    assert values["pbftd_process_resident_bytes"] > 10 * 2**20
    assert values['pbftd_rocksdb_memory_bytes{kind="memtables"}'] > 0
    assert 'pbftd_rocksdb_memory_bytes{kind="block_cache"}' in values
    assert 'pbftd_rocksdb_memory_bytes{kind="table_readers"}' in values
    assert values["pbftd_python_allocated_blocks"] > 10_000


def test_every_frame_a_node_takes_from_its_peers_is_released(cluster: Cluster) -> None:
    """The per-peer inbox byte bound (p2p) holds a frame until the runtime
    has taken it: a frame never released would stop that peer's link for
    good once 16 MiB had piled up. Quiescent, every count must drain to 0."""
    for court_id in cluster.ids:
        cluster.attest(court_id)
    cluster.wait_converged()

    def unreleased() -> dict[str, float]:
        found = {}
        for court_id in cluster.ids:
            url = cluster.court(court_id).rpc_url + "metrics"
            with urllib.request.urlopen(url, timeout=10) as resp:
                for line in resp.read().decode().splitlines():
                    if line.startswith("pbftd_peer_inbox_bytes{"):
                        name, _, value = line.rpartition(" ")
                        found[f"{court_id} {name}"] = float(value)
        return found

    seen = unreleased()
    assert len(seen) == len(cluster.ids) * (len(cluster.ids) - 1), seen
    wait_until(lambda: not any(unreleased().values()), 10,
               "every node to release every peer frame it took")
