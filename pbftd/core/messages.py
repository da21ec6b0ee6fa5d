"""Consensus messages: frozen values that validate themselves, and their wire form.

Theory of operation
-------------------
Every message travels as an *envelope*, the CBOR array ``[signed, sig]``:
``signed`` is itself the canonical CBOR of
``["pbftd/1", chain_id, type, sender, body]`` and ``sig`` is the sender's
Ed25519 signature over exactly those bytes.  Because the signature covers
the received bytes (not a re-encoding), a receiver verifies before it even
parses the body, and a certificate (a checkpoint proof, a prepared
certificate, a commit certificate) is simply a list of the original
envelopes, checkable by anyone holding the validators' public keys.  The
domain tag, chain id, type and sender inside the signed bytes mean no
signature can be replayed as another message, on another chain, or as
someone else's.

A frame on a link is ``[signed, sig, extra]``: ``extra`` carries bulk data
that has its own integrity check (a PRE-PREPARE's batch is bound by the
digest it signs; BLOCKS carry commit certificates), so it is not signed twice.

``Wire.open`` is the single boundary where bytes from peers become messages:
size, canonical encoding, domain, chain, type, membership of the sender,
signature and every body field are checked there, and anything wrong raises
``ProtocolError`` carrying a short reason for counting and logging.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import codec
from .crypto import SIGNATURE_BYTES, Signer, Verifier, sha256
from .merkle import merkle_root

__all__ = [
    "DOMAIN",
    "Batch",
    "Blocks",
    "Checkpoint",
    "Commit",
    "Envelope",
    "Fetch",
    "Limits",
    "Message",
    "NewView",
    "PrePrepare",
    "Prepare",
    "PreparedCert",
    "ProtocolError",
    "Request",
    "Status",
    "Submit",
    "ViewChange",
    "VoteNotNeeded",
    "Wire",
]

DOMAIN = "pbftd/1"
ID_CHARS_MAX = 64
CLIENT_CHARS_MAX = 128
RID_CHARS_MAX = 128
DIGEST_BYTES = 32
SEQ_MAX = codec.INT_MAX
VIEW_MAX = codec.INT_MAX


class ProtocolError(ValueError):
    """A peer sent something malformed, forged or out of bounds."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class VoteNotNeeded(Exception):
    """A well-formed PREPARE or COMMIT the receiver said it no longer needs,
    dropped before its signature was checked (see ``Wire.open_from``).
    Not a ProtocolError: the peer did nothing wrong, it was only late."""


@dataclass(frozen=True, slots=True)
class Limits:
    frame_bytes_max: int = 4 * 1024 * 1024
    batch_requests_max: int = 10_000
    batch_submissions_max: int = 1_000
    payload_bytes_max: int = 64 * 1024
    prepared_certs_max: int = 1_024
    blocks_per_reply_max: int = 64
    # verified SUBMITs a Wire remembers so a PRE-PREPARE's copy is not checked again
    opened_submits_max: int = 4_096
    opened_submits_bytes_max: int = 32 * 1024 * 1024


# --------------------------------------------------------------------------
# field checks: ``type(x) is int`` because True is an int in Python


def _int(body: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = body.get(key)
    if type(value) is not int or not lo <= value <= hi:
        raise ProtocolError("bad_field", f"{key} must be an int in [{lo}, {hi}]")
    return value


def _bytes(body: Mapping[str, Any], key: str, size: int) -> bytes:
    value = body.get(key)
    if type(value) is not bytes or len(value) != size:
        raise ProtocolError("bad_field", f"{key} must be {size} bytes")
    return value


def _str(body: Mapping[str, Any], key: str, chars_max: int) -> str:
    value = body.get(key)
    if type(value) is not str or not 0 < len(value) <= chars_max:
        raise ProtocolError("bad_field", f"{key} must be a string of 1..{chars_max} chars")
    return value


def _list(body: Mapping[str, Any], key: str, items_max: int) -> list[Any]:
    value = body.get(key)
    if type(value) is not list or len(value) > items_max:
        raise ProtocolError("bad_field", f"{key} must be a list of at most {items_max}")
    return value


def _keys(body: Any, expected: frozenset[str]) -> Mapping[str, Any]:
    if type(body) is not dict:
        raise ProtocolError("bad_body", "body must be a map")
    if body.keys() != expected:
        raise ProtocolError("bad_body", f"fields must be exactly {sorted(expected)}")
    return body


# --------------------------------------------------------------------------
# envelopes


@dataclass(frozen=True, slots=True)
class Envelope:
    """Signed bytes and their signature, kept verbatim for certificates."""

    signed: bytes
    sig: bytes

    def to_wire(self) -> list[bytes]:
        return [self.signed, self.sig]


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every signed message: who sent it and its envelope."""

    TYPE: ClassVar[str] = ""
    FIELDS: ClassVar[frozenset[str]] = frozenset()

    sender: str
    env: Envelope

    def frame(self, extra: Any = None) -> bytes:
        return codec.encode([self.env.signed, self.env.sig, extra])

    @classmethod
    def body_of(cls, *args: Any) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> Message:
        raise NotImplementedError


def _seal(signer: Signer, chain_id: str, type_: str, sender: str, body: dict[str, Any]) -> Envelope:
    signed = codec.encode([DOMAIN, chain_id, type_, sender, body])
    return Envelope(signed, signer.sign(signed))


@dataclass(frozen=True, slots=True)
class Request:
    """One client operation: the unit that is executed at most once."""

    client: str
    rid: str
    payload: bytes

    def to_wire(self) -> list[Any]:
        return [self.client, self.rid, self.payload]

    def size_bytes(self) -> int:
        """About what this request adds to a SUBMIT's signed bytes: its
        texts' UTF-8 (a Chinese character is three bytes) and payload, and a
        few CBOR heads.  Used to split requests into SUBMITs that fit a
        batch, which a replica refuses over ``batch_bytes_max``."""
        return len(self.client.encode()) + len(self.rid.encode()) + len(self.payload) + 16


@dataclass(frozen=True, slots=True)
class Submit(Message):
    """Requests a node accepted from its own clients, signed once for all.

    ``sid`` numbers the submissions of one origin; (origin, sid) names it.
    """

    TYPE: ClassVar[str] = "submit"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"sid", "requests"})
    sid: int
    requests: tuple[Request, ...]
    # its transactions' bytes, made on first use (see Batch.txs)
    _txs: list[bytes] | None = field(default=None, init=False, compare=False, repr=False)

    def txs(self) -> list[bytes]:
        """Canonical bytes of this submission's transactions, in order."""
        if self._txs is None:
            origin, sid = self.sender, self.sid
            object.__setattr__(self, "_txs", [encode_tx(origin, sid, r.client, r.rid, r.payload)
                                              for r in self.requests])
        assert self._txs is not None
        return self._txs

    @property
    def key(self) -> tuple[str, int]:
        return (self.sender, self.sid)

    @property
    def size_bytes(self) -> int:
        return len(self.env.signed)

    @classmethod
    def create(cls, signer: Signer, chain_id: str, origin: str, sid: int,
               requests: tuple[Request, ...]) -> Submit:
        body = {"sid": sid, "requests": [r.to_wire() for r in requests]}
        return cls(origin, _seal(signer, chain_id, cls.TYPE, origin, body), sid, requests)

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> Submit:
        body = _keys(body, cls.FIELDS)
        sid = _int(body, "sid", 1, SEQ_MAX)
        raw = _list(body, "requests", wire.limits.batch_requests_max)
        if not raw:
            raise ProtocolError("bad_field", "requests must not be empty")
        requests = []
        for item in raw:
            if type(item) is not list or len(item) != 3:
                raise ProtocolError("bad_field", "request must be [client, rid, payload]")
            client, rid, payload = item
            if type(client) is not str or not 0 < len(client) <= CLIENT_CHARS_MAX:
                raise ProtocolError("bad_field", "request client")
            if type(rid) is not str or not 0 < len(rid) <= RID_CHARS_MAX:
                raise ProtocolError("bad_field", "request rid")
            if type(payload) is not bytes or len(payload) > wire.limits.payload_bytes_max:
                raise ProtocolError("bad_field", "request payload")
            requests.append(Request(client, rid, payload))
        return cls(sender, env, sid, tuple(requests))


# --------------------------------------------------------------------------
# batches: what a sequence number orders


@dataclass(frozen=True, slots=True)
class Batch:
    """The proposal a PRE-PREPARE orders at ``seq``.

    Its digest binds chain, seq, the view and proposer that made it, the
    proposed time and the Merkle root of its transactions; that digest is what
    PREPAREs, COMMITs and commit certificates sign.  A batch re-issued by a
    NEW-VIEW keeps its original view and proposer, so every replica computes
    the same block for it whichever view commits it.
    """

    seq: int
    view: int
    proposer: str
    time_ms: int
    subs: tuple[Submit, ...]
    # The Merkle root, computed once: the digest check, execution and the
    # block header all need it, and hashing 1000 transactions is not free.
    _tx_root: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def null(cls, seq: int, view: int, proposer: str) -> Batch:
        return cls(seq, view, proposer, 0, ())

    def txs(self) -> list[bytes]:
        """Canonical transaction bytes, in execution order."""
        return [tx for s in self.subs for tx in s.txs()]

    def request_count(self) -> int:
        return sum(len(s.requests) for s in self.subs)

    def tx_root(self) -> bytes:
        if self._tx_root is None:
            object.__setattr__(self, "_tx_root", merkle_root(self.txs()))
        assert self._tx_root is not None
        return self._tx_root

    def digest(self, chain_id: str) -> bytes:
        return batch_digest(chain_id, self.seq, self.view, self.proposer, self.time_ms,
                            self.tx_root())

    def to_wire(self) -> dict[str, Any]:
        return {"n": self.seq, "v": self.view, "p": self.proposer, "t": self.time_ms,
                "subs": [s.env.to_wire() for s in self.subs]}

    @classmethod
    def parse(cls, raw: Any, wire: Wire) -> Batch:
        body = _keys(raw, frozenset({"n", "v", "p", "t", "subs"}))
        proposer = _str(body, "p", ID_CHARS_MAX)
        if proposer not in wire.validators:
            raise ProtocolError("bad_field", "batch proposer is not a validator")
        subs = tuple(
            wire.open_envelope(e, Submit)
            for e in _list(body, "subs", wire.limits.batch_submissions_max)
        )
        batch = cls(_int(body, "n", 1, SEQ_MAX), _int(body, "v", 0, VIEW_MAX), proposer,
                    _int(body, "t", 0, codec.INT_MAX), subs)  # type: ignore[arg-type]
        if batch.request_count() > wire.limits.batch_requests_max:
            raise ProtocolError("bad_field", "batch holds too many requests")
        if len({s.key for s in subs}) != len(subs):
            raise ProtocolError("bad_field", "batch repeats a submission")
        return batch


def encode_tx(origin: str, sid: int, client: str, rid: str, payload: bytes) -> bytes:
    """The one encoding of a transaction: Merkle leaf and tx id preimage.
    Its fields are a parsed SUBMIT's (or a stored one's), checked then."""
    return codec.encode_fields((origin, sid, client, rid, payload))


def batch_digest(chain_id: str, seq: int, view: int, proposer: str, time_ms: int,
                 tx_root: bytes) -> bytes:
    return sha256(codec.encode([DOMAIN, "batch", chain_id, seq, view, proposer, time_ms,
                                tx_root]))


# --------------------------------------------------------------------------
# normal case


@dataclass(frozen=True, slots=True)
class _Vote(Message):
    """Shared shape of PRE-PREPARE, PREPARE and COMMIT: (view, seq, digest)."""

    FIELDS: ClassVar[frozenset[str]] = frozenset({"v", "n", "d"})
    view: int
    seq: int
    digest: bytes

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: str, view: int, seq: int,
               digest: bytes) -> Any:
        body = {"v": view, "n": seq, "d": digest}
        return cls(sender, _seal(signer, chain_id, cls.TYPE, sender, body), view, seq, digest)

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> Any:
        body = _keys(body, cls.FIELDS)
        return cls(sender, env, _int(body, "v", 0, VIEW_MAX), _int(body, "n", 1, SEQ_MAX),
                   _bytes(body, "d", DIGEST_BYTES))


@dataclass(frozen=True, slots=True)
class PrePrepare(_Vote):
    TYPE: ClassVar[str] = "pre-prepare"


@dataclass(frozen=True, slots=True)
class Prepare(_Vote):
    TYPE: ClassVar[str] = "prepare"


@dataclass(frozen=True, slots=True)
class Commit(_Vote):
    TYPE: ClassVar[str] = "commit"


@dataclass(frozen=True, slots=True)
class Checkpoint(Message):
    """A replica's signed claim of the block hash after executing ``seq``."""

    TYPE: ClassVar[str] = "checkpoint"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"n", "h"})
    seq: int
    block_hash: bytes

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: str, seq: int,
               block_hash: bytes) -> Checkpoint:
        body = {"n": seq, "h": block_hash}
        return cls(sender, _seal(signer, chain_id, cls.TYPE, sender, body), seq, block_hash)

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> Checkpoint:
        body = _keys(body, cls.FIELDS)
        return cls(sender, env, _int(body, "n", 1, SEQ_MAX), _bytes(body, "h", DIGEST_BYTES))


# --------------------------------------------------------------------------
# view change


@dataclass(frozen=True, slots=True)
class PreparedCert:
    """Proof that (view, seq, digest) prepared: the pre-prepare, its batch and
    2f prepares from distinct backups."""

    pre_prepare: PrePrepare
    batch: Batch
    prepares: tuple[Prepare, ...]

    def to_wire(self) -> list[Any]:
        return [self.pre_prepare.env.to_wire(), self.batch.to_wire(),
                [p.env.to_wire() for p in self.prepares]]


@dataclass(frozen=True, slots=True)
class ViewChange(Message):
    TYPE: ClassVar[str] = "view-change"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"v", "h", "ckpt", "prepared"})
    new_view: int
    stable_seq: int
    checkpoint_proof: tuple[Checkpoint, ...]
    prepared: tuple[PreparedCert, ...]

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: str, new_view: int, stable_seq: int,
               checkpoint_proof: tuple[Checkpoint, ...],
               prepared: tuple[PreparedCert, ...]) -> ViewChange:
        body = {"v": new_view, "h": stable_seq,
                "ckpt": [c.env.to_wire() for c in checkpoint_proof],
                "prepared": [p.to_wire() for p in prepared]}
        return cls(sender, _seal(signer, chain_id, cls.TYPE, sender, body), new_view,
                   stable_seq, checkpoint_proof, prepared)

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> ViewChange:
        body = _keys(body, cls.FIELDS)
        n = wire.validators.n
        proof = tuple(wire.open_envelope(e, Checkpoint) for e in _list(body, "ckpt", n))
        prepared = []
        for item in _list(body, "prepared", wire.limits.prepared_certs_max):
            if type(item) is not list or len(item) != 3:
                raise ProtocolError("bad_field", "prepared cert must be [pp, batch, prepares]")
            pp = wire.open_envelope(item[0], PrePrepare)
            batch = Batch.parse(item[1], wire)
            if type(item[2]) is not list or len(item[2]) > n:
                raise ProtocolError("bad_field", "prepared cert prepares")
            prepares = tuple(wire.open_envelope(e, Prepare) for e in item[2])
            prepared.append(PreparedCert(pp, batch, prepares))  # type: ignore[arg-type]
        return cls(sender, env, _int(body, "v", 1, VIEW_MAX), _int(body, "h", 0, SEQ_MAX),
                   proof, tuple(prepared))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NewView(Message):
    """2f+1 view changes and the pre-prepares the new primary derived from them."""

    TYPE: ClassVar[str] = "new-view"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"v", "vcs", "pps"})
    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: str, view: int,
               view_changes: tuple[ViewChange, ...],
               pre_prepares: tuple[PrePrepare, ...]) -> NewView:
        body = {"v": view, "vcs": [m.env.to_wire() for m in view_changes],
                "pps": [m.env.to_wire() for m in pre_prepares]}
        return cls(sender, _seal(signer, chain_id, cls.TYPE, sender, body), view,
                   view_changes, pre_prepares)

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> NewView:
        body = _keys(body, cls.FIELDS)
        vcs = tuple(wire.open_envelope(e, ViewChange)
                    for e in _list(body, "vcs", wire.validators.n))
        pps = tuple(wire.open_envelope(e, PrePrepare)
                    for e in _list(body, "pps", wire.limits.prepared_certs_max))
        return cls(sender, env, _int(body, "v", 1, VIEW_MAX), vcs, pps)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# liveness helpers and state transfer


@dataclass(frozen=True, slots=True)
class Status(Message):
    """Periodic summary: lets lagging replicas find peers ahead of them and
    replicas left behind in a view change learn the current view."""

    TYPE: ClassVar[str] = "status"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"v", "active", "exec", "stable"})
    view: int
    active: bool
    executed: int
    stable_seq: int

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: str, view: int, active: bool,
               executed: int, stable_seq: int) -> Status:
        body = {"v": view, "active": active, "exec": executed, "stable": stable_seq}
        return cls(sender, _seal(signer, chain_id, cls.TYPE, sender, body), view, active,
                   executed, stable_seq)

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> Status:
        body = _keys(body, cls.FIELDS)
        if type(body["active"]) is not bool:
            raise ProtocolError("bad_field", "active must be a bool")
        return cls(sender, env, _int(body, "v", 0, VIEW_MAX), body["active"],
                   _int(body, "exec", 0, SEQ_MAX), _int(body, "stable", 0, SEQ_MAX))


@dataclass(frozen=True, slots=True)
class Fetch(Message):
    """Ask a peer for committed blocks [from_seq, to_seq]."""

    TYPE: ClassVar[str] = "fetch"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"from", "to"})
    from_seq: int
    to_seq: int

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: str, from_seq: int,
               to_seq: int) -> Fetch:
        body = {"from": from_seq, "to": to_seq}
        return cls(sender, _seal(signer, chain_id, cls.TYPE, sender, body), from_seq, to_seq)

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> Fetch:
        body = _keys(body, cls.FIELDS)
        lo = _int(body, "from", 1, SEQ_MAX)
        hi = _int(body, "to", lo, SEQ_MAX)
        return cls(sender, env, lo, hi)


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A batch with its commit certificate: 2f+1 COMMITs for its digest."""

    batch: Batch
    commits: tuple[Commit, ...]

    def to_wire(self) -> list[Any]:
        return [self.batch.to_wire(), [c.env.to_wire() for c in self.commits]]


@dataclass(frozen=True, slots=True)
class Blocks(Message):
    """Reply to FETCH: committed blocks in order, plus the sender's latest
    stable checkpoint proof so the receiver can move its low watermark."""

    TYPE: ClassVar[str] = "blocks"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"ckpt"})
    checkpoint_proof: tuple[Checkpoint, ...]
    blocks: tuple[CommittedBlock, ...] = ()

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: str,
               checkpoint_proof: tuple[Checkpoint, ...],
               blocks: tuple[CommittedBlock, ...]) -> Blocks:
        body = {"ckpt": [c.env.to_wire() for c in checkpoint_proof]}
        return cls(sender, _seal(signer, chain_id, cls.TYPE, sender, body), checkpoint_proof,
                   blocks)

    def frame(self, extra: Any = None) -> bytes:
        return codec.encode([self.env.signed, self.env.sig, [b.to_wire() for b in self.blocks]])

    @classmethod
    def parse(cls, sender: str, env: Envelope, body: Any, wire: Wire) -> Blocks:
        body = _keys(body, cls.FIELDS)
        proof = tuple(wire.open_envelope(e, Checkpoint)
                      for e in _list(body, "ckpt", wire.validators.n))
        return cls(sender, env, proof)  # type: ignore[arg-type]

    def with_extra(self, extra: Any, wire: Wire) -> Blocks:
        if type(extra) is not list or len(extra) > wire.limits.blocks_per_reply_max:
            raise ProtocolError("bad_field", "blocks must be a bounded list")
        blocks = []
        for item in extra:
            if type(item) is not list or len(item) != 2 or type(item[1]) is not list:
                raise ProtocolError("bad_field", "block must be [batch, commits]")
            if len(item[1]) > wire.validators.n:
                raise ProtocolError("bad_field", "too many commits in certificate")
            commits = tuple(wire.open_envelope(e, Commit) for e in item[1])
            blocks.append(CommittedBlock(Batch.parse(item[0], wire), commits))  # type: ignore[arg-type]
        return Blocks(self.sender, self.env, self.checkpoint_proof, tuple(blocks))


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Submit, PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView,
                Status, Fetch, Blocks)
}


# --------------------------------------------------------------------------
# the boundary


class Wire:
    """Opens frames from peers into validated messages (or raises ProtocolError).

    ``validators`` vote; ``submitters`` (validators and observers) may sign
    SUBMIT, FETCH and BLOCKS.  Only validators may sign any other message type.
    """

    def __init__(self, chain_id: str, validators: Any, verifier: Verifier,
                 limits: Limits | None = None,
                 submitters: Mapping[str, bytes] | None = None) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.verifier = verifier
        self.limits = limits or Limits()
        self.submitters = dict(submitters) if submitters else validators.as_dict()
        for node_id, key in validators.as_dict().items():
            self.submitters.setdefault(node_id, key)
        self._validator_keys = validators.as_dict()
        # SUBMITs opened lately, by signature: the same envelope comes back
        # inside the PRE-PREPARE (and view changes) that orders it.
        self._submits: OrderedDict[bytes, Submit] = OrderedDict()
        self._submits_bytes = 0

    def open(self, frame: bytes,
             not_needed: Callable[[Prepare | Commit], bool] | None = None
             ) -> tuple[Message, Any]:
        """Decode a link frame; returns the message and its raw ``extra``.
        ``not_needed``: see ``open_from``."""
        try:
            value = codec.decode(frame, size_max=self.limits.frame_bytes_max)
        except codec.DecodeError as exc:
            raise ProtocolError("bad_encoding", str(exc)) from None
        if type(value) is not list or len(value) != 3:
            raise ProtocolError("bad_frame", "frame must be [signed, sig, extra]")
        msg = self.open_envelope(value[:2], None, not_needed)
        if value[2] is not None and type(msg) not in (PrePrepare, Blocks):
            raise ProtocolError("bad_frame", f"{msg.TYPE} carries no extra data")
        return msg, value[2]

    def open_from(self, peer: str, frame: bytes,
                  not_needed: Callable[[Prepare | Commit], bool] | None = None
                  ) -> tuple[Message, Any]:
        """``open`` a frame that arrived on the authenticated link to ``peer``:
        its signer must be that peer, or someone is relaying in another's name.

        ``not_needed`` is asked about each well-formed PREPARE and COMMIT from
        a validator before its signature is checked; True raises VoteNotNeeded.
        Why: a quorum needs 2f votes of the others, and the rest arrive after
        the phase is over (two of the six Ed25519 verifies per block per node
        with four validators).  Nothing of such a vote is used, so dropping it
        unverified changes no state; only its equivocation count is lost."""
        ask = None if not_needed is None else (
            lambda vote: vote.sender == peer and not_needed(vote))  # a relay is still rejected
        msg, extra = self.open(frame, ask)
        if msg.sender != peer:
            raise ProtocolError("sender_mismatch", f"{msg.sender} via {peer}")
        return msg, extra

    def open_envelope(self, raw: Any, expected: type[Message] | None,
                      not_needed: Callable[[Prepare | Commit], bool] | None = None) -> Message:
        if type(raw) is not list or len(raw) != 2:
            raise ProtocolError("bad_envelope", "envelope must be [signed, sig]")
        signed, sig = raw
        if type(signed) is not bytes or type(sig) is not bytes or len(sig) != SIGNATURE_BYTES:
            raise ProtocolError("bad_envelope", "envelope fields")
        if expected is None or expected is Submit:
            known = self._submits.get(sig)
            if known is not None and known.env.signed == signed:
                # These exact bytes were decoded, checked and verified before.
                # One reuse is what the memory is for: forget it, so it holds
                # only submissions not yet seen in a PRE-PREPARE.
                del self._submits[sig]
                self._submits_bytes -= len(signed)
                return known
        msg = self._open_envelope(signed, sig, expected, not_needed)
        if expected is None and type(msg) is Submit:
            # A SUBMIT frame of its own: the PRE-PREPARE that orders it will
            # bring it back.  One opened inside a batch (a PRE-PREPARE, a view
            # change, a catch-up reply) has had its use and is not kept.
            self.remember_submit(msg)
        return msg

    def forget_submits(self, subs: Iterable[Submit]) -> None:
        """Drop SUBMITs this node ordered itself.  Why: the memory is for the
        PRE-PREPARE that brings a SUBMIT back, and a primary never opens its
        own PRE-PREPARE, so without this every SUBMIT it received stayed until
        the bound pushed it out (4,096 entries, 32 MiB of them: a primary's
        memory filled for minutes in issue 6's 600 s run)."""
        for sub in subs:
            known = self._submits.get(sub.env.sig)
            if known is not None and known.env.signed == sub.env.signed:
                del self._submits[sub.env.sig]
                self._submits_bytes -= len(known.env.signed)

    def remember_submit(self, msg: Submit) -> None:
        """Keep ``msg`` (opened and checked, or signed by this node) until a
        PRE-PREPARE brings it back, within the memory's bounds."""
        limits = self.limits
        if msg.env.sig in self._submits:
            return
        self._submits[msg.env.sig] = msg
        self._submits_bytes += len(msg.env.signed)
        while (len(self._submits) > limits.opened_submits_max
               or self._submits_bytes > limits.opened_submits_bytes_max):
            _, old = self._submits.popitem(last=False)
            self._submits_bytes -= len(old.env.signed)

    def _open_envelope(self, signed: bytes, sig: bytes, expected: type[Message] | None,
                       not_needed: Callable[[Prepare | Commit], bool] | None = None) -> Message:
        try:
            head = codec.decode(signed, size_max=self.limits.frame_bytes_max)
        except codec.DecodeError as exc:
            raise ProtocolError("bad_encoding", str(exc)) from None
        if type(head) is not list or len(head) != 5:
            raise ProtocolError("bad_envelope", "signed part must have 5 items")
        domain, chain, type_, sender, body = head
        if domain != DOMAIN or chain != self.chain_id:
            raise ProtocolError("wrong_domain", "domain tag or chain id differs")
        cls = MESSAGE_TYPES.get(type_) if type(type_) is str else None
        if cls is None or (expected is not None and cls is not expected):
            raise ProtocolError("wrong_type", f"unexpected message type {type_!r:.80}")
        # Observers may submit, fetch and serve blocks (BLOCKS are checked by
        # their commit certificates); only validators may vote.
        keys = self.submitters if cls in (Submit, Fetch, Blocks) else self._validator_keys
        if type(sender) is not str or sender not in keys:
            raise ProtocolError("unknown_sender", f"{sender!r:.80} may not send {type_}")
        vote = None
        if not_needed is not None and (cls is Prepare or cls is Commit):
            # Fields first (a bare check of three values), so the question is
            # asked about a well-formed vote; the answer only ever drops it.
            vote = cls.parse(sender, Envelope(signed, sig), body, self)
            if not_needed(vote):
                raise VoteNotNeeded(type_)
        if not self.verifier.verify(keys[sender], signed, sig):
            raise ProtocolError("bad_signature", f"{type_} from {sender}")
        return vote if vote is not None else cls.parse(sender, Envelope(signed, sig), body, self)
