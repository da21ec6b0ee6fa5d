"""A simulated cluster: replicas, their stores, clients and faults on one clock.

As TigerBeetle's VOPR: every random choice derives from one root seed,
time is simulated, a safety phase injects faults, then a liveness phase heals
the network, restarts every node and requires every submitted request to
execute on every honest node within a bound.  Checkers watch every step.

Shell behaviour mirrors what the daemon does: actions run in order, a
Persist lands in the node's durable records before the next action, Execute
builds the block with ``core.chain.execute_batch`` and reports it back with
``on_executed``.  A crash can strike between any two actions of a step.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.actions import (
    Broadcast,
    CancelTimer,
    Execute,
    Note,
    Persist,
    Send,
    ServeBlocks,
    SetTimer,
)
from ..core.chain import ChainTip, ExecutedBlock, RequestKey, execute_batch
from ..core.crypto import CachingVerifier, Signer, sha256
from ..core.messages import Batch, Commit, CommittedBlock, Request
from ..core.replica import ExecutedTip, Replica, ReplicaConfig
from ..core.validators import ValidatorSet
from .byzantine import CensoringReplica, bogus_messages, forge
from .checkers import Checker
from .faults import BYZANTINE_KINDS
from .network import Network, NetworkRates

CHAIN_ID = "pbftd-sim"
GENESIS_HASH = sha256(b"pbftd-sim genesis")
GENESIS_TIME_MS = 1_000


def derive(seed: int, name: str) -> random.Random:
    """An independent random stream per component, all from one root seed."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def sim_replica_config() -> ReplicaConfig:
    """Small windows and short timeouts, so seconds of simulated time cover
    many checkpoints, watermark moves and view changes."""
    return ReplicaConfig(
        chain_id=CHAIN_ID, checkpoint_interval=4, watermark_window=16,
        batch_requests_max=32, batch_wait_ms=2, pipeline_depth_max=4,
        request_timeout_ms=600, view_change_timeout_ms=800, status_interval_ms=300,
        fetch_timeout_ms=500, block_time_skew_max_ms=10_000,
    )


@dataclass
class SimStore:
    """What survives a crash: persisted records and executed blocks."""

    records: dict[str, bytes] = field(default_factory=dict)
    blocks: list[tuple[ExecutedBlock, Batch, tuple[Commit, ...]]] = field(default_factory=list)
    executed: set[RequestKey] = field(default_factory=set)
    tip: ChainTip = field(default_factory=lambda: ChainTip.genesis(GENESIS_HASH, GENESIS_TIME_MS))


@dataclass
class SimNode:
    node_id: str
    signer: Signer
    byz: str | None = None
    face: int = 0
    up: bool = False
    incarnation: int = 0
    replica: Replica | None = None
    store: SimStore = field(default_factory=SimStore)
    timers: dict[str, int] = field(default_factory=dict)
    crash_after: int | None = None

    @property
    def honest(self) -> bool:
        return self.byz is None


ReplicaFactory = Callable[..., Replica]


class Cluster:
    def __init__(self, n: int, seed: int, faults: frozenset[str],
                 replica_factory: ReplicaFactory = Replica,
                 safety_ms: int = 8_000, liveness_ms: int = 60_000) -> None:
        self.n, self.seed, self.faults = n, seed, faults
        self.safety_ms, self.liveness_ms = safety_ms, liveness_ms
        self.factory = replica_factory
        self.rng = derive(seed, "schedule")
        self.byz_rng = derive(seed, "byzantine")
        self.client_rng = derive(seed, "clients")
        self.net = Network(derive(seed, "network"))
        self.ids = [f"n{i}" for i in range(n)]
        signers = {i: Signer.from_seed(sha256(f"sim-validator-{i}".encode())) for i in self.ids}
        self.vals = ValidatorSet.of([(i, signers[i].public_key) for i in self.ids])
        self.verifier = CachingVerifier()
        self.cfg = sim_replica_config()
        self.now = 0
        self.queue: list[tuple[int, int, str, Any]] = []
        self.counter = 0
        self.stats: Counter[str] = Counter()
        self.byzantine = self._choose_byzantine(signers)
        # The honest origin a censoring primary passes over: the last honest node.
        self.censor_victim = [i for i in self.ids if i not in self.byzantine][-1]
        self.victim_submitted_ms: dict[RequestKey, int] = {}
        self.wipeable = self._choose_wipeable()
        self.faces: dict[str, list[SimNode]] = {}
        for i in self.ids:
            kind = self.byzantine.get(i)
            copies = 2 if kind == "equivocate" else 1
            self.faces[i] = [SimNode(i, signers[i], kind, face) for face in range(copies)]
        self.group = {i: self.rng.randrange(2) for i in self.ids}
        honest = frozenset(i for i in self.ids if i not in self.byzantine)
        self.checker = Checker(GENESIS_HASH, honest)
        self.client_seq: Counter[str] = Counter()
        self.outstanding: dict[str, dict[RequestKey, Request]] = {i: {} for i in honest}

    # ----------------------------------------------------------- set-up

    def _choose_byzantine(self, signers: dict[str, Signer]) -> dict[str, str]:
        kinds = [k for k in BYZANTINE_KINDS if k in self.faults]
        f = (self.n - 1) // 3
        if not kinds or f == 0:
            return {}
        count = self.rng.randint(0, f) if "wipe" in self.faults else self.rng.randint(1, f)
        # The primary of view 0 is the most interesting liar; others at random.
        chosen = ["n0", *self.rng.sample(self.ids[1:], max(0, count - 1))] if count else []
        return {node: self.rng.choice(kinds) for node in chosen}

    def _choose_wipeable(self) -> list[str]:
        if "wipe" not in self.faults:
            return []
        budget = (self.n - 1) // 3 - len(self.byzantine)
        honest = [i for i in self.ids if i not in self.byzantine]
        return self.rng.sample(honest, max(0, min(budget, len(honest))))

    def nodes(self) -> list[SimNode]:
        return [node for faces in self.faces.values() for node in faces]

    # ----------------------------------------------------------- event queue

    def at(self, time_ms: int, kind: str, data: Any) -> None:
        self.counter += 1
        heapq.heappush(self.queue, (time_ms, self.counter, kind, data))

    def run(self) -> None:
        for node in self.nodes():
            self.start_node(node)
        self._schedule_clients()
        self._schedule_faults()
        self.at(self.safety_ms, "heal", None)
        deadline = self.safety_ms + self.liveness_ms
        while self.queue and not self.checker.violations:
            time_ms, _, kind, data = heapq.heappop(self.queue)
            if time_ms > deadline:
                break
            self.now = time_ms
            self.stats["events"] += 1
            getattr(self, "_ev_" + kind)(data)
            if kind == "done_check" and not self._missing():
                self.stats["liveness_done_ms"] = self.now - self.safety_ms
                return
        if not self.checker.violations:
            missing = self._missing()
            self.checker.fail(self.now, "liveness",
                              f"{len(missing)} requests not executed everywhere "
                              f"{self.liveness_ms} ms after healing, e.g. {missing[:3]}")

    # ----------------------------------------------------------- node lifecycle

    def start_node(self, node: SimNode) -> None:
        node.up = True
        node.incarnation += 1
        node.timers = {}
        if node.byz == "censor":
            node.replica = CensoringReplica(self.cfg, self.vals, node.node_id, node.signer,
                                            self.verifier, victim=self.censor_victim)
        else:
            node.replica = self.factory(self.cfg, self.vals, node.node_id, node.signer,
                                        self.verifier)
        tip = node.store.tip
        actions = node.replica.start(self.now, node.store.records,
                                     ExecutedTip(tip.height, tip.block_hash, tip.time_ms))
        self.run_actions(node, actions)

    def crash(self, node: SimNode) -> None:
        node.up = False
        node.replica = None
        node.timers = {}
        node.crash_after = None
        self.stats["crashes"] += 1

    def wipe(self, node: SimNode) -> None:
        self.crash(node)
        node.store = SimStore()
        self.checker.wiped(node.node_id)
        self.stats["wipes"] += 1

    # ----------------------------------------------------------- actions

    def run_actions(self, node: SimNode, actions: list[Any]) -> None:
        todo = deque(actions)
        done = 0
        while todo and node.up:
            if node.crash_after is not None and done >= node.crash_after:
                self.crash(node)
                self.stats["crashes_mid_step"] += 1
                return
            action = todo.popleft()
            done += 1
            if isinstance(action, Send):
                self.send(node, action.to, action.frame)
            elif isinstance(action, Broadcast):
                for dst in self.ids:
                    if dst != node.node_id:
                        self.send(node, dst, action.frame)
            elif isinstance(action, Persist):
                for key, value in action.puts:
                    node.store.records[key] = value
                for key in action.deletes:
                    node.store.records.pop(key, None)
            elif isinstance(action, Execute):
                todo.extendleft(reversed(self._execute(node, action)))
            elif isinstance(action, SetTimer):
                node.timers[action.name] = action.at_ms
                self.at(action.at_ms, "timer", (node, node.incarnation, action.name,
                                                action.at_ms))
            elif isinstance(action, CancelTimer):
                node.timers.pop(action.name, None)
            elif isinstance(action, ServeBlocks):
                self._serve(node, action)
            elif isinstance(action, Note):
                self.stats["note_" + action.event] += 1
        if node.up and node.replica is not None:
            r = node.replica
            if node.face == 0:
                self.checker.on_state(node.node_id, r.view, node.store.tip.height,
                                      r.stable_seq, r.stable_hash, self.now)

    def _execute(self, node: SimNode, action: Execute) -> list[Any]:
        store = node.store
        block = execute_batch(CHAIN_ID, store.tip, action.batch, store.executed.__contains__)
        store.blocks.append((block, action.batch, action.commits))
        store.executed.update(tx.key for tx in block.fresh)
        store.tip = block.tip
        if node.honest:
            self.checker.on_block(node.node_id, block, self.now)
            if node.node_id == self.censor_victim:
                self._note_victim_waits(block)
            for tx in block.fresh:
                self.outstanding.get(tx.origin, {}).pop(tx.key, None)
        self.stats["blocks_executed"] += 1
        assert node.replica is not None
        return node.replica.on_executed(block.header.height, block.block_hash,
                                        block.header.time_ms, self.now)

    def _serve(self, node: SimNode, action: ServeBlocks) -> None:
        assert node.replica is not None
        blocks = [CommittedBlock(batch, cert)
                  for _, batch, cert in node.store.blocks[action.from_seq - 1: action.to_seq]]
        self.send(node, action.to, node.replica.blocks_frame(action, blocks))

    # ----------------------------------------------------------- network

    def route(self, src: SimNode, dst_id: str) -> SimNode | None:
        """Twins: a two-faced node's face k talks only to group k."""
        faces = self.faces[dst_id]
        if src.byz == "equivocate":
            if len(faces) == 1 and self.group[dst_id] != src.face:
                return None
            return faces[src.face] if len(faces) > 1 else faces[0]
        return faces[self.group[src.node_id]] if len(faces) > 1 else faces[0]

    def send(self, src: SimNode, dst_id: str, frame: bytes) -> None:
        if src.byz == "silent":
            return
        if src.byz == "forge" and self.byz_rng.random() < 0.3:
            frame = forge(self.byz_rng, frame, src.signer, self.ids)
        target = self.route(src, dst_id)
        if target is None:
            return
        for delay in self.net.plan(src.node_id, dst_id, frame):
            self.at(self.now + delay, "deliver", (target, src.node_id, frame))
        replay = self.net.replay_candidate()
        if replay is not None:
            old_src, old_frame = replay
            dst = self.rng.choice(self.ids)
            if dst != old_src:
                self.at(self.now + self.rng.randint(1, 50), "deliver",
                        (self.faces[dst][0], old_src, old_frame))

    # ----------------------------------------------------------- events

    def _ev_deliver(self, data: tuple[SimNode, str, bytes]) -> None:
        node, src, frame = data
        if node.up and node.replica is not None:
            self.stats["delivered"] += 1
            self.run_actions(node, node.replica.on_message(src, frame, self.now))

    def _ev_timer(self, data: tuple[SimNode, int, str, int]) -> None:
        node, incarnation, name, at_ms = data
        if node.up and node.incarnation == incarnation and node.timers.get(name) == at_ms:
            del node.timers[name]
            assert node.replica is not None
            self.run_actions(node, node.replica.on_timer(name, self.now))

    def _ev_client(self, node_id: str) -> None:
        rng = self.client_rng
        node = self.faces[node_id][rng.randrange(len(self.faces[node_id]))]
        if self.now < self.safety_ms:
            self.at(self.now + rng.randint(40, 400), "client", node_id)
        if not node.up or node.replica is None:
            return
        self.client_seq[node_id] += 1
        req = Request(f"client-{node_id}", f"r{self.client_seq[node_id]}",
                      rng.randbytes(rng.randint(0, 48)))
        key = (node_id, req.client, req.rid)
        if node.honest:
            self.checker.submit(key, req.payload)
            self.outstanding[node_id][key] = req
            if node_id == self.censor_victim:
                self.victim_submitted_ms[key] = self.now
        _, actions = node.replica.submit([req], self.now)
        self.run_actions(node, actions)

    def _note_victim_waits(self, block: ExecutedBlock) -> None:
        """How long the censor's victim waited for its own requests (from the
        first submission to its own execution): with a censoring primary,
        ``victim_wait_max_ms`` shows whether the backups noticed."""
        for tx in block.fresh:
            submitted = self.victim_submitted_ms.pop(tx.key, None)
            if submitted is not None:
                self.stats["victim_wait_max_ms"] = max(self.stats["victim_wait_max_ms"],
                                                       self.now - submitted)

    def _ev_retry(self, node_id: str) -> None:
        """A client resubmits what its court has not executed (same ids)."""
        self.at(self.now + 1_500, "retry", node_id)
        node = self.faces[node_id][0]
        pending = [r for k, r in self.outstanding[node_id].items()
                   if k not in node.store.executed]
        if node.up and node.replica is not None and pending:
            self.stats["client_retries"] += 1
            _, actions = node.replica.submit(pending[:32], self.now)
            self.run_actions(node, actions)

    def _ev_fault(self, fn: Callable[[], None]) -> None:
        fn()

    def _ev_byz_tick(self, node: SimNode) -> None:
        self.at(self.now + self.byz_rng.randint(50, 400), "byz_tick", node)
        if node.up and node.replica is not None:
            for frame in bogus_messages(self.byz_rng, node.replica):
                dst = self.byz_rng.choice([i for i in self.ids if i != node.node_id])
                self.at(self.now + 5, "deliver", (self.faces[dst][0], node.node_id, frame))

    def _ev_heal(self, _data: None) -> None:
        """Liveness phase: network healed, every node up, one more request each."""
        self.net.heal()
        for node in self.nodes():
            node.crash_after = None
            if not node.up:
                self.start_node(node)
        for node_id in self.outstanding:
            self.at(self.now + 1, "client", node_id)
        self.at(self.now + 50, "done_check", None)

    def _ev_done_check(self, _data: None) -> None:
        self.at(self.now + 50, "done_check", None)

    # ----------------------------------------------------------- schedules

    def _schedule_clients(self) -> None:
        for node_id in self.ids:
            self.at(self.client_rng.randint(1, 200), "client", node_id)
            if node_id in self.outstanding:
                self.at(1_500 + self.client_rng.randint(0, 500), "retry", node_id)
        for node in self.nodes():
            if node.byz in ("forge", "bogus"):
                self.at(self.byz_rng.randint(50, 400), "byz_tick", node)

    def _schedule_faults(self) -> None:
        rates = NetworkRates()
        f, rng = self.faults, self.rng
        if "drop" in f:
            rates.drop_p = rng.choice([0.01, 0.05, 0.15])
        if "dup" in f:
            rates.dup_p = rng.choice([0.01, 0.05])
        if "delay" in f:
            rates.long_delay_p = rng.choice([0.005, 0.02])
        if "replay" in f:
            rates.replay_p = rng.choice([0.005, 0.02])
        self.net.rates = rates
        cuts = [k for k in ("partition", "oneway", "isolate") if k in f and self.n > 1]
        procs = [k for k in ("crash", "crash_mid", "wipe") if k in f]
        t = rng.randint(200, 1_500)
        while t < self.safety_ms - 500:
            options = cuts + procs + (["regroup"] if any(n.byz == "equivocate"
                                                          for n in self.nodes()) else [])
            if not options:
                break
            self._schedule_one(rng.choice(options), t)
            t += rng.randint(300, 2_500)

    def _schedule_one(self, kind: str, t: int) -> None:
        rng = self.rng
        length = rng.randint(300, 3_000)
        if kind == "partition":
            ids = self.ids[:]
            rng.shuffle(ids)
            cut = rng.randint(1, len(ids) - 1)
            self.at(t, "fault", lambda: self.net.partition([ids[:cut], ids[cut:]]))
            self.at(t + length, "fault", self.net.cut.clear)
        elif kind == "oneway":
            a, b = rng.sample(self.ids, 2)
            self.at(t, "fault", lambda: self.net.cut.add((a, b)))
            self.at(t + length, "fault", lambda: self.net.cut.discard((a, b)))
        elif kind == "isolate":
            victim = rng.choice(self.ids)
            others = [i for i in self.ids if i != victim]
            self.at(t, "fault", lambda: self.net.partition([[victim], others]))
            self.at(t + length, "fault", self.net.cut.clear)
        elif kind == "regroup":
            self.at(t, "fault", lambda: self.group.update(
                {i: rng.randrange(2) for i in self.ids}))
        elif kind in ("crash", "crash_mid"):
            node = rng.choice(self.nodes())
            self.at(t, "fault", lambda: self._crash_fault(node, kind == "crash_mid"))
            self.at(t + length, "fault", lambda: self._restart_fault(node))
        elif kind == "wipe" and self.wipeable:
            node = self.faces[rng.choice(self.wipeable)][0]
            self.at(t, "fault", lambda: self.wipe(node) if node.up else None)
            self.at(t + length, "fault", lambda: self._restart_fault(node))

    def _crash_fault(self, node: SimNode, mid_step: bool) -> None:
        if not node.up:
            return
        if mid_step:
            node.crash_after = self.rng.randint(0, 4)
        else:
            self.crash(node)

    def _restart_fault(self, node: SimNode) -> None:
        if not node.up and self.now < self.safety_ms:
            node.crash_after = None
            self.start_node(node)

    # ----------------------------------------------------------- liveness

    def _missing(self) -> list[RequestKey]:
        honest_nodes = [self.faces[i][0] for i in self.ids if i not in self.byzantine]
        wanted = [k for k in self.checker.submitted if k[0] not in self.byzantine]
        return [k for k in wanted if any(k not in n.store.executed for n in honest_nodes)]
