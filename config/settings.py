"""One daemon's configuration (``config.toml``): schema, loader and writer.

Configuration is a frozen dataclass validated at load: a daemon that starts
has a config that makes sense, and a mistake stops start-up with one line
naming the file, the key and what was expected. Each field below carries its
parser and a one-line doc (see ``_schema``); units are last in key names
(``_ms``, ``_bytes``, ``_max``). Settings every replica must share live in the
genesis file instead; these are the ones a court may tune for itself.
Secrets are never in this file: it names the key file, and API tokens appear
only as SHA-256 hashes.
"""

# setting() and section() return dataclasses.field(...) objects, not shared defaults;
# ruff cannot see through the helper.
# ruff: noqa: RUF009

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from config._schema import Ctx, absolute_paths, load_table, section, setting, table_array
from config._toml_write import render_table
from config._values import (
    COURT_ID_RE,
    describe,
    want_address,
    want_bool,
    want_choice,
    want_court_id,
    want_hex64,
    want_int,
    want_text,
)
from config.errors import ConfigError
from config.genesis import Genesis
from config.keys import token_sha256

LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")
SCOPES = (
    "evidence:read",
    "evidence:write",
    "case:read",
    "case:write",
    "enforcement:read",
    "enforcement:write",
    "admin",
)
"""Fixed token scopes; ``agency:<id>`` scopes a partner agency to its own data."""
TOKENS_MAX = 1000
SCOPES_MAX = 64
_GiB = 1 << 30
_HOUR_MS = 3_600_000


def _int(lo: int, hi: int):
    return lambda value, ctx: want_int(value, lo, hi)


def _bool(value: object, ctx: Ctx) -> bool:
    return want_bool(value)


def _choice(*choices: str):
    return lambda value, ctx: want_choice(value, choices)


def _address(value: object, ctx: Ctx) -> str:
    return want_address(value)


def _path(value: object, ctx: Ctx) -> Path:
    """Relative paths are relative to the config file, not the working directory,
    so a daemon started by systemd or by a test finds the same files."""
    if type(value) is not str or not value or "\0" in value:
        raise ValueError(f"expected a non-empty path string, got {describe(value)}")
    return ctx.base_dir / value


def _scopes(value: object, ctx: Ctx) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= SCOPES_MAX:
        raise ValueError(f"expected an array of 1 to {SCOPES_MAX} scopes, got {describe(value)}")
    for scope in value:
        if not is_scope(scope):
            raise ValueError(
                f"unknown scope {describe(scope)}; expected one of {', '.join(SCOPES)} "
                "or 'agency:<id>'"
            )
    if len(set(value)) != len(value):
        raise ValueError("a scope is listed twice")
    return tuple(value)


def is_scope(scope: object) -> bool:
    if type(scope) is not str:
        return False
    prefix, _, agency = scope.partition(":")
    return scope in SCOPES or (prefix == "agency" and COURT_ID_RE.fullmatch(agency) is not None)


@dataclass(frozen=True, slots=True)
class P2PSettings:
    """Peer links. Timers are per node; a slow or dead peer must never stall the others."""

    listen: str | None = setting(
        None,
        parse=_address,
        doc="host:port to accept peers on; unset = this court's p2p_address in genesis",
    )
    tls: bool = setting(True, parse=_bool, doc="encrypt and authenticate peer links with TLS")
    plaintext_ok: bool = setting(
        False, parse=_bool, doc="must be true to allow tls = false (loopback testnets only)"
    )
    tls_cert_file: Path | None = setting(
        None, parse=_path, doc="PEM certificate for TLS; unset = derived from the node key"
    )
    tls_key_file: Path | None = setting(
        None, parse=_path, doc="PEM private key for tls_cert_file, mode 0600"
    )
    frame_bytes_max: int = setting(
        4_194_304, parse=_int(65_536, _GiB), doc="largest message frame accepted, bytes"
    )
    send_queue_frames_max: int = setting(
        1024, parse=_int(1, 1_000_000), doc="frames queued per peer before dropping, frames"
    )
    heartbeat_interval_ms: int = setting(
        1000, parse=_int(10, _HOUR_MS), doc="ping interval to each peer, milliseconds"
    )
    peer_dead_after_ms: int = setting(
        5000, parse=_int(20, _HOUR_MS), doc="silence after which a peer is dropped, milliseconds"
    )
    reconnect_backoff_min_ms: int = setting(
        200, parse=_int(1, _HOUR_MS), doc="first reconnect delay, milliseconds"
    )
    reconnect_backoff_max_ms: int = setting(
        10000, parse=_int(1, _HOUR_MS), doc="reconnect delay cap (doubling), milliseconds"
    )
    gossip_fanout: int = setting(
        3, parse=_int(1, 1000), doc="peers each gossiped message is forwarded to"
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.tls and not self.plaintext_ok:
            message = (
                "false sends consensus traffic unencrypted and unauthenticated; "
                "set plaintext_ok = true to allow it (loopback testnets only)"
            )
            yield "tls", message
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            yield "tls_cert_file", "tls_cert_file and tls_key_file must be set together"
        if self.peer_dead_after_ms <= self.heartbeat_interval_ms:
            message = (
                f"must be greater than heartbeat_interval_ms ({self.heartbeat_interval_ms}), "
                f"got {self.peer_dead_after_ms}"
            )
            yield "peer_dead_after_ms", message
        if self.reconnect_backoff_min_ms > self.reconnect_backoff_max_ms:
            message = (
                f"must not exceed reconnect_backoff_max_ms ({self.reconnect_backoff_max_ms}), "
                f"got {self.reconnect_backoff_min_ms}"
            )
            yield "reconnect_backoff_min_ms", message


@dataclass(frozen=True, slots=True)
class ConsensusSettings:
    """This node's batching and timers; parameters all replicas share are in genesis."""

    batch_requests_max: int = setting(
        1000, parse=_int(1, 100_000), doc="requests per pre-prepare batch, requests"
    )
    batch_bytes_max: int = setting(
        1_048_576, parse=_int(1024, _GiB), doc="encoded size of a batch, bytes"
    )
    batch_wait_ms: int = setting(
        5, parse=_int(0, 10_000), doc="how long the primary waits to fill a batch, milliseconds"
    )
    request_timeout_ms: int = setting(
        2000,
        parse=_int(1, _HOUR_MS),
        doc="a request not executed by then starts a view change, milliseconds",
    )
    view_change_timeout_ms: int = setting(
        4000,
        parse=_int(1, _HOUR_MS),
        doc="wait for a new view before trying the next (doubles each time), milliseconds",
    )
    block_time_skew_max_ms: int = setting(
        30000,
        parse=_int(1, 86_400_000),
        doc="largest accepted gap between a block's time and our clock, milliseconds",
    )
    pipeline_depth_max: int = setting(
        8, parse=_int(1, 1024), doc="batches in flight at once (primary only), batches"
    )
    partial_depth_max: int = setting(
        1, parse=_int(1, 1024),
        doc="a batch that is not full waits while this many are in flight, batches",
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.batch_wait_ms >= self.request_timeout_ms:
            message = (
                f"must be below request_timeout_ms ({self.request_timeout_ms}), "
                f"got {self.batch_wait_ms}"
            )
            yield "batch_wait_ms", message


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """RocksDB durability and sizing; sync_writes keeps 'committed' true across power loss."""

    sync_writes: bool = setting(True, parse=_bool, doc="fsync every commit before acknowledging it")
    ballast_bytes: int = setting(
        134_217_728,
        parse=_int(0, 1 << 40),
        doc="disk space reserved and freed when the disk "
        "fills, so the node can shut down cleanly, bytes (0 = none)",
    )
    write_buffer_bytes: int = setting(
        67_108_864, parse=_int(1 << 20, 16 * _GiB), doc="RocksDB memtable size, bytes"
    )


@dataclass(frozen=True, slots=True)
class RpcToken:
    """A bearer token's grant. Only its hash is stored, so a leaked config
    leaks no credential."""

    name: str = setting(
        parse=lambda value, ctx: want_text(value, 128), doc="who holds the token, for logs"
    )
    sha256: str = setting(
        parse=lambda value, ctx: want_hex64(value), doc="SHA-256 of the token, lowercase hex"
    )
    scopes: tuple[str, ...] = setting(
        parse=_scopes, doc="what the token may do: " + ", ".join(SCOPES) + ", agency:<id>"
    )


@dataclass(frozen=True, slots=True)
class RpcSettings:
    """The JSON-RPC server. Every size and rate has a cap, since callers include outsiders."""

    listen: str | None = setting(
        None,
        parse=_address,
        doc="host:port of the JSON-RPC server; unset = this court's rpc_address in genesis",
    )
    body_bytes_max: int = setting(
        16_777_216,
        parse=_int(1024, _GiB),
        doc="largest request body (fits an attestBatch of 10,000), bytes",
    )
    batch_len_max: int = setting(
        10000, parse=_int(1, 1_000_000), doc="calls in one JSON-RPC batch array, calls"
    )
    rate_per_s_anonymous: int = setting(
        20,
        parse=_int(1, 1_000_000),
        doc="rate tokens per second per address without a token (a simple call costs 1, "
            "rpc.discover gives each method's x-rate-cost), tokens/s",
    )
    rate_per_s_token: int = setting(
        2000, parse=_int(1, 10_000_000),
        doc="rate tokens per second per bearer token (a simple call costs 1), tokens/s"
    )
    request_timeout_ms: int = setting(
        30000,
        parse=_int(1, _HOUR_MS),
        doc="longest a call may run (wait: true included), milliseconds",
    )
    connections_max: int = setting(
        4096, parse=_int(1, 1_000_000),
        doc="open RPC connections at once; more get 503 (keep under LimitNOFILE), connections",
    )
    connections_per_address_max: int = setting(
        256, parse=_int(1, 1_000_000),
        doc="open RPC connections from one client address; more get 503, connections",
    )
    tokens: tuple[RpcToken, ...] = table_array(
        RpcToken, items_max=TOKENS_MAX, doc="bearer tokens and their scopes"
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.connections_per_address_max > self.connections_max:
            yield "connections_per_address_max", (
                f"must not exceed connections_max ({self.connections_max}), "
                f"got {self.connections_per_address_max}")
        for attr in ("name", "sha256"):
            seen: set[str] = set()
            for i, token in enumerate(self.tokens):
                value = getattr(token, attr)
                if value in seen:
                    yield f"tokens[{i}].{attr}", f"{value!r} is used by an earlier token"
                seen.add(value)

    def token_for(self, bearer: str) -> RpcToken | None:
        """The grant for a presented bearer token, or None."""
        digest = token_sha256(bearer)
        return next((t for t in self.tokens if t.sha256 == digest), None)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus metrics switch."""

    enabled: bool = setting(True, parse=_bool, doc="serve Prometheus metrics at /metrics")


@dataclass(frozen=True, slots=True)
class SystemdSettings:
    """systemd integration (sd_notify readiness and watchdog)."""

    notify: bool = setting(
        True, parse=_bool, doc="send READY=1 and watchdog pings when NOTIFY_SOCKET is set"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """One daemon's validated configuration; load it with ``load_settings``."""

    court_id: str = setting(
        parse=lambda value, ctx: want_court_id(value), doc="this node's court id in genesis"
    )
    data_dir: Path = setting(parse=_path, doc="where blocks and state live; relative to this file")
    genesis_file: Path = setting(parse=_path, doc="the chain's genesis.json; relative to this file")
    key_file: Path = setting(
        parse=_path, doc="Ed25519 private key (PEM), mode 0600; relative to this file"
    )
    log_format: str = setting(
        "auto", parse=_choice(*LOG_FORMATS), doc="json, console, or auto (console on a terminal)"
    )
    log_level: str = setting("info", parse=_choice(*LOG_LEVELS), doc="debug, info, warning, error")
    p2p: P2PSettings = section(P2PSettings, doc="links to the other courts' nodes")
    consensus: ConsensusSettings = section(ConsensusSettings, doc="PBFT batching and timers")
    storage: StorageSettings = section(StorageSettings, doc="the RocksDB stores")
    rpc: RpcSettings = section(RpcSettings, doc="JSON-RPC for court systems and agencies")
    metrics: MetricsSettings = section(MetricsSettings, doc="Prometheus metrics")
    systemd: SystemdSettings = section(SystemdSettings, doc="systemd integration")

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.consensus.batch_bytes_max >= self.p2p.frame_bytes_max:
            message = (
                f"must be below [p2p] frame_bytes_max ({self.p2p.frame_bytes_max}) so a "
                f"pre-prepare fits in one frame, got {self.consensus.batch_bytes_max}"
            )
            yield "[consensus] batch_bytes_max", message
        if self.p2p.listen is not None and self.p2p.listen == self.rpc.listen:
            yield "[rpc] listen", f"{self.rpc.listen!r} is also [p2p] listen"


def settings_from_dict(data: object, *, source: str, base_dir: Path) -> Settings:
    """Validate a parsed TOML document; relative paths resolve against ``base_dir``."""
    return load_table(Settings, data, Ctx(source, base_dir))


def load_settings(path: str | Path) -> Settings:
    """Read and validate a config file; every problem is a ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{source}: cannot read config file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: invalid TOML: {err}") from None
    return settings_from_dict(data, source=source, base_dir=Path(path).absolute().parent)


def render_settings(settings: Settings, *, base_dir: Path | None = None) -> str:
    """Commented TOML for ``settings``; paths under ``base_dir`` are written relative.

    Relative paths in ``settings`` are taken as relative to the working
    directory. The text is parsed back and compared before it is returned, so a config
    that ``pbftd init`` writes always loads; invalid settings raise ConfigError.
    """
    settings = absolute_paths(settings)
    header = ["# pbftd daemon configuration. Every key: config/examples/*.toml", ""]
    text = "\n".join([*header, *render_table(settings, base_dir)]) + "\n"
    reread = settings_from_dict(
        tomllib.loads(text), source="<rendered settings>", base_dir=base_dir or Path("/")
    )
    assert reread == settings, "rendered settings do not round-trip"
    return text


def write_settings(path: str | Path, settings: Settings, *, overwrite: bool = False) -> None:
    """Write ``render_settings`` to ``path``, paths relative to its directory."""
    path = Path(path)
    text = render_settings(settings, base_dir=path.absolute().parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; refusing to overwrite") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def listen_addresses(settings: Settings, genesis: Genesis) -> tuple[str, str]:
    """(p2p, rpc) listen addresses, falling back to this court's genesis entry."""
    if not genesis.has_court(settings.court_id):
        raise ConfigError(
            f"court_id: {settings.court_id!r} is not a court in genesis {genesis.chain_id!r} "
            f"({settings.genesis_file})"
        )
    court = genesis.court(settings.court_id)
    return (settings.p2p.listen or court.p2p_address, settings.rpc.listen or court.rpc_address)
