"""The command line as a user meets it: a bad config, and ``testnet up``.

Each test starts its own processes (never the shared cluster's) and kills
what is left in a finalizer.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbftd.testnet import init_testnet
from rpc.client import RpcClient

from .harness import PYTHON, free_base_port, pid_alive, wait_until

CLI = [PYTHON, "-m", "pbftd.cli"]


def test_config_with_an_unknown_key_refuses_to_start(tmp_path: Path) -> None:
    [court, *_] = init_testnet(tmp_path / "testnet", 4, free_base_port(8))
    bad = court.folder / "bad.toml"
    text = court.config.read_text()
    assert "[consensus]\n" in text
    bad.write_text(text.replace("[consensus]\n", "[consensus]\nbatch_size = 5\n", 1))

    proc = subprocess.Popen([*CLI, "run", "--config", str(bad)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("a config with an unknown key started a daemon (killed after 30 s)")
    lines = err.decode().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1, lines
    assert str(bad) in lines[0] or bad.name in lines[0], lines[0]
    assert "batch_size" in lines[0], lines[0]
    assert "Traceback" not in err.decode() + out.decode()
    assert not (court.folder / "data" / "pbftd.pid").exists()


class _Up:
    """A ``pbftd testnet up`` process in its own process group, read line by line."""

    def __init__(self, directory: Path, base_port: int) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "testnet", "up", str(directory), "--base-port", str(base_port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def drain(self) -> bool:
        """Collect the lines printed so far; False once stdout is closed."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                return False
            self.lines.append(line)

    def kill_group(self) -> None:
        """SIGKILL the up process and every daemon it started (its own group)."""
        if self.proc.poll() is None or any(pid_alive(p) for p in self.daemon_pids()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)

    def daemon_pids(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines
                if (m := re.search(r" pid (\d+) ", line))]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[_Up, Path]]:
    directory = tmp_path / "fresh-testnet"
    runner = _Up(directory, free_base_port(8))
    try:
        yield runner, directory
    finally:
        runner.kill_group()


def test_testnet_up_lists_courts_serves_rpc_and_stops_on_sigterm(
        up: tuple[_Up, Path]) -> None:
    runner, directory = up

    def printed_next() -> bool:
        alive = runner.drain()
        assert alive or any(line.startswith("next:") for line in runner.lines), \
            f"testnet up exited early: {runner.lines}"
        return any(line.startswith("next:") for line in runner.lines)

    wait_until(printed_next, 60, "`testnet up` to print its 'next:' hint")
    courts = [line for line in runner.lines if " rpc http://" in line]
    assert len(courts) == 4, runner.lines
    urls = [line.rsplit(" rpc ", 1)[1].strip() for line in courts]
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/", u) for u in urls), urls
    pids = runner.daemon_pids()
    assert len(pids) == 4 and all(pid_alive(p) for p in pids), runner.lines
    assert (directory / "genesis.json").exists()

    status = wait_until(lambda: RpcClient(urls[0], timeout_s=5).call("node.status"), 60,
                        f"node.status to answer on {urls[0]}")
    assert status["node_id"] == courts[0].split()[0]

    runner.proc.send_signal(signal.SIGTERM)
    try:
        code = runner.proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail("`testnet up` did not exit within 45 s of SIGTERM")
    wait_until(lambda: not runner.drain(), 5, "`testnet up` to close its stdout")
    assert code == 0, runner.lines
    assert runner.lines[-1] == "testnet stopped", runner.lines
    assert not any(pid_alive(p) for p in pids), f"daemons still alive: {pids}"
    for court_id in (line.split()[0] for line in courts):
        assert not (directory / court_id / "data" / "pbftd.pid").exists(), court_id
    shutil.rmtree(directory)
