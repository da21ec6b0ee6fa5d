"""The genesis file: the chain's founding document, identical on every node.

It names the chain, the courts that take part (with their supervision tree,
their role in consensus, their public keys and addresses) and the consensus
parameters every replica must agree on. Because replicas compare
``genesis_hash()`` before talking, the file is validated strictly: an unknown
key, a wrong type or a broken court tree is refused with a message naming the
file and the key path (``genesis.json: courts[2].tier: ...``) rather than
producing a chain that silently differs from its peers'.

Rules kept here (documented for operators in ``config/GENESIS.md``):
ids, public keys and p2p addresses are unique; only a supreme court has no
parent; a parent exists in the file and is of a strictly higher tier; there are
no cycles; at least one court is a validator.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config._values import (
    describe,
    want_address,
    want_choice,
    want_court_id,
    want_hex64,
    want_int,
    want_match,
    want_text,
)
from config.errors import ConfigError

TIERS = ("supreme", "high", "intermediate", "basic")
"""Court tiers from the top of the supervision tree down (最高/高级/中级/基层)."""
ROLES = ("validator", "observer")
COURTS_MAX = 10_000  # about 3,500 courts in the country
NAME_CHARS_MAX = 200
_CHAIN_ID_RE = re.compile(r"[a-z0-9-]{1,64}")
_TIME_MS_MAX = 2**63 - 1
_COURT_KEYS = ("id", "name", "tier", "parent", "role", "public_key", "p2p_address", "rpc_address")
_TOP_KEYS_REQUIRED = ("chain_id", "genesis_time_ms", "courts")
_TOP_KEYS = (*_TOP_KEYS_REQUIRED, "consensus", "workflows")


@dataclass(frozen=True, slots=True)
class Court:
    """One court's entry: who it is, whom it answers to, how to reach it."""

    id: str
    name: str
    tier: str
    parent: str | None
    role: str
    public_key: str
    p2p_address: str
    rpc_address: str

    @property
    def is_validator(self) -> bool:
        return self.role == "validator"

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _COURT_KEYS}


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    """Parameters all replicas must share, so they live in genesis, not in config.toml."""

    checkpoint_interval_blocks: int = 16
    watermark_window_blocks: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint_interval_blocks": self.checkpoint_interval_blocks,
            "watermark_window_blocks": self.watermark_window_blocks,
        }


@dataclass(frozen=True, slots=True)
class WorkflowParams:
    """Parameters of the judicial workflow engine (pbftd.workflows.Config).

    Every node executes the workflows with them, so a node that used other
    values would reach another state root: they belong here, not in
    config.toml."""

    warn_lead_days: tuple[int, ...] = (30, 7)
    reminder_days: int = 3
    deadlines_per_block: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "warn_lead_days": list(self.warn_lead_days),
            "reminder_days": self.reminder_days,
            "deadlines_per_block": self.deadlines_per_block,
        }


@dataclass(frozen=True, slots=True)
class Genesis:
    """A validated genesis. Build it with ``from_dict`` or ``load_genesis``;
    the constructor trusts its caller."""

    chain_id: str
    genesis_time_ms: int
    courts: tuple[Court, ...]
    consensus: ConsensusParams = field(default_factory=ConsensusParams)
    workflows: WorkflowParams = field(default_factory=WorkflowParams)
    _by_id: dict[str, Court] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {c.id: c for c in self.courts})

    @classmethod
    def from_dict(cls, data: object, source: str = "genesis.json") -> "Genesis":
        """Validate parsed JSON; ``source`` names the file in error messages."""
        return _parse_genesis(data, source)

    def to_dict(self) -> dict[str, Any]:
        """The full document, defaults included, so equal chains hash equal.

        ``workflows`` appears only when it differs from the defaults: a file
        that omits it and one that spells the defaults out hash alike, and
        chains founded before the section existed keep their genesis hash."""
        out = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "courts": [c.to_dict() for c in self.courts],
            "consensus": self.consensus.to_dict(),
        }
        if self.workflows != WorkflowParams():
            out["workflows"] = self.workflows.to_dict()
        return out

    def canonical_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def genesis_hash(self) -> bytes:
        """SHA-256 of the canonical JSON: the chain's identity, compared at handshake."""
        return hashlib.sha256(self.canonical_json()).digest()

    def genesis_hash_hex(self) -> str:
        return self.genesis_hash().hex()

    def validators(self) -> list[Court]:
        """Validator courts in file order; replicas number themselves by this order."""
        return [c for c in self.courts if c.is_validator]

    def observers(self) -> list[Court]:
        return [c for c in self.courts if not c.is_validator]

    @property
    def f(self) -> int:
        """Faulty validators tolerated: the largest f with n >= 3f + 1."""
        return (len(self.validators()) - 1) // 3

    @property
    def quorum(self) -> int:
        """The consensus quorum, the same rule as pbftd.core.validators:
        ceil((n + f + 1) / 2), the smallest size at which two quorums share
        f + 1 validators (so at least one honest). Equals 2f + 1 when
        n = 3f + 1."""
        return (len(self.validators()) + self.f + 2) // 2

    def court(self, court_id: str) -> Court:
        """The court with this id; KeyError if the genesis has none."""
        try:
            return self._by_id[court_id]
        except KeyError:
            raise KeyError(f"no court {court_id!r} in genesis {self.chain_id!r}") from None

    def has_court(self, court_id: str) -> bool:
        return court_id in self._by_id

    def ancestors(self, court_id: str) -> list[Court]:
        """The supervision chain above a court: its parent first, the root last."""
        chain: list[Court] = []
        parent = self.court(court_id).parent
        while parent is not None:
            court = self._by_id[parent]
            chain.append(court)
            parent = court.parent
            assert len(chain) <= len(self.courts), "validated genesis has a parent cycle"
        return chain

    def is_supervisor(self, supervisor_id: str, court_id: str) -> bool:
        """True if ``supervisor_id`` is the court itself or any court above it."""
        if supervisor_id == court_id:
            self.court(court_id)
            return True
        self.court(supervisor_id)
        return any(c.id == supervisor_id for c in self.ancestors(court_id))


def canonical_json(obj: object) -> bytes:
    """The one byte form hashed everywhere: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_genesis(path: str | Path) -> Genesis:
    """Read and validate a genesis file; every problem is a ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{source}: cannot read genesis file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text: {err}") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except ValueError as err:
        raise ConfigError(f"{source}: invalid JSON: {err}") from None
    return Genesis.from_dict(data, source)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


class _Where:
    """Turns a key path into the error prefix, so every check reports alike."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    def check(self, key: str, check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except ValueError as err:
            raise self.error(key, str(err)) from None

    def keys(self, key: str, obj: object, allowed: tuple[str, ...], required: tuple[str, ...]):
        if not isinstance(obj, dict):
            raise self.error(key, f"expected an object, got {describe(obj)}")
        for name in obj:
            if name not in allowed:
                raise self.error(key, f"unknown key {name!r}; allowed: {', '.join(allowed)}")
        for name in required:
            if name not in obj:
                raise self.error(key, f"missing required key {name!r}")


def _parse_genesis(data: object, source: str) -> Genesis:
    where = _Where(source)
    where.keys("(top level)", data, _TOP_KEYS, _TOP_KEYS_REQUIRED)
    assert isinstance(data, dict)
    chain_id = where.check(
        "chain_id", want_match, data["chain_id"], _CHAIN_ID_RE, "1-64 characters [a-z0-9-]"
    )
    time_ms = where.check("genesis_time_ms", want_int, data["genesis_time_ms"], 0, _TIME_MS_MAX)
    raw_courts = data["courts"]
    if not isinstance(raw_courts, list) or not 1 <= len(raw_courts) <= COURTS_MAX:
        raise where.error(
            "courts", f"expected an array of 1 to {COURTS_MAX} courts, got {describe(raw_courts)}"
        )
    courts = tuple(_parse_court(where, f"courts[{i}]", obj) for i, obj in enumerate(raw_courts))
    _check_unique(where, courts)
    _check_tree(where, courts)
    if not any(c.is_validator for c in courts):
        raise where.error("courts", "at least one court must have role 'validator'")
    consensus = _parse_consensus(where, data.get("consensus", {}))
    workflows = _parse_workflows(where, data.get("workflows", {}))
    return Genesis(chain_id, time_ms, courts, consensus, workflows)


def _parse_court(where: _Where, key: str, obj: object) -> Court:
    where.keys(key, obj, _COURT_KEYS, _COURT_KEYS)
    assert isinstance(obj, dict)
    parent = obj["parent"]
    return Court(
        id=where.check(f"{key}.id", want_court_id, obj["id"]),
        name=where.check(f"{key}.name", want_text, obj["name"], NAME_CHARS_MAX),
        tier=where.check(f"{key}.tier", want_choice, obj["tier"], TIERS),
        parent=None if parent is None else where.check(f"{key}.parent", want_court_id, parent),
        role=where.check(f"{key}.role", want_choice, obj["role"], ROLES),
        public_key=where.check(f"{key}.public_key", want_hex64, obj["public_key"]),
        p2p_address=where.check(f"{key}.p2p_address", want_address, obj["p2p_address"]),
        rpc_address=where.check(f"{key}.rpc_address", want_address, obj["rpc_address"]),
    )


def _check_unique(where: _Where, courts: tuple[Court, ...]) -> None:
    for attr in ("id", "public_key", "p2p_address"):
        first_index: dict[str, int] = {}
        for i, court in enumerate(courts):
            value = getattr(court, attr)
            if value in first_index:
                raise where.error(
                    f"courts[{i}].{attr}",
                    f"{value!r} is already used by courts[{first_index[value]}]",
                )
            first_index[value] = i


def _check_tree(where: _Where, courts: tuple[Court, ...]) -> None:
    """Parents exist, form no cycle, and sit strictly higher in the tiers."""
    by_id = {c.id: c for c in courts}
    for i, court in enumerate(courts):
        if court.parent is not None and court.parent not in by_id:
            raise where.error(f"courts[{i}].parent", f"no court with id {court.parent!r}")
    for i, court in enumerate(courts):
        path = [court.id]
        parent = court.parent
        while parent is not None:
            path.append(parent)
            if parent == court.id:
                raise where.error(f"courts[{i}].parent", f"cycle: {' -> '.join(path)}")
            if len(path) > len(courts) + 1:
                break  # a cycle above this court; reported at a court on it
            parent = by_id[parent].parent
    for i, court in enumerate(courts):
        _check_tier(where, f"courts[{i}].parent", court, by_id)


def _check_tier(where: _Where, key: str, court: Court, by_id: dict[str, Court]) -> None:
    if court.parent is None:
        if court.tier != "supreme":
            raise where.error(
                key, f"only a supreme court may have no parent; {court.id!r} is {court.tier}"
            )
        return
    parent = by_id[court.parent]
    if TIERS.index(parent.tier) >= TIERS.index(court.tier):
        raise where.error(
            key,
            f"parent {parent.id!r} is {parent.tier}, not a higher tier than "
            f"{court.id!r} ({court.tier}); tiers from the top: {', '.join(TIERS)}",
        )


def _parse_consensus(where: _Where, obj: object) -> ConsensusParams:
    names = ("checkpoint_interval_blocks", "watermark_window_blocks")
    where.keys("consensus", obj, names, ())
    assert isinstance(obj, dict)
    defaults = ConsensusParams()
    interval = where.check(
        "consensus.checkpoint_interval_blocks",
        want_int,
        obj.get("checkpoint_interval_blocks", defaults.checkpoint_interval_blocks),
        1,
        65_536,
    )
    window = where.check(
        "consensus.watermark_window_blocks",
        want_int,
        obj.get("watermark_window_blocks", defaults.watermark_window_blocks),
        2,
        1_048_576,
    )
    if window < 2 * interval:
        raise where.error(
            "consensus.watermark_window_blocks",
            f"must be at least twice checkpoint_interval_blocks ({interval}), got {window}, "
            "or replicas stall waiting for a checkpoint to become stable",
        )
    return ConsensusParams(interval, window)


WARN_LEADS_MAX = 8


def _parse_workflows(where: _Where, obj: object) -> WorkflowParams:
    names = ("warn_lead_days", "reminder_days", "deadlines_per_block")
    where.keys("workflows", obj, names, ())
    assert isinstance(obj, dict)
    defaults = WorkflowParams()
    leads = obj.get("warn_lead_days", list(defaults.warn_lead_days))
    if not isinstance(leads, list) or len(leads) > WARN_LEADS_MAX:
        raise where.error("workflows.warn_lead_days",
                          f"expected an array of at most {WARN_LEADS_MAX} day counts, "
                          f"got {describe(leads)}")
    for i, lead in enumerate(leads):
        where.check(f"workflows.warn_lead_days[{i}]", want_int, lead, 1, 3660)
    if len(set(leads)) != len(leads):
        raise where.error("workflows.warn_lead_days", "a lead time is listed twice")
    reminder = where.check("workflows.reminder_days", want_int,
                           obj.get("reminder_days", defaults.reminder_days), 0, 365)
    per_block = where.check("workflows.deadlines_per_block", want_int,
                            obj.get("deadlines_per_block", defaults.deadlines_per_block),
                            1, 100_000)
    return WorkflowParams(tuple(sorted(leads, reverse=True)), reminder, per_block)
