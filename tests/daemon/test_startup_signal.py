"""SIGTERM at any moment of start-up leaves no pid file and exits cleanly.

A daemon stopped while its store was still opening used to die by the default
signal action, leaving pbftd.pid behind and RocksDB unclosed."""

import signal
import subprocess
import sys
import time

import pytest

from pbftd.testnet import init_testnet

from .harness import free_base_port


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.3])
def test_sigterm_during_start_up_unwinds(tmp_path, delay_s: float) -> None:
    court = init_testnet(tmp_path / "net", nodes=1, base_port=free_base_port(2))[0]
    pid_file = court.folder / "data" / "pbftd.pid"
    proc = subprocess.Popen([sys.executable, "-m", "pbftd.cli", "run", "--config",
                             str(court.config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the daemon never wrote its pid file"
            time.sleep(0.005)
        time.sleep(delay_s)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not pid_file.exists()
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
