"""An open-loop HTTP/1.1 flood for scenario 16, run as a process of its own.

Why it exists: the trio flood the scenario used first (one task and one fresh
connection per request) spent its CPU on the client side and offered 149-524
requests/s against a target of 5,000.  This one shares neither the test's
event loop nor its GIL, and does little per request: one precomputed request,
written many at a time with `send` on non-blocking keep-alive sockets, and
answers counted by their status lines.

Theory of operation
-------------------
* The schedule is open loop: request k is due at k / rate_per_s seconds.
  Whenever the loop wakes (at most every `tick_s`), every request due by now
  is handed to open connections, at most `depth_max` unanswered requests on a
  connection (HTTP/1.1 pipelining).  A request counts as offered once the
  kernel took all its bytes.  When no connection can take more (all at
  `depth_max`, send buffers full, connections still being opened) the
  schedule slips: the late requests are written when they can be, and the
  offered rate over the window is what was written in it, so a client that
  cannot keep up shows a lower offered rate, never a higher one.
* Answers are counted by scanning the byte stream for status lines
  (``HTTP/1.1 NNN ``; the node.status results and error bodies this flood
  gets back hold no such text) and for ``Traceback``.
* pbftd answers a caller whose bucket is empty with 429 and
  ``connection: close`` before reading the body, and drops whatever was
  pipelined behind it.  On that header the connection takes no more
  requests and a new one is opened at once; requests written on it but not
  answered are reported as `unanswered_on_close`: offered, and shed by the
  server without a word.  Every request written ends up in exactly one of
  `answered`, `unanswered_on_close`, `unanswered_at_end`.
* After the window the flood takes no more requests from the schedule and
  waits up to `drain_s` for the answers still on their way; answered/s is
  over window plus drain.
* The process reports its own CPU time (getrusage), so a test can show that
  the client did not starve the daemons it shares the machine with.

Usage: ``python -m tests.faults.flood --port P --rate 5000 --seconds 5``;
prints one JSON object (the report) on stdout.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import resource
import select
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["command", "flood", "request_bytes"]

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
CLOSE_HEADER = b"\r\nconnection: close\r\n"  # as h11 writes it (pbftd's HTTP is h11)
TAIL_BYTES = len(CLOSE_HEADER)  # kept between reads: a pattern may straddle two
RECV_BYTES = 1 << 16
RECONNECT_DELAY_S = 0.05  # after a refused connect, so a dead server is not spun on


def request_bytes(body: bytes, host: str = "pbftd") -> bytes:
    """One keep-alive JSON-RPC POST, as written on the wire."""
    return (b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    request_len: int
    connected: bool = False
    bytes_sent: int = 0          # taken by the kernel; whole requests are what counts
    pending: bytes = b""         # accepted from the schedule, not yet taken by the kernel
    answered: int = 0
    closing: bool = False        # the server said it will close: write no more here
    tail: bytes = b""

    @property
    def written(self) -> int:
        return self.bytes_sent // self.request_len

    def in_flight(self) -> int:
        return self.written - self.answered


@dataclass(slots=True)
class _Flood:
    host: str
    port: int
    request: bytes
    depth_max: int
    epoll: select.epoll = field(default_factory=select.epoll)
    conns: dict[int, _Conn] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    written: int = 0
    traceback: bool = False
    reopen_at: list[float] = field(default_factory=list)

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((self.host, self.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.counts[f"connect_error_{errno.errorcode.get(code, code)}"] += 1
            self.reopen_at.append(time.monotonic() + RECONNECT_DELAY_S)
            return
        self.counts["connections_opened"] += 1
        self.conns[sock.fileno()] = _Conn(sock, len(self.request))
        self.epoll.register(sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def close(self, fd: int, why: str) -> None:
        conn = self.conns.pop(fd)
        self.epoll.unregister(fd)
        conn.sock.close()
        self.counts[why] += 1
        self.counts["unanswered_on_close"] += conn.in_flight()
        if not conn.closing:  # a closing one was replaced when it said so
            self.open()

    def reopen_due(self) -> None:
        """Retry the connects that were refused, once their delay is over."""
        now = time.monotonic()
        due = [t for t in self.reopen_at if t <= now]
        if due:
            self.reopen_at = [t for t in self.reopen_at if t > now]
            for _ in due:
                self.open()

    def shut(self) -> None:
        for conn in self.conns.values():
            conn.sock.close()
        self.conns.clear()
        self.epoll.close()

    def ready(self) -> list[_Conn]:
        return [c for c in self.conns.values()
                if c.connected and not c.closing and not c.pending
                and c.in_flight() < self.depth_max]

    def offer(self, count: int) -> None:
        """Hand up to ``count`` requests to connections with room; the rest slip."""
        ready = self.ready()
        while count > 0 and ready:
            share = max(1, count // len(ready))
            conn = ready.pop()
            take = min(share, count, self.depth_max - conn.in_flight())
            count -= take
            self.send(conn, self.request * take)

    def send(self, conn: _Conn, data: bytes) -> None:
        fd = conn.sock.fileno()
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close(fd, "send_failed")
            return
        before = conn.written
        conn.bytes_sent += sent
        self.written += conn.written - before
        conn.pending = data[sent:]
        if conn.pending:
            self.epoll.modify(fd, select.EPOLLIN | select.EPOLLOUT)

    def on_event(self, fd: int, mask: int) -> None:
        conn = self.conns.get(fd)
        if conn is None:
            return
        if mask & select.EPOLLOUT:
            if not conn.connected:
                code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    self.close(fd, f"connect_error_{errno.errorcode.get(code, code)}")
                    return
                conn.connected = True
            if conn.pending:
                self.send(conn, conn.pending)
                if fd not in self.conns:
                    return
            if not conn.pending:
                self.epoll.modify(fd, select.EPOLLIN)
        if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            self.receive(fd, conn)

    def receive(self, fd: int, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = None
        if data:
            if self.scan(conn, data):
                self.open()  # the replacement: this one only waits for its last answers
            return
        self.close(fd, "closed_by_server" if data == b"" else "reset_by_server")

    def scan(self, conn: _Conn, data: bytes) -> bool:
        """Count the status lines in ``data``; True when the server just said
        it will close ``conn``."""
        window = conn.tail + data
        skip = len(conn.tail)  # a status line that ends inside the tail was counted
        for match in STATUS_LINE.finditer(window):
            if match.end() > skip:
                self.statuses[match.group(1).decode()] += 1
                conn.answered += 1
        if b"Traceback" in window:
            self.traceback = True
        conn.tail = window[-TAIL_BYTES:]
        if not conn.closing and CLOSE_HEADER in window:
            conn.closing = True
            return True
        return False


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def flood(host: str, port: int, *, rate_per_s: int, seconds: float, connections: int,
          depth_max: int, body: bytes, tick_s: float = 0.002,
          drain_s: float = 2.0) -> dict[str, Any]:
    """Run the flood; return the report (see the module docstring)."""
    state = _Flood(host, port, request_bytes(body), depth_max)
    cpu0 = _cpu_s()
    for _ in range(connections):
        state.open()
    per_second: list[int] = []
    slip_max = 0
    t0 = time.monotonic()
    while (now := time.monotonic() - t0) < seconds:
        due = min(int(now * rate_per_s) + 1, int(seconds * rate_per_s))
        state.offer(due - state.written)
        slip_max = max(slip_max, due - state.written)
        while len(per_second) < int(now):
            per_second.append(state.written)
        for fd, mask in state.epoll.poll(tick_s):
            state.on_event(fd, mask)
        state.reopen_due()
    window_s = time.monotonic() - t0
    written, answered_in_window = state.written, sum(state.statuses.values())
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline and any(c.in_flight() for c in state.conns.values()):
        for fd, mask in state.epoll.poll(0.05):
            state.on_event(fd, mask)
    elapsed_s = time.monotonic() - t0
    answered = sum(state.statuses.values())
    unanswered_at_end = sum(c.in_flight() for c in state.conns.values())
    cpu_s = _cpu_s() - cpu0
    per_s = [b - a for a, b in zip([0, *per_second], per_second, strict=False)]
    report = {
        "target_per_s": rate_per_s, "window_s": round(window_s, 2),
        "connections": connections, "depth_max": depth_max,
        "written": written, "offered_per_s": round(written / window_s),
        "offered_per_s_min": min(per_s) if per_s else 0,
        "slip_requests_max": slip_max,
        "written_total": state.written,  # = answered + unanswered_on_close + unanswered_at_end
        "answered": answered, "answered_in_window": answered_in_window,
        "answered_per_s": round(answered / elapsed_s),
        "statuses": dict(state.statuses),
        "share_429": round(state.statuses["429"] / answered, 3) if answered else 0.0,
        "unanswered_at_end": unanswered_at_end, "unanswered_on_close": 0,
        **dict(state.counts), "traceback": state.traceback,
        "cpu_s": round(cpu_s, 2), "cpu_share": round(cpu_s / elapsed_s, 2),
    }
    state.shut()
    return report


def command(port: int, *, rate_per_s: int, seconds: float, connections: int,
            depth_max: int, body: bytes, host: str = "127.0.0.1") -> list[str]:
    """argv that runs this module as its own process."""
    return [sys.executable, "-m", "tests.faults.flood", "--host", host, "--port", str(port),
            "--rate", str(rate_per_s), "--seconds", str(seconds),
            "--connections", str(connections), "--depth-max", str(depth_max),
            "--body", body.decode()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=int, default=5000, help="target requests/s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--depth-max", type=int, default=16,
                        help="unanswered requests per connection at most")
    parser.add_argument("--drain-s", type=float, default=2.0)
    parser.add_argument("--body", default='{"jsonrpc":"2.0","method":"node.status","id":1}')
    args = parser.parse_args()
    report = flood(args.host, args.port, rate_per_s=args.rate, seconds=args.seconds,
                   connections=args.connections, depth_max=args.depth_max,
                   body=args.body.encode(), drain_s=args.drain_s)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
