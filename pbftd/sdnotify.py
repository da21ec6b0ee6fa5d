"""systemd's notify protocol: one datagram to $NOTIFY_SOCKET.

Small enough that a dependency would cost more than it saves; the protocol
is a stable, documented datagram of ``KEY=VALUE`` lines (sd_notify(3)).
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1") if systemd asked for it; True if sent."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(path)
        sock.sendall(message.encode())
    return True


def watchdog_interval_s() -> float | None:
    """Half of WATCHDOG_USEC when systemd wants pings for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
