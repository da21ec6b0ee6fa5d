"""A seeded fault shim for single consensus messages, in real daemons (issue 7).

Why it exists: the kernel tools and the delay proxy act on byte streams, and
TCP hides what they do from the daemon: it never sees a message lost,
duplicated, reordered or replayed.  This shim acts on the messages
themselves, by type, just before the mesh queues them.

Theory of operation.
* It lives only under tests/ and is installed only by its own launcher,
  ``python -m tests.faults.msgshim --plan FILE --seed N [--counts FILE] --
  run --config X``, which patches the public entry points of ``p2p.Mesh``
  and then calls ``pbftd.cli.main``.  The installed daemon has no hook and no
  switch for it.
* The runtime hands the mesh one signed message per frame (``Send``,
  ``Broadcast`` and ``ServeBlocks`` actions each carry one); the mesh packs
  several frames into one websocket message only later, inside the link.  So
  wrapping ``Mesh.send`` and ``Mesh.broadcast`` acts on exactly one message
  at a time, and its type can be read from the frame's first bytes
  (``message_type``).  ``broadcast`` is split into one ``send`` per
  validator only while a rule may apply to that type, so that every link
  decides on its own; otherwise the mesh's own ``broadcast`` runs unchanged.
* Every decision comes from a ``random.Random`` seeded by (seed, sender,
  receiver, type), drawn a fixed number of times per message: the k-th
  message of a type on a link gets the same decision for the same seed,
  however the other types interleave, so a failing schedule replays from
  the seed (as far as the real processes send the same messages).
* Per message, in order: drop; otherwise a duplicate copy, a delay (the
  message and its copy leave together, later, in a task of a nursery the
  shim opens around ``Mesh.run``: messages sent after it overtake it, which
  is the reordering), and a replay of an earlier message of the same type on
  the same link (the receiver checks that the signer is the link's peer, so a
  replay can only go where the original went).
* The plan may give a window in seconds since the launcher started; after it
  the shim does nothing more, which is how a scenario heals.
* Counts per type (seen, dropped, duplicated, delayed, replayed) are written
  as JSON to the counts file every second and at exit, and logged as
  ``msgshim_healed`` and ``msgshim_counts`` lines, so a test can assert that
  faults really happened.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import cbor2
import structlog
import trio

from pbftd.core.messages import MESSAGE_TYPES

__all__ = ["KINDS", "TYPES", "Counts", "Decision", "LinkDecider", "MeshShim", "Plan",
           "PlanError", "Rule", "install", "launcher_args", "main", "message_type"]

TYPES = frozenset(MESSAGE_TYPES)
KINDS = ("seen", "dropped", "duplicated", "delayed", "replayed")
ANY = "*"
DELAY_MS_MAX = 60_000
REPLAY_HISTORY_MAX = 64
REPLAY_HISTORY_DEFAULT = 8
# Delayed messages held at once; beyond it a message leaves at once (counted).
DELAYED_IN_FLIGHT_MAX = 4096
REPORT_INTERVAL_S = 1.0


# ---------------------------------------------------------------- message type


def message_type(frame: object) -> str | None:
    """The type a frame ``[signed, sig, extra]`` names inside ``signed``
    (``[domain, chain, type, sender, body]``), or None if it is not one.

    Decoded with cbor2 (CBOR is never read by hand here either); its C
    decoder takes a fraction of a millisecond for a PRE-PREPARE of
    hundreds of requests, a few for a BLOCKS reply of megabytes.  Nothing
    is verified: the shim only sorts frames for its plan."""
    if type(frame) is not bytes:
        return None
    try:
        outer = cbor2.loads(frame)
        if type(outer) is not list or len(outer) != 3 or type(outer[0]) is not bytes:
            return None
        signed = cbor2.loads(outer[0])
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError, RecursionError):
        return None
    if type(signed) is not list or len(signed) != 5:
        return None
    name = signed[2]
    return name if type(name) is str and name in TYPES else None


# ---------------------------------------------------------------- the plan


class PlanError(ValueError):
    """A plan that cannot be run as written; the message names the field."""


def _probability(raw: Mapping[str, Any], key: str, where: str) -> float:
    value = raw.get(key, 0.0)
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0 or math.isnan(value):
        raise PlanError(f"{where}.{key}: {value!r} is not a probability in [0, 1]")
    return float(value)


def _names(raw: Mapping[str, Any], key: str, where: str, known: frozenset[str] | None,
           ) -> frozenset[str]:
    value = raw.get(key, [ANY])
    if isinstance(value, str):
        value = [value]
    if type(value) is not list or not value:
        raise PlanError(f"{where}.{key}: {value!r} is not a non-empty list of names")
    out = set()
    for name in value:
        if type(name) is not str or not name:
            raise PlanError(f"{where}.{key}: {name!r} is not a name")
        name = name.lower() if known is not None else name
        if known is not None and name != ANY and name not in known:
            raise PlanError(f"{where}.{key}: unknown message type {name!r} "
                            f"(known: {', '.join(sorted(known))}, or '*')")
        out.add(name)
    return frozenset(out)


def _range(value: Any, where: str, hi_max: float, what: str) -> tuple[float, float]:
    if (type(value) is not list or len(value) != 2
            or any(type(v) not in (int, float) or math.isnan(v) for v in value)):
        raise PlanError(f"{where}: {value!r} is not a [low, high] pair of numbers ({what})")
    lo, hi = float(value[0]), float(value[1])
    if not 0.0 <= lo <= hi <= hi_max:
        raise PlanError(f"{where}: {value!r} needs 0 <= low <= high <= {hi_max:g} ({what})")
    return lo, hi


def _only(raw: Any, allowed: frozenset[str], where: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: {raw!r:.80} is not an object")
    unknown = set(raw) - allowed
    if unknown:
        raise PlanError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(allowed: {', '.join(sorted(allowed))})")
    return raw


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What happens to messages of ``types`` from ``senders`` to ``receivers``."""

    types: frozenset[str] = frozenset({ANY})
    senders: frozenset[str] = frozenset({ANY})
    receivers: frozenset[str] = frozenset({ANY})
    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_ms: tuple[float, float] = (0.0, 0.0)
    replay: float = 0.0

    FIELDS = frozenset({"types", "from", "to", "drop", "duplicate", "delay", "delay_ms",
                        "replay"})

    @classmethod
    def parse(cls, raw: Any, where: str) -> Rule:
        raw = _only(raw, cls.FIELDS, where)
        delay = _probability(raw, "delay", where)
        if "delay_ms" in raw:
            delay_ms = _range(raw["delay_ms"], f"{where}.delay_ms", DELAY_MS_MAX, "milliseconds")
        elif delay > 0:
            raise PlanError(f"{where}.delay_ms: required when delay > 0 (e.g. [0, 200])")
        else:
            delay_ms = (0.0, 0.0)
        return cls(types=_names(raw, "types", where, TYPES),
                   senders=_names(raw, "from", where, None),
                   receivers=_names(raw, "to", where, None),
                   drop=_probability(raw, "drop", where),
                   duplicate=_probability(raw, "duplicate", where),
                   delay=delay, delay_ms=delay_ms,
                   replay=_probability(raw, "replay", where))

    def matches(self, type_: str, sender: str, receiver: str) -> bool:
        return ((ANY in self.types or type_ in self.types)
                and (ANY in self.senders or sender in self.senders)
                and (ANY in self.receivers or receiver in self.receivers))

    def node_ids(self) -> set[str]:
        return set(self.senders | self.receivers) - {ANY}


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Rules (the first that matches a message decides it) and a window.

    ``window_s`` is [start, stop) in seconds since the launcher started;
    outside it nothing is touched.  ``replay_history`` bounds how many
    earlier messages per link and type are kept to replay.  ``trace`` logs
    every fault (``msgshim_fault``), to line a failure up with its cause."""

    rules: tuple[Rule, ...]
    window_s: tuple[float, float] = (0.0, math.inf)
    replay_history: int = REPLAY_HISTORY_DEFAULT
    trace: bool = False

    FIELDS = frozenset({"rules", "window_s", "replay_history", "trace"})

    @classmethod
    def parse(cls, raw: Any) -> Plan:
        raw = _only(raw, cls.FIELDS, "plan")
        rules = raw.get("rules")
        if type(rules) is not list or not rules:
            raise PlanError("plan.rules: must be a non-empty list of rules")
        window = (_range(raw["window_s"], "plan.window_s", 7 * 86400, "seconds since start")
                  if "window_s" in raw else (0.0, math.inf))
        if window[0] == window[1]:
            raise PlanError(f"plan.window_s: {raw['window_s']!r} is empty")
        history = raw.get("replay_history", REPLAY_HISTORY_DEFAULT)
        if type(history) is not int or not 1 <= history <= REPLAY_HISTORY_MAX:
            raise PlanError(f"plan.replay_history: {history!r} is not an int in "
                            f"1..{REPLAY_HISTORY_MAX}")
        trace = raw.get("trace", False)
        if type(trace) is not bool:
            raise PlanError(f"plan.trace: {trace!r} is not true or false")
        return cls(tuple(Rule.parse(r, f"plan.rules[{k}]") for k, r in enumerate(rules)),
                   window, history, trace)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise PlanError(f"plan: not JSON: {exc}") from None
        return cls.parse(raw)

    @classmethod
    def load(cls, path: Path) -> Plan:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlanError(f"plan: cannot read {path}: {exc}") from None
        return cls.from_json(text)

    def rule_for(self, type_: str, sender: str, receiver: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(type_, sender, receiver)), None)

    def check_nodes(self, known: Iterable[str]) -> None:
        """Refuse node ids the daemon does not know: a typo would inject nothing."""
        known = set(known)
        for k, rule in enumerate(self.rules):
            unknown = rule.node_ids() - known
            if unknown:
                raise PlanError(f"plan.rules[{k}]: unknown node id(s) "
                                f"{', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")


# ---------------------------------------------------------------- decisions


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one message.  ``replay_pick`` in [0, 1) picks among
    the earlier messages kept for the link (None: no replay)."""

    drop: bool
    duplicate: bool
    delay_ms: float | None
    replay_pick: float | None


class LinkDecider:
    """The decisions for one link (sender -> receiver), per message type."""

    DRAWS = 6  # per message, whatever is decided: keeps decision k fixed

    def __init__(self, seed: int, sender: str, receiver: str) -> None:
        self.seed, self.sender, self.receiver = seed, sender, receiver
        self._rngs: dict[str, random.Random] = {}

    def _rng(self, type_: str) -> random.Random:
        rng = self._rngs.get(type_)
        if rng is None:
            # A str seed is hashed with SHA-512: the same in every process,
            # whatever PYTHONHASHSEED is.
            rng = random.Random(f"msgshim/{self.seed}/{self.sender}/{self.receiver}/{type_}")
            self._rngs[type_] = rng
        return rng

    def decide(self, type_: str, rule: Rule) -> Decision:
        u_drop, u_dup, u_delay, u_ms, u_replay, u_pick = (
            self._rng(type_).random() for _ in range(self.DRAWS))
        if u_drop < rule.drop:
            return Decision(True, False, None, None)
        lo, hi = rule.delay_ms
        return Decision(False, u_dup < rule.duplicate,
                        lo + (hi - lo) * u_ms if u_delay < rule.delay else None,
                        u_pick if u_replay < rule.replay else None)


# ---------------------------------------------------------------- the shim


class Counts:
    """What the shim did, per message type."""

    def __init__(self) -> None:
        self.by_type: dict[str, dict[str, int]] = {}
        self.delay_overflow = 0

    def add(self, type_: str, kind: str) -> None:
        self.by_type.setdefault(type_, dict.fromkeys(KINDS, 0))[kind] += 1

    def totals(self) -> dict[str, int]:
        return {k: sum(c[k] for c in self.by_type.values()) for k in KINDS}


class MeshShim:
    """The faults of one mesh: ``send``/``broadcast`` replace the mesh's while
    the plan's window is open; ``run`` hosts delayed messages."""

    def __init__(self, plan: Plan, seed: int, node_id: str, peers: Sequence[str],
                 send: Callable[[str, bytes], bool], broadcast: Callable[[bytes], None],
                 *, started_s: float, clock: Callable[[], float] = time.monotonic,
                 counts_path: Path | None = None) -> None:
        self.plan, self.seed, self.node_id, self.peers = plan, seed, node_id, tuple(peers)
        self._send, self._broadcast = send, broadcast
        self._clock, self._started_s = clock, started_s
        self.counts_path = counts_path
        self.counts = Counts()
        self._deciders: dict[str, LinkDecider] = {}
        self._history: dict[tuple[str, str], deque[bytes]] = {}
        self._rules: dict[tuple[str, str], Rule | None] = {}
        self._nursery: trio.Nursery | None = None
        self._delayed = 0
        self.healed = False
        self._log = structlog.get_logger("msgshim").bind(node_id=node_id)

    def active(self) -> bool:
        start, stop = self.plan.window_s
        return start <= self._clock() - self._started_s < stop

    def _rule(self, type_: str, peer: str) -> Rule | None:
        key = (type_, peer)
        if key not in self._rules:
            self._rules[key] = self.plan.rule_for(type_, self.node_id, peer)
        return self._rules[key]

    def broadcast(self, frame: bytes) -> None:
        type_ = message_type(frame)
        if type_ is None or not self.active() or all(
                self._rule(type_, p) is None for p in self.peers):
            self._broadcast(frame)
            return
        for peer in self.peers:
            self.send(peer, frame)

    def send(self, peer: str, frame: bytes) -> bool:
        type_ = message_type(frame)
        rule = None if type_ is None or not self.active() else self._rule(type_, peer)
        if rule is None:
            return self._send(peer, frame)
        decider = self._deciders.get(peer)
        if decider is None:
            decider = self._deciders[peer] = LinkDecider(self.seed, self.node_id, peer)
        decision = decider.decide(type_, rule)
        history = self._history.setdefault((peer, type_),
                                           deque(maxlen=self.plan.replay_history))
        self.counts.add(type_, "seen")
        self._act(peer, type_, frame, decision, history)
        if rule.replay > 0:
            history.append(frame)
        # A lost message looks queued to the caller, as on a lossy network.
        return True

    def _act(self, peer: str, type_: str, frame: bytes, decision: Decision,
             history: deque[bytes]) -> None:
        if self.plan.trace and decision != Decision(False, False, None, None):
            self._log.info("msgshim_fault", type=type_, peer=peer, drop=decision.drop,
                           duplicate=decision.duplicate, delay_ms=decision.delay_ms,
                           replay=decision.replay_pick is not None and bool(history))
        if decision.drop:
            self.counts.add(type_, "dropped")
            return
        frames = [frame, frame] if decision.duplicate else [frame]
        if decision.duplicate:
            self.counts.add(type_, "duplicated")
        if decision.delay_ms is not None and self._hold(peer, frames, decision.delay_ms):
            self.counts.add(type_, "delayed")
        else:
            for f in frames:
                self._send(peer, f)
        if decision.replay_pick is not None and history:
            self._send(peer, history[int(decision.replay_pick * len(history))])
            self.counts.add(type_, "replayed")

    def _hold(self, peer: str, frames: list[bytes], delay_ms: float) -> bool:
        """Send ``frames`` after ``delay_ms`` from a task; False if it cannot."""
        if self._nursery is None or self._delayed >= DELAYED_IN_FLIGHT_MAX:
            self.counts.delay_overflow += 1
            return False
        self._delayed += 1
        self._nursery.start_soon(self._send_later, peer, frames, delay_ms / 1000)
        return True

    async def _send_later(self, peer: str, frames: list[bytes], delay_s: float) -> None:
        try:
            await trio.sleep(delay_s)
            for f in frames:
                self._send(peer, f)
        finally:
            self._delayed -= 1

    async def run(self, mesh_run: Callable[..., Any], *,
                  task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Run ``mesh_run`` inside a nursery that also hosts the delayed
        messages and the reporter; both end with the mesh."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._report_loop)
                await mesh_run(task_status=task_status)
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self.write_counts()
            self._log.info("msgshim_counts", **self.snapshot())

    async def _report_loop(self) -> None:
        while True:
            if not self.healed and self._clock() - self._started_s >= self.plan.window_s[1]:
                self.healed = True
                self._log.info("msgshim_healed", **self.snapshot())
            self.write_counts()
            await trio.sleep(REPORT_INTERVAL_S)

    def snapshot(self) -> dict[str, Any]:
        return {"node": self.node_id, "seed": self.seed, "healed": self.healed,
                "totals": self.counts.totals(), "types": self.counts.by_type,
                "delay_overflow": self.counts.delay_overflow}

    def write_counts(self) -> None:
        if self.counts_path is None:
            return
        tmp = self.counts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.counts_path)


# ---------------------------------------------------------------- installing


def install(plan: Plan, seed: int, counts_path: Path | None = None) -> None:
    """Patch ``p2p.Mesh`` in this process so every mesh built from now on
    goes through a MeshShim.  For the launcher only; there is no uninstall."""
    from p2p.mesh import Mesh

    started_s = time.monotonic()
    shims: weakref.WeakKeyDictionary[Mesh, MeshShim] = weakref.WeakKeyDictionary()
    init, send, broadcast, run = Mesh.__init__, Mesh.send, Mesh.broadcast, Mesh.run

    def shim_init(self: Mesh, cfg: Any, *args: Any, **kwargs: Any) -> None:
        init(self, cfg, *args, **kwargs)
        plan.check_nodes({cfg.node_id, *cfg.known_keys()})
        shims[self] = MeshShim(plan, seed, cfg.node_id, [p.node_id for p in cfg.peers],
                               partial(send, self), partial(broadcast, self),
                               started_s=started_s, counts_path=counts_path)
        shims[self]._log.info("msgshim_installed", seed=seed, window_s=list(plan.window_s),
                              rules=len(plan.rules))

    def shim_send(self: Mesh, peer_id: str, frame: bytes) -> bool:
        return shims[self].send(peer_id, frame)

    def shim_broadcast(self: Mesh, frame: bytes) -> None:
        shims[self].broadcast(frame)

    async def shim_run(self: Mesh, *, task_status: Any = trio.TASK_STATUS_IGNORED,
                       **kwargs: Any) -> None:
        await shims[self].run(partial(run, self, **kwargs), task_status=task_status)

    Mesh.__init__ = shim_init  # type: ignore[method-assign]
    Mesh.send = shim_send  # type: ignore[method-assign]
    Mesh.broadcast = shim_broadcast  # type: ignore[method-assign]
    Mesh.run = shim_run  # type: ignore[method-assign]


def launcher_args(plan_path: Path, seed: int, counts_path: Path | None = None) -> list[str]:
    """What replaces ``-m pbftd.cli`` in a daemon's command line."""
    args = ["-m", "tests.faults.msgshim", "--plan", str(plan_path), "--seed", str(seed)]
    if counts_path is not None:
        args += ["--counts", str(counts_path)]
    return [*args, "--"]


USAGE = ("usage: python -m tests.faults.msgshim --plan FILE --seed N [--counts FILE] "
         "-- PBFTD_ARGS...")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the launcher's own arguments (before ``--``), install, run pbftd."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(f"msgshim: missing '--' before pbftd's arguments\n{USAGE}", file=sys.stderr)
        return 2
    split = argv.index("--")
    own, rest = argv[:split], argv[split + 1:]
    if len(own) % 2 or any(k not in ("--plan", "--seed", "--counts") for k in own[::2]):
        print(f"msgshim: bad arguments {own}\n{USAGE}", file=sys.stderr)
        return 2
    opts = dict(zip(own[::2], own[1::2], strict=True))
    if "--plan" not in opts or "--seed" not in opts or not opts["--seed"].isdigit():
        print(f"msgshim: --plan FILE and --seed N (a non-negative int) are required\n{USAGE}",
              file=sys.stderr)
        return 2
    try:
        plan = Plan.load(Path(opts["--plan"]))
    except PlanError as exc:
        print(f"msgshim: {exc}", file=sys.stderr)
        return 2
    counts = Path(opts["--counts"]) if "--counts" in opts else None
    install(plan, int(opts["--seed"]), counts)
    from pbftd.cli import main as pbftd_main

    return pbftd_main(rest)


if __name__ == "__main__":
    sys.exit(main())
