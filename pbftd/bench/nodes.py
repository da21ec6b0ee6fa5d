"""The nodes a bench drives: a local cluster it starts and stops, or running
nodes given by URL and token; per-process CPU and memory from /proc.

Only the daemons this module starts are ever signalled, by the pids their
``subprocess.Popen`` returned: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..testnet import free_base_port, init_testnet, spawn_daemon
from .http import Connection, HttpError

__all__ = ["LocalCluster", "ProcSample", "Target", "apply_settings", "free_base_port",
           "metric_value", "node_height", "proc_sample"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    court_id: str
    url: str
    token: str | None
    validator: bool = True
    pid: int | None = None  # set when this bench started the node
    name: str = ""  # the court's name, from node.status


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float  # utime + stime
    rss_peak_kb: int  # VmHWM
    rss_kb: int  # VmRSS


def proc_sample(pid: int) -> ProcSample | None:
    """CPU seconds and memory of a live process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    mem = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            mem[name] = int(value.split()[0])
    return ProcSample(cpu, mem.get("VmHWM", 0), mem.get("VmRSS", 0))


async def node_height(target: Target) -> int | None:
    """The node's executed height (``node.status``), or None while it does not answer."""
    conn = Connection(target.url, target.token)
    try:
        reply = await conn.post_json({"jsonrpc": "2.0", "id": 1, "method": "node.status",
                                      "params": {}})
        return int(reply.json()["result"]["height"])
    except (HttpError, ValueError, KeyError, TypeError):
        return None
    finally:
        await conn.aclose()


_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled metric in Prometheus text format."""
    for line in text.splitlines():
        m = _METRIC_LINE.match(line)
        if m and m.group(1) == name and not m.group(2):
            try:
                return float(m.group(3))
            except ValueError:
                return None
    return None


def apply_settings(config: Path, settings: list[str]) -> None:
    """Set ``[section.]key=value`` lines (TOML values, checked by the bench's
    options) in a testnet config.toml: replace the key where its table has
    it, else add it at the top of that table (a new section goes at the end;
    a top-level key goes before the first table)."""
    lines = config.read_text().splitlines()
    for setting in settings:
        name, _, value = setting.partition("=")
        section, _, key = name.rpartition(".")
        if section:
            header = f"[{section}]"
            if header not in lines:
                lines += ["", header]
            start = lines.index(header) + 1
        else:
            start = 0
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")),
                   len(lines))
        lines[start:end] = [ln for ln in lines[start:end]
                            if ln.split("=")[0].strip() != key]
        lines.insert(start, f"{key} = {value.strip()}")
    config.write_text("\n".join(lines) + "\n")


class LocalCluster:
    """A fresh testnet in a temporary directory, as one process per court."""

    def __init__(self, validators: int, observers: int = 0, keep_dir: str | None = None,
                 stop_grace_s: float = 15.0, settings: list[str] | None = None) -> None:
        self.validators, self.observers = validators, observers
        self.settings = list(settings or ())
        self.stop_grace_s = stop_grace_s
        self.keep_dir = Path(keep_dir) if keep_dir else None
        self.directory: Path | None = None
        self._tmp: str | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.targets: list[Target] = []

    def start(self) -> list[Target]:
        if self.keep_dir is not None:
            self.directory = self.keep_dir
        else:
            self._tmp = tempfile.mkdtemp(prefix="pbftd-bench-")
            self.directory = Path(self._tmp) / "testnet"
        total = self.validators + self.observers
        courts = init_testnet(self.directory, self.validators, free_base_port(2 * total),
                              chain_id="court-bench", observers=self.observers)
        self._courts = {court.court_id: court for court in courts}
        for i, court in enumerate(courts):
            apply_settings(court.config, self.settings)
            token = (court.folder / "admin.token").read_text().strip()
            proc = self._spawn(court.court_id)
            self.targets.append(Target(court.court_id, court.rpc_url, token,
                                       validator=i < self.validators, pid=proc.pid))
        return self.targets

    def _spawn(self, court_id: str) -> subprocess.Popen[bytes]:
        proc = spawn_daemon(self._courts[court_id])
        self.procs[court_id] = proc
        return proc

    def restart_wiped(self, target: Target) -> None:
        """Stop one daemon, delete its data directory, start it again empty."""
        proc = self.procs[target.court_id]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._courts[target.court_id].folder / "data")
        target.pid = self._spawn(target.court_id).pid

    def exited(self) -> list[str]:
        """Courts whose daemon has exited, with status and log path."""
        assert self.directory is not None
        return [f"{cid} exited with status {p.returncode} (log: "
                f"{self.directory / cid / 'pbftd.log'})"
                for cid, p in self.procs.items() if p.poll() is not None]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every daemon started here, SIGKILL those still up after the grace."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        codes: dict[str, int | None] = {}
        for court_id, proc in self.procs.items():
            try:
                codes[court_id] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                codes[court_id] = proc.wait()
        return codes

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @classmethod
    @contextlib.contextmanager
    def running(cls, *args: object, **kwargs: object) -> Iterator[LocalCluster]:
        cluster = cls(*args, **kwargs)  # type: ignore[arg-type]
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            cluster.cleanup()
