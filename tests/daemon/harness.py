"""Real pbftd daemons on loopback, for the process-level tests.

Every daemon is started by this module with ``python -m pbftd.cli run`` and
its pid recorded; only those pids are ever signalled, and ``Cluster.close``
SIGKILLs whatever is still alive.  Waiting is done by ``wait_until``, which
polls (RPC, pid files, logs) about every 100 ms up to a deadline and fails
with a message naming what it waited for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pbftd.testnet import CourtFiles, free_base_port, init_testnet
from rpc.client import RpcCallError, RpcClient, RpcTransportError

PYTHON = sys.executable
POLL_S = 0.1
RPC_ERRORS = (RpcCallError, RpcTransportError)


class WaitTimeout(AssertionError):
    """A condition a test waited for did not come true within its deadline."""


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that.

    RPC errors count as "not yet" (a node may be restarting); the last one is
    quoted in the failure message.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except RPC_ERRORS as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(POLL_S)


def fill_disk(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full (ENOSPC)."""
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def random_sha256() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def log_events(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """JSON log lines of a pbftd.log from byte ``offset`` (others skipped)."""
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(offset)
        raw = f.read()
    events = []
    for line in raw.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


@dataclass
class Cluster:
    """A testnet directory and the daemons this test process started in it."""

    directory: Path
    courts: list[CourtFiles]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Every attestation acknowledged as committed: tx_id, height, sha256.
    acked: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(cls, directory: Path, nodes: int = 4) -> Cluster:
        base = free_base_port(2 * nodes)
        return cls(directory, init_testnet(directory, nodes, base))

    # -- lookup ------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        return [c.court_id for c in self.courts]

    def court(self, court_id: str) -> CourtFiles:
        return next(c for c in self.courts if c.court_id == court_id)

    def log_path(self, court_id: str) -> Path:
        return self.court(court_id).folder / "pbftd.log"

    def pid_file(self, court_id: str) -> Path:
        return self.court(court_id).folder / "data" / "pbftd.pid"

    def client(self, court_id: str, timeout_s: float = 10.0) -> RpcClient:
        court = self.court(court_id)
        token = (court.folder / "admin.token").read_text().strip()
        return RpcClient(court.rpc_url, token, timeout_s=timeout_s)

    def call(self, court_id: str, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.client(court_id).call(method, params)

    def status(self, court_id: str) -> dict[str, Any]:
        return self.call(court_id, "node.status")

    def statuses(self, ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        return {i: self.status(i) for i in (ids or self.ids)}

    def block_hash(self, court_id: str, height: int) -> str:
        return self.call(court_id, "chain.getBlock", {"height": height})["block_hash"]

    # -- processes -----------------------------------------------------------

    def start(self, court_id: str) -> subprocess.Popen[bytes]:
        court = self.court(court_id)
        assert court_id not in self.procs or self.procs[court_id].poll() is not None, \
            f"{court_id} is already running"
        with (court.folder / "pbftd.log").open("ab") as log:
            proc = subprocess.Popen(
                [PYTHON, "-m", "pbftd.cli", "run", "--config", str(court.config)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.procs[court_id] = proc
        self.started.append(proc)
        return proc

    def start_all(self) -> None:
        for court_id in self.ids:
            self.start(court_id)

    def wait_ready(self, ids: list[str] | None = None, timeout_s: float = 60.0) -> None:
        """Each daemon answers node.status and sees every other validator."""
        ids = ids or self.ids
        others = len(self.ids) - 1

        def ready() -> bool:
            for court_id in ids:
                proc = self.procs[court_id]
                assert proc.poll() is None, \
                    f"{court_id} exited with {proc.returncode}; see {self.log_path(court_id)}"
                if len(self.status(court_id)["peers"]) < others:
                    return False
            return True

        wait_until(ready, timeout_s, f"{ids} to answer node.status with all peers connected")

    def stop(self, court_id: str, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        proc = self.procs[court_id]
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{court_id} (pid {proc.pid}) did not exit within {timeout_s}s "
                              f"after signal {sig}") from None

    def pause(self, court_id: str) -> None:
        self.procs[court_id].send_signal(signal.SIGSTOP)

    def resume(self, court_id: str) -> None:
        self.procs[court_id].send_signal(signal.SIGCONT)

    @classmethod
    @contextlib.contextmanager
    def running(cls, directory: Path, nodes: int = 4) -> Iterator[Cluster]:
        """A fresh testnet of ``nodes`` courts, started and ready; killed after."""
        with cls.create(directory, nodes=nodes).serving() as cluster:
            yield cluster

    @contextlib.contextmanager
    def serving(self, timeout_s: float = 60.0) -> Iterator[Self]:
        """This cluster's daemons started and ready (for a testnet a test has
        adjusted after ``create``); killed after."""
        try:
            self.start_all()
            self.wait_ready(timeout_s=timeout_s)
            yield self
        finally:
            self.close()

    def close(self) -> None:
        """SIGKILL every daemon this cluster started that is still alive."""
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a stopped process still dies on SIGKILL
                proc.kill()
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    # -- chain checks ----------------------------------------------------------

    def attest(self, court_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """One attestation through ``court_id`` with wait: true; must commit."""
        sha = random_sha256()
        result = self.client(court_id, timeout_s=timeout_s).call("evidence.attest", {
            "sha256": sha, "kind": "judgment", "case_no": "(2024)吉0102民初1234号",
            "wait": True})
        assert result["status"] == "committed", result
        self.acked.append({**result, "sha256": sha})
        return result

    def wait_converged(self, ids: list[str] | None = None, timeout_s: float = 30.0,
                       what: str = "") -> dict[str, Any]:
        """All ``ids`` report the same height and last block hash (no load running)."""
        ids = ids or self.ids

        def same() -> dict[str, Any] | None:
            st = self.statuses(ids)
            tips = {(s["height"], s["last_block_hash"]) for s in st.values()}
            return st[ids[0]] if len(tips) == 1 else None

        return wait_until(same, timeout_s,
                          what or f"{ids} to report the same height and last block hash")


class LoadLoop:
    """Attests through one node in a thread, recording what was acknowledged."""

    def __init__(self, cluster: Cluster, court_id: str, call_timeout_s: float = 20.0) -> None:
        self.cluster, self.court_id = cluster, court_id
        self.call_timeout_s = call_timeout_s
        self.committed: list[dict[str, Any]] = []  # tx_id, height, sha256
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{court_id}", daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        client = self.cluster.client(self.court_id, timeout_s=self.call_timeout_s)
        while not self._stop.is_set():
            sha = random_sha256()
            try:
                result = client.call("evidence.attest", {
                    "sha256": sha, "kind": "electronic_evidence",
                    "case_no": "(2024)吉01民终77号", "wait": True})
            except RPC_ERRORS as exc:
                with self._lock:
                    self.errors.append(str(exc))
                self._stop.wait(0.2)
                continue
            if result.get("status") == "committed":
                with self._lock:
                    self.committed.append({**result, "sha256": sha})
                    self.cluster.acked.append({**result, "sha256": sha})

    def count(self) -> int:
        with self._lock:
            return len(self.committed)

    def wait_commits(self, more: int, timeout_s: float, what: str) -> None:
        target = self.count() + more
        wait_until(lambda: self.count() >= target, timeout_s,
                   f"{more} more committed attestations through {self.court_id} ({what}); "
                   f"errors so far: {self.errors[-3:]}")

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"load loop on {self.court_id} did not stop"


def backups(statuses: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """(primary, backups) as the nodes agree on it; asserts they agree."""
    primaries = {s["primary"] for s in statuses.values()}
    assert len(primaries) == 1, f"nodes disagree on the primary: {statuses}"
    primary = primaries.pop()
    return primary, [i for i in statuses if i != primary]

