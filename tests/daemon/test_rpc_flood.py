"""A real 1-node testnet under an anonymous flood: the flood is rate-limited
(429), consensus is not stalled (an authenticated attest with wait: true
commits within its deadline), and /ws events show the committed block."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.daemon.harness import Cluster, random_sha256
from tests.rpc.http_client import connect

FLOOD_REQUESTS = 3000
FLOOD_WORKERS = 40
ATTEST_DEADLINE_S = 15.0
JSON = ("content-type", "application/json")


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    with Cluster.create(tmp_path / "testnet", nodes=1).serving() as c:
        yield c


def _body(method: str, params: dict | None = None, id_: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "id": id_,
                       **({"params": params} if params else {})}).encode()


def test_anonymous_flood_gets_429_and_consensus_keeps_committing(cluster: Cluster) -> None:
    court = cluster.courts[0]
    port = urlsplit(court.rpc_url).port
    assert port is not None
    token = (court.folder / "admin.token").read_text().strip()
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    sha = random_sha256()
    attested: dict = {}

    async def flood_worker(todo: list[int]) -> None:
        while todo:
            todo.pop()
            async with connect(port) as client:
                response = await client.request("POST", "/", body=_body("node.status"),
                                                headers=[JSON])
            statuses[response.status] += 1
            if response.status == 429:
                retry_after.add(response.headers["retry-after"])
                assert json.loads(response.body)["error"]["code"] == -32005

    async def attest_during_flood(flood_started: trio.Event) -> None:
        await flood_started.wait()
        started = time.monotonic()
        async with connect(port) as client:
            response = await client.request("POST", "/", body=_body("evidence.attest", {
                "sha256": sha, "kind": "judgment", "case_no": "(2024)吉0102民初9号",
                "wait": True}), headers=[JSON, ("authorization", f"Bearer {token}")])
        assert response.status == 200, response.body
        attested.update(json.loads(response.body)["result"])
        attested["elapsed_s"] = time.monotonic() - started

    async def main() -> None:
        todo = list(range(FLOOD_REQUESTS))
        flood_started = trio.Event()
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(attest_during_flood, flood_started)
                for _ in range(FLOOD_WORKERS):
                    nursery.start_soon(flood_worker, todo)
                flood_started.set()
            # the committed block shows up on /ws, replayed from its height
            height = attested["height"]
            async with open_websocket_url(
                    f"ws://127.0.0.1:{port}/ws",
                    extra_headers=[(b"authorization", f"Bearer {token}".encode())]) as ws:
                await ws.send_message(json.dumps({
                    "jsonrpc": "2.0", "id": 1, "method": "events.subscribe",
                    "params": {"topics": ["blocks", "attestations"], "from_height": height}}))
                assert "result" in json.loads(await ws.get_message())
                block = json.loads(await ws.get_message())["params"]
                assert block["topic"] == "blocks" and block["height"] == height
                assert block["event"]["tx_count"] >= 1
                while True:
                    note = json.loads(await ws.get_message())["params"]
                    if note["topic"] == "attestations" and note["event"]["sha256"] == sha:
                        break
                event = note["event"]
                assert event["tx_id"] == attested["tx_id"] and event["height"] == height
                assert event["kind"] == "judgment" and event["court"] == court.court_id

    trio.run(main)
    print(f"flood: {dict(statuses)}; attest: {attested}")
    assert sum(statuses.values()) == FLOOD_REQUESTS
    assert statuses[429] > 0 and statuses[200] > 0, statuses
    assert set(statuses) <= {200, 429}, statuses
    assert retry_after and all(v.isdigit() and int(v) >= 1 for v in retry_after)
    assert attested["status"] == "committed"
    assert attested["elapsed_s"] < ATTEST_DEADLINE_S, attested
