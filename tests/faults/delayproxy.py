"""A seeded userspace TCP proxy that delays traffic in front of each peer
port: the stand-in for netem's ``delay`` (not in this kernel), test-only and
never part of the installed daemon.

Each daemon listens for peers on its own port (``[p2p] listen``); genesis
names the proxy's port instead, so every peer connection to node i passes
through proxy i, in both directions.  Each chunk read is written out
``delay_ms ± jitter_ms`` later (a seeded Random per proxy), never before the
chunk ahead of it: a TCP stream cannot be reordered, so jitter only varies
the latency.  Message-level reordering is the message shim's job
(``tests/faults/msgshim.py``, scenario M).
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import socket
import threading
import time
from pathlib import Path

from pbftd.testnet import free_base_port, init_testnet
from tests.daemon.harness import Cluster


class DelayProxy:
    def __init__(self, target_port: int, delay_ms: float, jitter_ms: float, seed: int) -> None:
        self.target_port = target_port
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, name=f"delay-{target_port}", daemon=True).start()

    def _delay_s(self) -> float:
        with self._rng_lock:
            d = self.delay_ms + self._rng.uniform(-self.jitter_ms, self.jitter_ms)
        return max(0.0, d) / 1000

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            self._socks += [down, up]
            for src, dst in ((down, up), (up, down)):
                q: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(src, q), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, q), daemon=True).start()

    def _read(self, src: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        last = 0.0
        try:
            while data := src.recv(65536):
                last = max(last, time.monotonic() + self._delay_s())  # FIFO
                q.put((last, data))
        except OSError:
            pass
        q.put((last, b""))

    @staticmethod
    def _write(dst: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


def delayed_cluster(directory: Path, delay_ms: float, jitter_ms: float, seed: int,
                    nodes: int = 4) -> tuple[Cluster, list[DelayProxy]]:
    """A testnet on loopback whose peer links all pass through DelayProxy."""
    base = free_base_port(2 * nodes)
    courts = init_testnet(directory, nodes, base)
    genesis_path = directory / "genesis.json"
    genesis = json.loads(genesis_path.read_text())
    proxies = []
    for i, (court, entry) in enumerate(zip(courts, genesis["courts"], strict=True)):
        real = int(entry["p2p_address"].rsplit(":", 1)[1])
        proxy = DelayProxy(real, delay_ms, jitter_ms, seed * 1000 + i)
        proxies.append(proxy)
        entry["p2p_address"] = f"127.0.0.1:{proxy.port}"
        court.config.write_text(court.config.read_text().replace(
            "[[rpc.tokens]]", f'[p2p]\nlisten = "127.0.0.1:{real}"\n\n[[rpc.tokens]]', 1))
    genesis_path.write_text(json.dumps(genesis, ensure_ascii=False, indent=2) + "\n")
    return Cluster(directory, courts), proxies


__all__ = ["DelayProxy", "delayed_cluster"]
