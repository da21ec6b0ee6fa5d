"""What the replica asks its shell to do, in order.

The ordering contract (as etcd raft's ``Ready``): the shell performs actions
in the order returned, and a ``Persist`` must be durable before any action
after it that sends bytes (``Send``, ``Broadcast``, ``ServeBlocks``).  The
shell may group consecutive persists into one synced write.  ``Execute``
actions come strictly in sequence order; after executing (and durably
storing) the block the shell reports back with ``Replica.on_executed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .messages import Batch, Checkpoint, Commit

__all__ = [
    "TIMER_BATCH",
    "TIMER_FETCH",
    "TIMER_NEW_VIEW",
    "TIMER_REQUEST",
    "TIMER_STATUS",
    "Action",
    "Broadcast",
    "CancelTimer",
    "Execute",
    "Note",
    "Persist",
    "Send",
    "ServeBlocks",
    "SetTimer",
]

TIMER_BATCH = "batch"          # primary: close a partial batch after batch_wait_ms
TIMER_REQUEST = "request"      # a pending request has not executed: suspect the primary
TIMER_NEW_VIEW = "new_view"    # 2f+1 view changes seen, NEW-VIEW has not come
TIMER_STATUS = "status"        # periodic status, retransmission and catch-up
TIMER_FETCH = "fetch"          # a state-transfer fetch went unanswered


@dataclass(frozen=True, slots=True)
class Send:
    to: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every other validator."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class Persist:
    puts: tuple[tuple[str, bytes], ...] = ()
    deletes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Execute:
    """Execute ``batch`` as block ``batch.seq``; ``commits`` is its certificate."""

    batch: Batch
    commits: tuple[Commit, ...]


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class ServeBlocks:
    """Answer a FETCH: send stored blocks [from_seq, to_seq] with their
    certificates and this checkpoint proof to ``to`` (see messages.Blocks)."""

    to: str
    from_seq: int
    to_seq: int
    checkpoint_proof: tuple[Checkpoint, ...]


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth a log line or a metric; never needed for correctness."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Action = Send | Broadcast | Persist | Execute | SetTimer | CancelTimer | ServeBlocks | Note
