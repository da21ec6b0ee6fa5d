"""Per-peer state that outlives links, and the rule that picks one link.

A peer's slot holds its send queue and its current link; waiters can block
until the peer is connected or disconnected without polling. The duplicate
rule is a pure function so both ends, and the tests, can evaluate it alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from p2p.peer_queue import PeerQueue

if TYPE_CHECKING:
    from p2p.link import Link

__all__ = ["PeerSlot", "keep_new_link"]


class PeerSlot:
    """A known node: its queue, its current link, and a change signal."""

    __slots__ = ("_changed", "_drain_changed", "_inbox_changed", "draining", "drops",
                 "inbox_bytes", "link", "node_id", "queue")

    def __init__(self, node_id: str, queue: PeerQueue) -> None:
        self.node_id = node_id
        self.queue = queue
        self.link: Link | None = None
        self.drops = 0
        self._changed = trio.Event()
        # Retired links still delivering; the active link waits for them so
        # that frames the peer sent before switching links come out first.
        self.draining = 0
        self._drain_changed = trio.Event()
        # Bytes of this peer's frames delivered to the inbox and not yet
        # released by the consumer (see Mesh.release).
        self.inbox_bytes = 0
        self._inbox_changed: trio.Event | None = None  # only while a reader waits

    def set_link(self, link: Link | None) -> None:
        self.link = link
        self._changed.set()
        self._changed = trio.Event()

    def add_draining(self, delta: int) -> None:
        self.draining += delta
        assert self.draining >= 0
        self._drain_changed.set()
        self._drain_changed = trio.Event()

    async def wait_drain_change(self) -> None:
        await self._drain_changed.wait()

    async def reserve_inbox(self, size: int, budget: int) -> None:
        """Wait until ``size`` more bytes fit the peer's inbox budget, then count them.

        A peer with nothing outstanding may always deliver one message, so a
        message larger than the budget is slow, never stuck.
        """
        while self.inbox_bytes and self.inbox_bytes + size > budget:
            if self._inbox_changed is None:
                self._inbox_changed = trio.Event()
            await self._inbox_changed.wait()
        self.inbox_bytes += size

    def release_inbox(self, size: int) -> None:
        """Called for every frame handled, so it costs nothing when no reader waits."""
        self.inbox_bytes -= size
        assert self.inbox_bytes >= 0, "released more inbox bytes than were delivered"
        if self._inbox_changed is not None:
            self._inbox_changed.set()
            self._inbox_changed = None

    async def wait_until(self, *, connected: bool) -> None:
        while (self.link is not None) != connected:
            await self._changed.wait()


def keep_new_link(own_id: str, peer_id: str, new_dialer: str, old_dialer: str) -> bool:
    """Duplicate rule, identical at both ends: True to replace the old link."""
    preferred_dialer = min(own_id, peer_id)
    new_preferred = new_dialer == preferred_dialer
    if new_preferred != (old_dialer == preferred_dialer):
        return new_preferred
    return True  # same dialer: it keeps one dial at a time, so the old link is stale
