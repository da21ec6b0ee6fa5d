"""Hostile peer frames at depth, against a replica that holds state.

tests/core/test_wire_hostile.py mutates the top-level fields of one valid
frame per type and checks a *fresh* replica.  This suite adds:

* mutations at **any depth**: inside the envelopes a body carries (checkpoint
  proofs, prepared certificates, the VIEW-CHANGEs in a NEW-VIEW, commit
  certificates in BLOCKS, submissions in batches), each envelope on the way
  up re-signed with its sender's real key (tests/fuzz/mutate.py);
* encodings the codec must refuse wherever they appear (floats, NaN,
  undefined, 2^63, 2^64-1, -2^64, bignums, tags including cyclic shareable
  tags 28/29, indefinite lengths, duplicate and unsorted keys, long-form
  ints, truncation, trailing bytes) and canonical values of the wrong type;
* a **snapshot of the whole replica** (log, votes, view state, checkpoints,
  pending requests, peer status, buffers, timers, stats) compared before
  and after: a refused frame changes nothing but one ``rejected_`` count;
* a RuleBasedStateMachine that moves a replica through commits,
  checkpoints, peer status and view changes and throws hostile frames at it
  in every state it reaches;
* the p2p link decoders (HELLO, AUTH, BATCH) on the same mutations.

Wire.open must raise ProtocolError and nothing else; on_message must never
raise.  Fixed budgets (derandomized) keep the whole file to a few seconds.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2p import wire as p2p_wire
from pbftd.core import codec
from pbftd.core.actions import Note
from pbftd.core.crypto import Verifier
from pbftd.core.follower import Follower, FollowerConfig
from pbftd.core.messages import DOMAIN, MESSAGE_TYPES, CommittedBlock, ProtocolError
from pbftd.core.replica import Replica
from tests.core.harness import NOW, Peers, Shell, check_invariants, signer_for
from tests.fuzz.mutate import (
    ENCODING_FAULTS,
    SIGNED,
    TYPE_FAULTS,
    encoding_fault,
    get,
    paths,
    rebuild,
    type_fault,
)

BUDGET = settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
STATEFUL_BUDGET = settings(max_examples=25, stateful_step_count=30, deadline=None,
                           derandomize=True, suppress_health_check=list(HealthCheck))
RECEIVER = "n3"


# --------------------------------------------------------------------------
# a replica snapshot: everything but the static parts and rejection counts

_STATIC = {"cfg", "vals", "signer", "wire", "_handlers", "me"}


def _freeze(value: Any, depth: int = 0) -> Any:
    assert depth < 40, "snapshot recursion"
    kind = type(value)
    if value is None or kind in (int, str, bytes, bool, float):
        return value
    if kind in (list, tuple) or kind.__name__ == "deque":
        return tuple(_freeze(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((repr(k), _freeze(v, depth + 1)) for k, v in value.items())))
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(repr(v) for v in value))
    slots = [s for c in kind.__mro__ for s in getattr(c, "__slots__", ())]
    fields = {s: getattr(value, s) for s in slots if hasattr(value, s)}
    fields.update(getattr(value, "__dict__", {}))
    return (kind.__name__, tuple(sorted((k, _freeze(v, depth + 1)) for k, v in fields.items()
                                        if k not in _STATIC and not callable(v))))


def snapshot(replica: Replica) -> Any:
    state = {k: v for k, v in vars(replica).items() if k not in _STATIC and k != "stats"} \
        if hasattr(replica, "__dict__") else {}
    # An empty log entry (made before a pre-prepare's batch was refused) holds nothing.
    state["log"] = {s: e for s, e in replica.log.items()
                    if e.pp or e.batch or e.prepares or e.commits or e.prepared_cert
                    or e.sent_prepare or e.sent_commit or e.committed}
    stats = {k: v for k, v in replica.stats.items() if not k.startswith("rejected_")}
    return _freeze(state), _freeze(stats)


def rejected(replica: Replica) -> int:
    return sum(v for k, v in replica.stats.items() if k.startswith("rejected_"))


# --------------------------------------------------------------------------
# valid frames of every type, with nested envelopes, in two replica states


@cache
def _peers() -> Peers:
    return Peers(4)


def _sign(p: Peers) -> Any:
    return lambda sender, data: p.signers[sender].sign(data)


@cache
def _templates() -> dict[str, tuple[str, bytes]]:
    """(link peer, frame) for every message type, nested envelopes included."""
    p = _peers()
    b1, b5 = p.batch(1), p.batch(5, subs=(p.submit("n1", b"a", b"b"), p.submit("n2")))
    h4 = b"\x44" * 32
    proof = p.checkpoint_proof(4, h4, ["n0", "n1", "n2"])
    cert1 = p.prepared_cert(b1)
    vcs = [p.view_change("n0", 1, prepared=[cert1]), p.view_change("n1", 1),
           p.view_change("n2", 1)]
    return {
        "submit": ("n1", p.submit("n1", b"payload", b"more").frame()),
        "pre-prepare": ("n0", p.pre_prepare(b1).frame(b1.to_wire())),
        "pre-prepare-future": ("n1", p.pre_prepare(p.batch(2, view=1), view=1).frame(
            p.batch(2, view=1).to_wire())),
        "prepare": ("n1", p.prepare("n1", 0, 1, p.digest(b1)).frame()),
        "commit": ("n1", p.commit("n1", 0, 1, p.digest(b1)).frame()),
        "checkpoint": ("n1", p.checkpoint("n1", 4, h4).frame()),
        "view-change": ("n1", p.view_change("n1", 1, 4, proof, [p.prepared_cert(b5)]).frame()),
        "new-view": ("n1", p.new_view(1, vcs, [b1]).frame()),
        "status": ("n1", p.status("n1", 0, True, 3, 0).frame()),
        "fetch": ("n1", p.fetch("n1", 1, 4).frame()),
        "blocks": ("n1", p.blocks("n1", proof, [CommittedBlock(b1, p.commit_cert(b1))]).frame()),
    }


KINDS = sorted(_templates())


@cache
def _tree(kind: str) -> tuple[Any, list[tuple[Any, ...]]]:
    frame = _templates()[kind][1]
    tree = cbor2.loads(frame)
    return tree, list(paths(tree))


def _busy_replica() -> tuple[Replica, Shell]:
    """n3 after committing blocks 1..5 (a stable checkpoint at 4) and
    holding votes for 6: log, checkpoint, pending and peer state are all set."""
    p = _peers()
    replica = p.replica(RECEIVER)
    shell = Shell(replica)
    for seq in range(1, 6):
        shell.run(p.commit_at(replica, p.batch(seq)))
    h4 = shell.block_hash(4)
    for s in ("n0", "n1"):
        shell.run(p.deliver(replica, p.checkpoint(s, 4, h4)))
    b6 = p.batch(6)
    shell.run(p.deliver_pre_prepare(replica, b6))
    shell.run(p.deliver(replica, p.prepare("n1", 0, 6, p.digest(b6))))
    shell.run(p.deliver(replica, p.status("n2", 0, True, 5, 4)))
    shell.run(p.deliver(replica, p.submit("n2", b"pending")))
    assert replica.stable_seq == 4 and replica.executed == 5
    return replica, shell


@cache
def _replicas() -> dict[str, tuple[Replica, Any]]:
    """Replicas to feed hostile frames; copied per example (deepcopy is cheap)."""
    fresh = _peers().replica(RECEIVER)
    busy, _shell = _busy_replica()
    return {"fresh": (fresh, snapshot(fresh)), "busy": (busy, snapshot(busy))}


def _clone(replica: Replica) -> Replica:
    import copy
    clone = copy.copy(replica)
    for name, value in vars(replica).items():
        if name not in ("cfg", "vals", "signer", "wire", "_handlers"):
            setattr(clone, name, copy.deepcopy(value))
    clone._handlers = {t: getattr(clone, f.__name__) for t, f in replica._handlers.items()}
    return clone


def assert_refused_without_change(replica: Replica, via: str, frame: bytes,
                                  must_refuse: bool, path: tuple[Any, ...] = ()) -> bool:
    """Feed ``frame``: Wire.open raises ProtocolError or opens it; on_message
    never raises; a refused frame changes nothing but one rejected_ count.

    ``must_refuse``: the frame is hostile wherever it is looked at.  Wire.open
    must refuse it unless the fault sits in signed bytes nested in the
    unsigned extra (a batch's submissions, a BLOCKS certificate), which the
    replica opens; then the replica must refuse it or ignore the message
    (a pre-prepare or block outside its window) and change nothing else.
    Returns whether it was refused."""
    in_extra = path[:1] == (2,) and SIGNED in path
    try:
        replica.wire.open_from(via, frame)
        opened = True
    except ProtocolError:
        opened = False
    if must_refuse and not in_extra:
        assert not opened, "a frame with a hostile encoding opened"
    before, count = snapshot(replica), rejected(replica)
    out = replica.on_message(via, frame, NOW)
    refused = rejected(replica) == count + 1
    if not opened:
        assert refused, dict(replica.stats)
    if refused:
        assert all(isinstance(a, Note) for a in out), out
        assert snapshot(replica) == before, "a refused frame changed the replica"
    elif must_refuse:
        assert all(isinstance(a, Note) for a in out), out
        assert snapshot(replica)[0] == before[0], "an ignored hostile frame changed the replica"
    check_invariants(replica)
    return refused


# --------------------------------------------------------------------------
# properties


@BUDGET
@given(kind=st.sampled_from(KINDS), state=st.sampled_from(["fresh", "busy"]),
       fault=st.sampled_from(ENCODING_FAULTS), data=st.data())
def test_hostile_encoding_at_any_depth_is_refused_without_state_change(kind, state, fault,
                                                                      data):
    tree, all_paths = _tree(kind)
    path = data.draw(st.sampled_from(all_paths), label="path")
    raw = encoding_fault(fault, get(tree, path))
    if raw is None:
        return
    frame = rebuild(tree, path, raw, _sign(_peers()))
    replica = _clone(_replicas()[state][0])
    assert_refused_without_change(replica, _templates()[kind][0], frame, True, path)


@BUDGET
@given(kind=st.sampled_from(KINDS), state=st.sampled_from(["fresh", "busy"]),
       bad=st.sampled_from(range(len(TYPE_FAULTS))), data=st.data())
def test_wrong_type_at_any_depth_never_escapes_the_boundary(kind, state, bad, data):
    """Canonical values of the wrong kind (booleans for ints, 2^63-1, -2^63,
    wrong-size bytes, empty or long strings, containers), re-signed: refused
    with ProtocolError and no change, or (rarely) still a valid message."""
    tree, all_paths = _tree(kind)
    path = data.draw(st.sampled_from([q for q in all_paths if SIGNED in q or q[:1] == (2,)]),
                     label="path")
    frame = rebuild(tree, path, type_fault(bad), _sign(_peers()))
    replica = _clone(_replicas()[state][0])
    assert_refused_without_change(replica, _templates()[kind][0], frame, must_refuse=False)


@BUDGET
@given(kind=st.sampled_from(KINDS), cut=st.integers(0, 10**6),
       tail=st.binary(min_size=1, max_size=4))
def test_truncated_and_trailing_frames_are_refused_without_state_change(kind, cut, tail):
    via, frame = _templates()[kind]
    replica = _clone(_replicas()["busy"][0])
    assert_refused_without_change(replica, via, frame[: cut % len(frame)], must_refuse=True)
    assert_refused_without_change(replica, via, frame + tail, must_refuse=True)


@pytest.mark.parametrize("raw", [
    b"\xd8\x1c\x81\xd8\x1d\x00",                         # a = [a]
    b"\xd8\x1c\x83\x40\x40\xd8\x1d\x00",                 # [b"", b"", <itself>]
    b"\xd8\x1c\xa1\x61k\xd8\x1d\x00",                    # m = {"k": m}
    b"\x83\xd8\x1c\x40\xd8\x1d\x00\xf6",                 # [shared b"", ref, null]
    b"\xd9\xd9\xf7" * 1000 + b"\x80",                    # 1000 nested tags
])
def test_cyclic_and_shared_frames_are_refused(raw):
    replica = _clone(_replicas()["busy"][0])
    assert_refused_without_change(replica, "n1", raw, must_refuse=True)


def test_future_pre_prepare_with_garbage_batch_is_not_buffered():
    """Regression: a PRE-PREPARE for view+1 was buffered with its unsigned
    extra unchecked, so any validator could park future_messages_max frames
    of up to 4 MiB each (about 2 GiB) in every honest replica."""
    p = _peers()
    replica = p.replica(RECEIVER)
    junk = b"\x00" * (1 << 20)
    for k in range(20):
        for sender in ("n1", "n2"):  # n1 is primary of view 1, n2 is not
            pp = p.pre_prepare(p.batch(1 + k, view=1), view=1, sender="n1") if sender == "n1" \
                else p.pre_prepare(p.batch(1 + k, view=1, proposer="n2"), view=1, sender="n2")
            before = snapshot(replica)
            replica.on_message(sender, pp.frame([junk, k]), NOW)
            assert snapshot(replica) == before
    assert replica.future == {} and rejected(replica) == 40
    # a well-formed future pre-prepare from that view's primary is still kept
    batch = p.batch(1, view=1)
    replica.on_message("n1", p.pre_prepare(batch, view=1).frame(batch.to_wire()), NOW)
    assert [len(q) for q in replica.future.values()] == [1]


def test_future_pre_prepares_are_capped_per_sender():
    p = _peers()
    replica = p.replica(RECEIVER)
    window = replica.cfg.watermark_window
    for k in range(window + 5):
        batch = p.batch(1 + k % window, view=1, time_ms=NOW + k)
        replica.on_message("n1", p.pre_prepare(batch, view=1).frame(batch.to_wire()), NOW)
    assert len(replica.future["n1"]) == window
    assert replica.stats["dropped_future_full"] == 5 and rejected(replica) == 0


# --------------------------------------------------------------------------
# sequences: hostile frames in every state a replica reaches


class HostileSequences(RuleBasedStateMachine):
    """Honest steps move n3 through commits, checkpoints, status and view
    changes; a hostile frame may come between any two and must change nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.p = _peers()
        self.replica = self.p.replica(RECEIVER)
        self.shell = Shell(self.replica)
        self.seq = 0
        self.in_view_change = False

    @precondition(lambda self: not self.in_view_change and self.seq < 10)
    @rule()
    def commit_next(self) -> None:
        self.seq += 1
        self.shell.run(self.p.commit_at(self.replica, self.p.batch(self.seq)))

    @precondition(lambda self: not self.in_view_change and self.seq >= 4)
    @rule()
    def checkpoint_votes(self) -> None:
        seq = self.seq - self.seq % 4
        h = self.shell.block_hash(seq)
        for s in ("n0", "n1"):
            self.shell.run(self.p.deliver(self.replica, self.p.checkpoint(s, seq, h)))

    @rule(sender=st.sampled_from(["n0", "n1", "n2"]))
    def peer_status(self, sender: str) -> None:
        self.shell.run(self.p.deliver(self.replica, self.p.status(
            sender, self.replica.view, True, self.replica.executed, self.replica.stable_seq)))

    @precondition(lambda self: not self.in_view_change)
    @rule()
    def view_change_starts(self) -> None:
        """Two others want view+1: by the f+1 rule n3 joins them."""
        view = self.replica.view + 1
        for s in ("n1", "n2"):
            self.shell.run(self.p.deliver(self.replica, self.p.view_change(
                s, view, self.replica.stable_seq, self.replica.stable_proof)))
        self.in_view_change = not self.replica.active

    @rule(kind=st.sampled_from(KINDS), fault=st.sampled_from(ENCODING_FAULTS), data=st.data())
    def hostile_frame(self, kind: str, fault: str, data: Any) -> None:
        tree, all_paths = _tree(kind)
        path = data.draw(st.sampled_from(all_paths), label="path")
        raw = encoding_fault(fault, get(tree, path))
        if raw is None:
            return
        frame = rebuild(tree, path, raw, _sign(self.p))
        assert_refused_without_change(self.replica, _templates()[kind][0], frame, True, path)

    @rule(kind=st.sampled_from(KINDS), bad=st.sampled_from(range(len(TYPE_FAULTS))),
          data=st.data())
    def wrong_type(self, kind: str, bad: int, data: Any) -> None:
        tree, all_paths = _tree(kind)
        path = data.draw(st.sampled_from([q for q in all_paths if SIGNED in q]), label="path")
        frame = rebuild(tree, path, type_fault(bad), _sign(self.p))
        assert_refused_without_change(self.replica, _templates()[kind][0], frame,
                                      must_refuse=False)

    @invariant()
    def replica_invariants_hold(self) -> None:
        check_invariants(self.replica)


HostileSequences.TestCase.settings = STATEFUL_BUDGET
test_hostile_sequences = HostileSequences.TestCase


# --------------------------------------------------------------------------
# the p2p link decoders


def _link_messages() -> dict[str, bytes]:
    hello = p2p_wire.encode_hello(p2p_wire.Hello("court-testnet", "jl-high", b"\x01" * 32))
    auth = p2p_wire.encode_auth(p2p_wire.Auth(b"\x02" * 64))
    frames = [f for _via, f in list(_templates().values())[:3]]
    batch = p2p_wire.encode_batch(frames)
    return {"hello": hello, "auth": auth, "batch": batch}


DECODERS = {
    "hello": p2p_wire.decode_hello,
    "auth": p2p_wire.decode_auth,
    "batch": lambda data: p2p_wire.decode_message(data, frame_bytes_max=1 << 22,
                                                  batch_frames_max=256),
}


@BUDGET
@given(kind=st.sampled_from(sorted(DECODERS)), fault=st.sampled_from(ENCODING_FAULTS),
       data=st.data())
def test_p2p_link_decoders_raise_only_their_protocol_error(kind, fault, data):
    message = _link_messages()[kind]
    prefix, body = (message[:1], message[1:]) if kind == "batch" else (b"", message)
    tree = cbor2.loads(body)
    path = data.draw(st.sampled_from([q for q in paths(tree) if SIGNED not in q]),
                     label="path")
    raw = encoding_fault(fault, get(tree, path))
    if raw is None:
        return
    mutated = prefix + rebuild(tree, path, raw, _sign(_peers()))
    with pytest.raises(p2p_wire.PeerProtocolError):
        DECODERS[kind](mutated)


@BUDGET
@given(kind=st.sampled_from(sorted(DECODERS)), data=st.binary(max_size=80),
       cut=st.integers(0, 10**6))
def test_p2p_link_decoders_on_random_and_truncated_bytes(kind, data, cut):
    message = _link_messages()[kind]
    for candidate in (data, message[: cut % len(message)], message + data[:3] + b"\x00"):
        try:
            DECODERS[kind](candidate)
        except p2p_wire.PeerProtocolError:
            continue
        assert candidate == message or kind == "batch", candidate



def test_snapshot_sees_what_a_valid_message_changes():
    """The comparison above is only worth something if the snapshot notices
    a real change: a valid PREPARE, STATUS or VIEW-CHANGE each alter it."""
    p = _peers()
    for frame, via in ((p.prepare("n1", 0, 7, b"\x07" * 32).frame(), "n1"),
                       (p.status("n2", 0, True, 9, 0).frame(), "n2"),
                       (p.view_change("n1", 1, 4, p.checkpoint_proof(
                           4, _replicas()["busy"][0].stable_hash, ["n0", "n1", "n2"])).frame(),
                        "n1")):
        replica = _clone(_replicas()["busy"][0])
        before = snapshot(replica)
        replica.on_message(via, frame, NOW)
        assert rejected(replica) == 0, dict(replica.stats)
        assert snapshot(replica) != before


# --------------------------------------------------------------------------
# any canonical value in any field, at any depth, to a replica and an observer
#
# The properties above splice a fixed list of wrong-typed values (TYPE_FAULTS).
# This one draws arbitrary values of every kind the codec admits, nested:
# full-range 64-bit ints, bytes, text, bools, null, lists, str-keyed maps
# (field names included, so a map can look almost right), and validly signed
# envelopes of every message type, so an envelope of the wrong type (or a
# plausible one in the wrong place) reaches every ``open_envelope``.  Maps at
# any depth also get a key dropped, added or renamed.  The frame is re-signed
# on the way up; a Follower (an observer, which opens BLOCKS and FETCH) is fed
# the same frame as the replica.

_EDGE_INTS = [0, 1, -1, 2, 3, 4, 5, 8, 63, 64, 65, 1_000, NOW, NOW + 1, codec.INT_MAX,
              codec.INT_MAX - 1, codec.INT_MIN, codec.INT_MIN + 1]
OBSERVER = "obs"


@cache
def _envelope_pool() -> list[list[bytes]]:
    """Every signed envelope the templates hold, nested ones included."""
    pool: dict[bytes, list[bytes]] = {}
    for kind in KINDS:
        tree, all_paths = _tree(kind)
        for q in all_paths:
            if q and q[-1] == SIGNED:
                node = get(tree, q[:-1])
                pool[node[1]] = [node[0], node[1]]
    return [pool[sig] for sig in sorted(pool)]


@cache
def _field_names() -> list[str]:
    return sorted({step for kind in KINDS for q in _tree(kind)[1] for step in q
                   if type(step) is str and step != SIGNED})


@cache
def _any_value() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.integers(codec.INT_MIN, codec.INT_MAX), st.sampled_from(_EDGE_INTS),
        st.binary(max_size=70), st.sampled_from([bytes(32), b"\x44" * 32, bytes(64)]),
        st.text(max_size=8), st.sampled_from(["n0", "n1", "n2", "n3", OBSERVER, "mallory",
                                              DOMAIN, _peers().chain, *MESSAGE_TYPES]),
        st.booleans(), st.none(), st.sampled_from(_envelope_pool()))
    keys = st.sampled_from(_field_names()) | st.text(max_size=4)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=5), max_leaves=12)


def _rekeyed(node: dict[str, Any], data: Any) -> dict[str, Any]:
    """``node`` with one key dropped, added or renamed."""
    how = data.draw(st.sampled_from(["drop", "add", "rename"]), label="rekey")
    out = dict(node)
    if how != "add" and out:
        old = data.draw(st.sampled_from(sorted(out)), label="key")
        value = out.pop(old)
        if how == "drop":
            return out
    else:
        value = data.draw(_any_value(), label="value")
    new = data.draw(st.sampled_from(_field_names()) | st.text(max_size=4), label="new key")
    out[new] = value
    return out


@cache
def _observer_signer() -> Any:
    return signer_for(99)


def _follower() -> Follower:
    p = _peers()
    submitters = {**p.vals.as_dict(), OBSERVER: _observer_signer().public_key}
    follower = Follower(FollowerConfig(chain_id=p.chain,
                                       checkpoint_interval=p.cfg.checkpoint_interval),
                        p.vals, OBSERVER, _observer_signer(), Verifier(), submitters, p.ids)
    follower.start(NOW)
    return follower


def assert_follower_survives(via: str, frame: bytes) -> None:
    """An observer opens the frame (ProtocolError or a message, nothing
    else) and answers with actions, never an exception."""
    follower = _follower()
    try:
        follower.wire.open_from(via, frame)
        opened = True
    except ProtocolError:
        opened = False
    count = rejected(follower)
    out = follower.on_message(via, frame, NOW)
    assert type(out) is list
    if not opened:
        assert rejected(follower) == count + 1, dict(follower.stats)


def _splice_anything(kind: str, state: str, path: tuple[Any, ...], data: Any) -> None:
    """Put a drawn value (or, for a map, the map with one key changed) at
    ``path`` of ``kind``'s template, re-signed, and feed it to both nodes."""
    tree, _all_paths = _tree(kind)
    node = get(tree, path)
    if type(node) is dict and data.draw(st.booleans(), label="change a key"):
        value = _rekeyed(node, data)
    else:
        value = data.draw(_any_value(), label="value")
    frame = rebuild(tree, path, cbor2.dumps(value, canonical=True), _sign(_peers()))
    via = _templates()[kind][0]
    replica = _clone(_replicas()[state][0])
    assert_refused_without_change(replica, via, frame, must_refuse=False)
    assert_follower_survives(via, frame)


@pytest.mark.parametrize("kind", KINDS)
@settings(BUDGET, max_examples=50)
@given(state=st.sampled_from(["fresh", "busy"]), data=st.data())
def test_any_canonical_value_in_any_field_raises_only_protocol_error(kind, state, data):
    path = data.draw(st.sampled_from(_tree(kind)[1]), label="path")
    _splice_anything(kind, state, path, data)


@pytest.mark.parametrize("kind", KINDS)
# (no shrinking: one example is a hundred frames; the labels name the path)
@settings(BUDGET, max_examples=2, phases=(Phase.explicit, Phase.generate))
@given(data=st.data())
def test_every_field_of_every_message_takes_any_value(kind, data):
    """The sweep behind the sample above: every node of every template
    (every field, at every depth, signed or in the extra) gets a value."""
    for path in _tree(kind)[1]:
        _splice_anything(kind, "busy", path, data)
