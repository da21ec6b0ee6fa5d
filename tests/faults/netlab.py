"""Four daemons in their own network namespaces, for the kernel-level network
faults (issue 7, scenarios 5-8): partitions, one-way cuts, loss, duplication
(nft) and a bandwidth cap (tc tbf).

This is ../shared/faults/netns4.sh in Python, with one change: every
namespace name carries a per-run prefix (``pf<pid>``), so a run never
collides with another run or with someone using netns4.sh on the same
machine, and the fixture can delete exactly what it created.  The layout is
the same: node i lives in namespace ``<prefix>n<i>`` with address 10.77.0.i+1
on its eth0; the bridge lives in ``<prefix>br``; the host namespace gets no
interface, route or forwarding.

How the test reaches the daemons' JSON-RPC: each daemon listens for RPC on
127.0.0.1 *inside* its namespace (so nft rules on 10.77.0.0/24 and the tc
cap never touch the test's own traffic).  ``RpcForwarder`` listens on a
host loopback port and, for each connection, opens the upstream socket from
inside the namespace: the accepting thread joins the namespace with
setns(2) just long enough to create the socket (a socket stays in the
namespace it was created in), then returns to the host namespace.  The
``Cluster`` API (rpc_url, LoadLoop, invariants) is unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from pbftd.testnet import free_base_port, init_testnet
from tests.daemon.harness import PYTHON, Cluster

from .faultlib import require_root, require_tool

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _sh(*args: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in_netns(ns: str) -> socket.socket:
    """A TCP socket created inside network namespace ``ns`` (this thread
    returns to its own namespace before the call returns)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


class RpcForwarder:
    """Host 127.0.0.1:<port> -> 127.0.0.1:<target_port> inside namespace ``ns``."""

    def __init__(self, ns: str, target_port: int) -> None:
        self.ns, self.target_port = ns, target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=f"fwd-{ns}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(down,), daemon=True).start()

    def _serve(self, down: socket.socket) -> None:
        try:
            up = socket_in_netns(self.ns)
            up.settimeout(5)
            up.connect(("127.0.0.1", self.target_port))
            up.settimeout(None)
        except OSError:
            down.close()  # the daemon is down: the client sees a reset, as on loopback
            return
        t = threading.Thread(target=self._pump, args=(up, down), daemon=True)
        t.start()
        self._pump(down, up)
        t.join()
        up.close()
        down.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


class NetLab:
    """Namespaces ``<prefix>n0..n3`` on a bridge in ``<prefix>br``, and the
    faults of netns4.sh applied to them."""

    def __init__(self, nodes: int = 4, prefix: str | None = None) -> None:
        self.nodes = nodes
        self.prefix = prefix or f"pf{os.getpid()}"
        self.bridge_ns = f"{self.prefix}br"

    def ns(self, i: int) -> str:
        return f"{self.prefix}n{i}"

    @staticmethod
    def addr(i: int) -> str:
        return f"10.77.0.{i + 1}"

    @classmethod
    def available(cls) -> None:
        """Skip the calling test, naming what is missing."""
        require_root("ip netns")
        for tool in ("ip", "nft", "tc"):
            require_tool(tool)

    def up(self) -> None:
        b = self.bridge_ns
        _sh("ip", "netns", "add", b)
        _sh("ip", "-n", b, "link", "set", "lo", "up")
        _sh("ip", "-n", b, "link", "add", "br77", "type", "bridge")
        _sh("ip", "-n", b, "link", "set", "br77", "up")
        for i in range(self.nodes):
            ns = self.ns(i)
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth",
                "peer", "name", f"v{i}", "netns", b)
            _sh("ip", "-n", b, "link", "set", f"v{i}", "master", "br77")
            _sh("ip", "-n", b, "link", "set", f"v{i}", "up")
            _sh("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        self._nft(b, "add table bridge fault")
        self._nft(b, "add chain bridge fault xfwd "
                     "{ type filter hook forward priority 0; policy accept; }")

    def down(self) -> None:
        for ns in [self.ns(i) for i in range(self.nodes)] + [self.bridge_ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    @staticmethod
    def _nft(ns: str, rule: str) -> None:
        _sh("ip", "netns", "exec", ns, "nft", rule)

    # -- faults (the rules of netns4.sh) -------------------------------------

    def partition(self, *groups: list[int]) -> None:
        for a, ga in enumerate(groups):
            for b, gb in enumerate(groups):
                if a != b:
                    for x in ga:
                        for y in gb:
                            self.oneway(x, y)

    def oneway(self, src: int, dst: int) -> None:
        """Drop every packet from node ``src`` to node ``dst`` at the bridge."""
        self._nft(self.bridge_ns, f"add rule bridge fault xfwd ip saddr {self.addr(src)} "
                                  f"ip daddr {self.addr(dst)} drop")

    def _node_table(self, i: int) -> None:
        with contextlib.suppress(RuntimeError):
            self._nft(self.ns(i), "add table inet fault")
            self._nft(self.ns(i), "add chain inet fault out "
                                  "{ type filter hook output priority 0; policy accept; }")

    def loss(self, i: int, percent: int) -> None:
        """Node ``i`` drops ``percent``% of the packets it sends to other nodes."""
        self._node_table(i)
        self._nft(self.ns(i), "add rule inet fault out ip daddr 10.77.0.0/24 "
                              f"numgen random mod 100 < {percent} drop")

    def dup(self, i: int, percent: int) -> None:
        """Node ``i`` duplicates ``percent``% of the packets it sends to each peer."""
        # In an ``ip`` table as in netns4.sh: ``dup to <address>`` needs the ip family.
        with contextlib.suppress(RuntimeError):
            self._nft(self.ns(i), "add table ip faultdup")
            self._nft(self.ns(i), "add chain ip faultdup out "
                                  "{ type filter hook output priority 0; policy accept; }")
        for j in range(self.nodes):
            if j != i:
                self._nft(self.ns(i), f"add rule ip faultdup out ip daddr {self.addr(j)} "
                                      f"numgen random mod 100 < {percent} "
                                      f"dup to {self.addr(j)} device eth0")

    def rate(self, i: int, rate: str) -> None:
        _sh("tc", "-n", self.ns(i), "qdisc", "replace", "dev", "eth0", "root", "tbf",
            "rate", rate, "burst", "32kb", "latency", "100ms")

    def heal(self) -> None:
        subprocess.run(["ip", "netns", "exec", self.bridge_ns, "nft", "flush", "chain",
                        "bridge", "fault", "xfwd"], capture_output=True)
        for i in range(self.nodes):
            for family, table in (("inet", "fault"), ("ip", "faultdup")):
                subprocess.run(["ip", "netns", "exec", self.ns(i), "nft", "delete", "table",
                                family, table], capture_output=True)
            subprocess.run(["tc", "-n", self.ns(i), "qdisc", "del", "dev", "eth0", "root"],
                           capture_output=True)


@dataclasses.dataclass
class NetnsCluster(Cluster):
    """A testnet whose node i runs in ``lab.ns(i)`` on 10.77.0.i+1; its RPC
    is reached through an ``RpcForwarder``."""

    lab: NetLab | None = None
    forwarders: list[RpcForwarder] = dataclasses.field(default_factory=list)

    @classmethod
    def create_in(cls, directory: Path, lab: NetLab) -> NetnsCluster:
        base = free_base_port(2 * lab.nodes)
        courts = init_testnet(directory, lab.nodes, base)
        genesis_path = directory / "genesis.json"
        genesis = json.loads(genesis_path.read_text())
        forwarders, rewired = [], []
        for i, (court, entry) in enumerate(zip(courts, genesis["courts"], strict=True)):
            p2p_port = entry["p2p_address"].rsplit(":", 1)[1]
            rpc_port = int(entry["rpc_address"].rsplit(":", 1)[1])
            entry["p2p_address"] = f"{lab.addr(i)}:{p2p_port}"
            entry["rpc_address"] = f"{lab.addr(i)}:{rpc_port}"
            text = court.config.read_text().replace(
                "[[rpc.tokens]]", f'[rpc]\nlisten = "127.0.0.1:{rpc_port}"\n\n[[rpc.tokens]]', 1)
            court.config.write_text(text)
            fwd = RpcForwarder(lab.ns(i), rpc_port)
            forwarders.append(fwd)
            rewired.append(dataclasses.replace(court, rpc_url=f"http://127.0.0.1:{fwd.port}/"))
        genesis_path.write_text(json.dumps(genesis, ensure_ascii=False, indent=2) + "\n")
        return cls(directory, rewired, lab=lab, forwarders=forwarders)

    def index(self, court_id: str) -> int:
        return self.ids.index(court_id)

    def start(self, court_id: str) -> subprocess.Popen[bytes]:
        assert self.lab is not None
        court = self.court(court_id)
        assert court_id not in self.procs or self.procs[court_id].poll() is not None, \
            f"{court_id} is already running"
        ns = self.lab.ns(self.index(court_id))
        with (court.folder / "pbftd.log").open("ab") as log:
            # ``ip netns exec`` execs the command: the pid is the daemon's.
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, PYTHON, "-m", "pbftd.cli", "run",
                 "--config", str(court.config)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.procs[court_id] = proc
        self.started.append(proc)
        return proc

    def close(self) -> None:
        super().close()
        for fwd in self.forwarders:
            fwd.close()


@contextlib.contextmanager
def netns_cluster(directory: Path) -> Iterator[NetnsCluster]:
    """Namespaces up, four daemons started in them and ready; all torn down after."""
    NetLab.available()
    lab = NetLab()
    lab.down()  # leftovers of a killed run with the same pid
    try:
        lab.up()
        with NetnsCluster.create_in(directory, lab).serving() as cluster:
            yield cluster
    finally:
        lab.heal()
        lab.down()


__all__ = ["NetLab", "NetnsCluster", "RpcForwarder", "netns_cluster", "socket_in_netns"]
