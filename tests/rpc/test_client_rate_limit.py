"""The sync client waits out a rate limit only when told to, and only as
long as it was told: a stub node answers 429 with retry_after_ms first."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rpc.client import RpcCallError, RpcClient


@contextmanager
def stub_node(refusals: int, retry_after_ms: int | None) -> Iterator[tuple[str, list[float]]]:
    """A node that refuses the first `refusals` calls as rate limited, then
    answers; yields its URL and the monotonic times calls arrived."""
    arrivals: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            arrivals.append(time.monotonic())
            if len(arrivals) <= refusals:
                data = {} if retry_after_ms is None else {"retry_after_ms": retry_after_ms}
                status, body = 429, {"jsonrpc": "2.0", "id": request["id"], "error": {
                    "code": -32005, "message": "rate limited", "data": data}}
            else:
                status, body = 200, {"jsonrpc": "2.0", "id": request["id"], "result": "ok"}
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", arrivals
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_by_default_a_rate_limit_is_raised_at_once() -> None:
    with (stub_node(refusals=1, retry_after_ms=50) as (url, arrivals),
          pytest.raises(RpcCallError) as info):
        RpcClient(url, timeout_s=5).call("node.status")
    assert info.value.code == -32005 and len(arrivals) == 1


def test_a_client_told_to_wait_retries_after_the_time_asked() -> None:
    with stub_node(refusals=2, retry_after_ms=50) as (url, arrivals):
        assert RpcClient(url, timeout_s=5, rate_limit_wait_s=1).call("node.status") == "ok"
    assert len(arrivals) == 3
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(arrivals))


def test_a_wait_beyond_the_budget_is_not_waited() -> None:
    with (stub_node(refusals=1, retry_after_ms=5000) as (url, arrivals),
          pytest.raises(RpcCallError)):
        RpcClient(url, timeout_s=5, rate_limit_wait_s=1).call("node.status")
    assert len(arrivals) == 1
    # 400 + 400 ms fit in the second asked for; a third 400 does not
    with (stub_node(refusals=3, retry_after_ms=400) as (url, arrivals),
          pytest.raises(RpcCallError)):
        RpcClient(url, timeout_s=5, rate_limit_wait_s=1).call("node.status")
    assert len(arrivals) == 3


def test_a_refusal_without_a_wait_is_raised() -> None:
    with (stub_node(refusals=1, retry_after_ms=None) as (url, arrivals),
          pytest.raises(RpcCallError)):
        RpcClient(url, timeout_s=5, rate_limit_wait_s=10).call("node.status")
    assert len(arrivals) == 1
