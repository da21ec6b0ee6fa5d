"""Submission ids: unique per origin for ever, with one write a minute.

A validator's or an observer's own SUBMITs carry a submission id (``sid``)
that its peers use, with the origin, as the submission's key: an id must
never be issued twice, not after a restart and not after the store was
wiped.  Two rules give that without a write per SUBMIT:

* ids grow with the clock as well as by one (``max(last + 1, now_ms *
  1000)``), so a node whose store was wiped starts above every id it issued
  before (unless its clock went back by more than the ids it used);
* ids are reserved ``SID_RESERVE`` ahead in one persisted record, and a
  restarted node starts above its reservation, so nothing below it is
  reused even if the clock went back.

Why a reservation and not the last id: issue 6 found the fsync of a
per-SUBMIT ``sid`` record on the path of every request that reached a
backup (and, until session 6, of every request an observer forwarded).
"""

from __future__ import annotations

from . import codec
from .actions import Persist

__all__ = ["SID_RECORD", "SID_RESERVE", "SidIssuer"]

SID_RECORD = "sid"
# About a minute of ids (they grow with ``now_ms * 1000``).
SID_RESERVE = 60_000_000


class SidIssuer:
    """Issues this node's submission ids and says when to persist a reservation."""

    __slots__ = ("last", "reserved")

    def __init__(self) -> None:
        self.last = 0
        self.reserved = 0  # persisted: every id issued is at most this

    def restore(self, raw: bytes, size_max: int) -> None:
        """Start above a persisted reservation (or a pre-reservation last id)."""
        self.last = self.reserved = codec.decode(raw, size_max=size_max)

    def peek(self, now_ms: int) -> int:
        """The id the next ``issue`` at ``now_ms`` would give, not yet taken."""
        return max(self.last + 1, now_ms * 1000)

    def take(self, sid: int) -> list[Persist]:
        """Mark ``sid`` (from ``peek``) issued; a Persist when the reservation moves.

        The Persist must be durable before the SUBMIT with this id leaves.
        """
        self.last = sid
        if sid <= self.reserved:
            return []
        self.reserved = sid + SID_RESERVE
        return [Persist(puts=((SID_RECORD, codec.encode(self.reserved)),))]
