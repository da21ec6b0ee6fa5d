"""A whole consortium on one machine: ``pbftd testnet init`` and ``up``.

``init`` writes what a real deployment has, only on loopback: a genesis with
one court per tier (the SPC, then high, intermediate and basic courts in
turn, each supervised by the nearest court of the tier above), and for each
court a folder with its key, its config, an admin bearer token and a partner
agency's token (``icbc.token``, scope ``agency:icbc``: a bank).  ``up``
starts each court's daemon as its own process (``pbftd run``), so crashes,
SIGSTOP and restarts in tests act on real processes.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from config import Genesis, generate_key_file, generate_token, public_key_hex
from config.secret_files import write_secret_file

__all__ = ["CourtFiles", "free_base_port", "init_testnet", "listen_port_range", "spawn_daemon",
           "testnet_courts", "up_testnet"]

TIER_NAMES = [
    ("supreme", "spc", "最高人民法院"),
    ("high", "jl-high", "吉林省高级人民法院"),
    ("intermediate", "jl-cc-intermediate", "长春市中级人民法院"),
    ("basic", "jl-cc-nanguan-basic", "长春市南关区人民法院"),
]
CYCLE = ("high", "intermediate", "basic")
TESTNET_AGENCY = "icbc"


@dataclass(frozen=True)
class CourtFiles:
    court_id: str
    folder: Path
    config: Path
    rpc_url: str


def _plan(nodes: int) -> list[tuple[str, str, str, str | None]]:
    """(id, name, tier, parent) for ``nodes`` courts."""
    plan: list[tuple[str, str, str, str | None]] = []
    latest: dict[str, str] = {}
    parent_tier = {"high": "supreme", "intermediate": "high", "basic": "intermediate"}
    for i in range(nodes):
        if i < len(TIER_NAMES):
            tier, court_id, name = TIER_NAMES[i]
        else:
            tier = CYCLE[(i - 1) % 3]
            court_id, name = f"{tier}-{i}", f"测试{tier}法院 {i}"
        parent = latest.get(parent_tier[tier]) if tier != "supreme" else None
        plan.append((court_id, name, tier, parent))
        latest[tier] = court_id
    return plan


EPHEMERAL_PORTS_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def listen_port_range(ephemeral: tuple[int, int], count: int) -> tuple[int, int]:
    """Where ``free_base_port`` looks: base ports below the kernel's
    ephemeral range, else above it.  Outgoing connections take their local
    port from that range, so a port found free inside it may be taken by a
    connection (the bench's clients, peer links) before the daemon that was
    given it binds it; the daemon then exits and the run fails.  Until
    session 13 the search range was 30000-50000, most of it inside Linux's
    default 32768-60999."""
    low, high = ephemeral
    if low - count > 10_000:
        return 10_000, low - count
    if high + 1 + count <= 65_535:
        return high + 1, 65_536 - count
    return 10_000, 65_536 - count  # no room outside it: the bind check must do


def free_base_port(count: int, tries: int = 200) -> int:
    """A base port such that base..base+count-1 all bind on 127.0.0.1 now
    (for bench runs and tests that start testnets beside others), outside
    the ephemeral port range (``listen_port_range``)."""
    try:
        ephemeral = tuple(map(int, EPHEMERAL_PORTS_FILE.read_text().split()))
    except (OSError, ValueError):
        ephemeral = (32768, 60999)  # Linux's default
    low, high = listen_port_range((ephemeral[0], ephemeral[-1]), count)
    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(low, high)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free loopback ports found")


def init_testnet(directory: Path, nodes: int = 4, base_port: int = 26650,
                 chain_id: str = "court-testnet", observers: int = 0) -> list[CourtFiles]:
    if nodes < 1:
        raise ValueError("a testnet needs at least one node")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    courts, files = [], []
    for i, (court_id, name, tier, parent) in enumerate(_plan(nodes + observers)):
        role = "validator" if i < nodes else "observer"
        folder = directory / court_id
        folder.mkdir()
        key = generate_key_file(folder / "node.key")
        token, token_hash = generate_token()
        write_secret_file(folder / "admin.token", (token + "\n").encode())
        agency_token, agency_hash = generate_token()
        write_secret_file(folder / f"{TESTNET_AGENCY}.token", (agency_token + "\n").encode())
        p2p, rpc = f"127.0.0.1:{base_port + 2 * i}", f"127.0.0.1:{base_port + 2 * i + 1}"
        courts.append({"id": court_id, "name": name, "tier": tier, "parent": parent,
                       "role": role, "public_key": public_key_hex(key),
                       "p2p_address": p2p, "rpc_address": rpc})
        (folder / "config.toml").write_text(_config_text(court_id, token_hash, agency_hash))
        files.append(CourtFiles(court_id, folder, folder / "config.toml", f"http://{rpc}/"))
    genesis = Genesis.from_dict({
        "chain_id": chain_id, "genesis_time_ms": int(time.time() * 1000), "courts": courts,
        "consensus": {"checkpoint_interval_blocks": 16, "watermark_window_blocks": 64},
    }, source=str(directory / "genesis.json"))
    (directory / "genesis.json").write_text(
        json.dumps(genesis.to_dict(), ensure_ascii=False, indent=2) + "\n")
    return files


def _config_text(court_id: str, token_hash: str, agency_hash: str) -> str:
    return f"""# pbftd testnet node {court_id}: every other key keeps its documented default
# (see config/examples/ for all keys with comments).
court_id = "{court_id}"
data_dir = "data"
genesis_file = "../genesis.json"
key_file = "node.key"
log_format = "json"

[storage]
ballast_bytes = 16777216
write_buffer_bytes = 8388608

[consensus]
request_timeout_ms = 2000
view_change_timeout_ms = 3000

[[rpc.tokens]]
name = "admin"
sha256 = "{token_hash}"
scopes = ["admin"]

# A partner agency (a bank): sees only the orders addressed to it (docs/WORKFLOWS.md).
[[rpc.tokens]]
name = "{TESTNET_AGENCY}"
sha256 = "{agency_hash}"
scopes = ["agency:{TESTNET_AGENCY}"]
"""


def testnet_courts(directory: Path) -> list[CourtFiles]:
    """The courts of an existing testnet, in genesis order."""
    genesis = json.loads((directory / "genesis.json").read_text())
    return [CourtFiles(c["id"], directory / c["id"], directory / c["id"] / "config.toml",
                       f"http://{c['rpc_address']}/") for c in genesis["courts"]]


def spawn_daemon(court: CourtFiles) -> subprocess.Popen[bytes]:
    """Start one court's ``pbftd run``, its output appended to its pbftd.log.

    The daemon runs in the court's folder, not in the caller's directory:
    ``python -m`` puts the working directory first on the import path, so a
    daemon started from a source checkout (or any directory that holds a
    ``pbftd/``) would run that code and not the installed package, and an
    A/B of two trees by PYTHONPATH would compare one tree with itself.
    """
    folder = court.folder.resolve()
    with (folder / "pbftd.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pbftd.cli", "run", "--config", str(court.config.resolve())],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=folder)


def up_testnet(directory: Path, nodes: int, base_port: int, out=sys.stdout,
               observers: int = 0) -> int:
    """Start every court's daemon; stop them all on Ctrl-C or SIGTERM."""
    if not (directory / "genesis.json").exists():
        init_testnet(directory, nodes, base_port, observers=observers)
        print(f"created testnet in {directory}", file=out)
    courts = testnet_courts(directory)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for court in courts:
            procs[court.court_id] = spawn_daemon(court)
            print(f"{court.court_id:<24} pid {procs[court.court_id].pid:<7} rpc {court.rpc_url}",
                  file=out)
        first = courts[0]
        print(f"logs: {directory}/<court>/pbftd.log; admin token: {first.folder}/admin.token; "
              f"bank token (agency:{TESTNET_AGENCY}): {first.folder}/{TESTNET_AGENCY}.token",
              file=out)
        print(f"next: pbftd status --rpc {first.rpc_url}   (Ctrl-C stops the testnet)", file=out)
        out.flush()
        _supervise(procs, out)
    finally:
        _stop_all(procs)
    print("testnet stopped", file=out)
    return 0


def _supervise(procs: dict[str, subprocess.Popen[bytes]], out) -> None:
    """Block until SIGTERM or SIGINT, reporting children that exit meanwhile."""
    wanted = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    reported: set[str] = set()
    try:
        while True:
            for court_id, proc in procs.items():
                if court_id not in reported and proc.poll() is not None:
                    reported.add(court_id)
                    print(f"{court_id} exited with status {proc.returncode}; see its pbftd.log",
                          file=out, flush=True)
            if signal.sigwaitinfo(wanted).si_signo != signal.SIGCHLD:
                return
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], grace_s: float = 30.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
