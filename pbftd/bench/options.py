"""``pbftd bench`` settings and their checks (one-line messages for the CLI)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from config.errors import ConfigError
from config.settings import Settings, settings_from_dict

from ..evidence_batch import ITEMS_MAX
from .http import split_url

__all__ = ["MODES", "REPEAT_MAX", "VALIDATOR_COUNTS", "BenchOptions", "OptionError"]

MODES = ("attest", "batch", "open", "mixed", "catchup")
VALIDATOR_COUNTS = (4, 7, 10)
REPEAT_MAX = 20
DEFAULT_CLIENTS = {"attest": 64, "batch": 8, "open": 256, "mixed": 64, "catchup": 8}
# --set [section.]key=value: a node setting for every node of the local cluster
_SETTING = re.compile(r"(?:([a-z0-9_]+)\.)?([a-z0-9_]+)=(\S.*)")
# keys that make the local cluster what it is: its layout and the bench's token
_BENCH_OWNED = {"court_id", "data_dir", "genesis_file", "key_file", "rpc.tokens"}
# the required keys of a config, so that --set alone can be checked by the real loader
_REQUIRED = {"court_id": "spc", "data_dir": "data", "genesis_file": "genesis.json",
             "key_file": "node.key"}


class OptionError(ValueError):
    """A bad combination of bench options; the message is one line."""


@dataclass
class BenchOptions:
    mode: str = "batch"
    validators: int = 4
    observers: int = 0
    rpc: list[str] = field(default_factory=list)  # empty: start a local cluster
    tokens: list[str] = field(default_factory=list)
    clients: int | None = None  # None: DEFAULT_CLIENTS[mode]
    batch_size: int = 1000
    rate: float | None = None  # open loop, attestations/s
    read_ratio: float = 0.5  # mixed: share of calls that are evidence.verify
    duration_s: float = 30.0
    warmup_s: float = 5.0
    title_chars: int = 0  # optional title per attestation (payload size)
    call_timeout_s: float = 60.0
    keep_dir: str | None = None  # local cluster: keep its directory here
    stop_grace_s: float = 15.0
    settings: list[str] = field(default_factory=list)  # "[section.]key=toml value"
    count: int = 100_000  # catchup: attestations loaded before the wipe
    repeat: int = 1  # runs of a series (bench/series.py)

    @property
    def local(self) -> bool:
        return not self.rpc

    def check(self) -> BenchOptions:
        """Fill defaults and raise OptionError on the first problem."""
        if self.mode not in MODES:
            raise OptionError(f"--mode must be one of {', '.join(MODES)}")
        if self.local:
            if self.validators not in VALIDATOR_COUNTS:
                raise OptionError("--validators must be 4, 7 or 10")
            if self.observers < 0:
                raise OptionError("--observers must not be negative")
            if self.tokens:
                raise OptionError("--token is only for --rpc targets")
        else:
            for url in self.rpc:
                try:
                    split_url(url)
                except ValueError as exc:
                    raise OptionError(f"--rpc: {exc}") from None
            if not self.tokens:
                raise OptionError("--rpc targets need --token (once, or once per --rpc)")
            if len(self.tokens) not in (1, len(self.rpc)):
                raise OptionError(f"give one --token or one per --rpc ({len(self.rpc)}), "
                                  f"not {len(self.tokens)}")
            if self.keep_dir:
                raise OptionError("--keep-dir is only for a local cluster")
            if self.settings:
                raise OptionError("--set is only for a local cluster")
            if self.mode == "catchup":
                raise OptionError("--mode catchup needs a local cluster")
        node_settings = _check_settings(self.settings)
        if not 1 <= self.repeat <= REPEAT_MAX:
            raise OptionError(f"--repeat must be between 1 and {REPEAT_MAX}")
        if self.repeat > 1 and self.keep_dir:
            raise OptionError("--keep-dir keeps one cluster; it cannot be used with --repeat")
        if not 1 <= self.count <= 100_000_000:
            raise OptionError("--count must be between 1 and 100000000")
        if self.clients is None:
            self.clients = DEFAULT_CLIENTS[self.mode]
        if not 1 <= self.clients <= 4096:
            raise OptionError("--clients must be between 1 and 4096")
        if self.mode == "open":
            if self.rate is None:
                raise OptionError("--mode open needs --rate (attestations/s)")
            if not self.rate > 0:
                raise OptionError("--rate must be positive")
        elif self.rate is not None:
            raise OptionError("--rate is only for --mode open")
        if not 1 <= self.batch_size <= ITEMS_MAX:
            raise OptionError(f"--batch-size must be between 1 and {ITEMS_MAX}")
        if not 0.0 <= self.read_ratio < 1.0:
            raise OptionError("--read-ratio must be at least 0 and below 1")
        if not self.duration_s > 0:
            raise OptionError("--duration must be positive")
        if not self.warmup_s >= 0:
            raise OptionError("--warmup must not be negative")
        if not 0 <= self.title_chars <= 200:
            raise OptionError("--title-chars must be between 0 and 200")
        if not self.call_timeout_s > 0:
            raise OptionError("--call-timeout must be positive")
        if self.local:
            _check_connections(self, node_settings.rpc.connections_per_address_max)
        return self

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tokens"] = len(self.tokens)  # never write a credential into a report
        out["local"] = self.local
        if self.mode != "batch":
            out.pop("batch_size")
        if self.mode != "mixed":
            out.pop("read_ratio")
        if self.mode != "catchup":
            out.pop("count")
        return out


def connections_per_validator(opts: BenchOptions) -> int:
    """Keep-alive connections the bench holds to one validator at once: its
    share of the load clients (writes go to validators), of the readers
    (mixed: every node), and the one it opens for node.status and /metrics."""
    assert opts.clients is not None
    writers = -(-opts.clients // opts.validators)
    readers = -(-opts.clients // (opts.validators + opts.observers)) if opts.mode == "mixed" else 0
    return writers + readers + 1


def _check_connections(opts: BenchOptions, per_address_max: int) -> None:
    """Refuse a local run whose connections a node would refuse.  Why: every
    connection comes from 127.0.0.1, and the bench's own node.status call
    at the window's edges was the one turned away (HTTP 503), so the run
    lost its block count without a word (session 11, --clients 1024)."""
    need = connections_per_validator(opts)
    if need > per_address_max:
        raise OptionError(
            f"--clients {opts.clients} needs {need} connections to each validator (the bench's "
            f"status calls included), but a node accepts {per_address_max} from one address: "
            f"use fewer clients or --set rpc.connections_per_address_max={need}")


def _check_settings(settings: list[str]) -> Settings:
    """Check every --set before a cluster starts, with config's own loader:
    the key must exist, the value must be TOML and what that key accepts.
    Why here: a bad value used to surface only as daemons exiting at start."""
    document: dict[str, Any] = dict(_REQUIRED)
    for setting in settings:
        match = _SETTING.fullmatch(setting)
        if match is None:
            raise OptionError(f"--set {setting!r}: expected key=value or section.key=value")
        section, key, text = match.groups()
        if (f"{section}.{key}" if section else key) in _BENCH_OWNED:
            raise OptionError(f"--set {setting!r}: the bench's local cluster sets this itself")
        try:
            parsed = tomllib.loads(f"value = {text}")
        except tomllib.TOMLDecodeError:
            parsed = {}
        if list(parsed) != ["value"]:
            raise OptionError(f"--set {setting!r}: {text!r} is not one TOML value "
                              f"(text needs quotes: {key}=\"...\")")
        table = document.setdefault(section, {}) if section else document
        if not isinstance(table, dict):
            raise OptionError(f"--set {setting!r}: {section!r} is a key, not a section")
        table[key] = parsed["value"]
    try:
        return settings_from_dict(document, source="--set", base_dir=Path("/"))
    except ConfigError as exc:
        raise OptionError(str(exc)) from None
