"""systemd integration: READY=1 once the node serves, watchdog pings when
WATCHDOG_USEC asks for them, STOPPING=1 on SIGTERM (sd_notify(3))."""

import os
import signal
import socket
import subprocess
import sys

from pbftd.testnet import init_testnet

from .harness import free_base_port


def test_ready_watchdog_and_stopping_reach_the_notify_socket(tmp_path) -> None:
    court = init_testnet(tmp_path / "net", nodes=1, base_port=free_base_port(2))[0]
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen([sys.executable, "-m", "pbftd.cli", "run", "--config",
                                 str(court.config)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            got = [sock.recv(256).decode()]
            assert got == ["READY=1"]
            got += [sock.recv(256).decode() for _ in range(3)]
            assert got[1:] == ["WATCHDOG=1"] * 3
            proc.send_signal(signal.SIGTERM)
            while got[-1] != "STOPPING=1":
                got.append(sock.recv(256).decode())
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
