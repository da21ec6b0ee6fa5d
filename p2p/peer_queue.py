"""The bounded send queue of one peer.

The queue belongs to the peer, not to a link, so frames survive a reconnect
or a duplicate-link swap; only a batch already handed to a dying link is
lost. It is bounded so that a slow or stopped peer costs at most
`frames_max` frames of memory and never blocks sends to anyone else. When it
is full the newest frame is dropped: PBFT retransmits through its own timers
(view change, checkpoint and status messages), so a drop costs latency, not
safety.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

__all__ = ["PeerQueue"]


class PeerQueue:
    """A deque with a bound, a non-blocking `offer` and an async batch `take`."""

    def __init__(self, frames_max: int) -> None:
        assert frames_max > 0
        self._frames_max = frames_max
        self._items: deque[bytes] = deque()
        self._nonempty = trio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, frame: bytes) -> bool:
        """Enqueue unless full; never blocks. False means the frame was dropped."""
        if len(self._items) >= self._frames_max:
            return False
        self._items.append(frame)
        self._nonempty.set()
        return True

    def wake_takers(self) -> None:
        """Wake whoever waits in `take_batch`, to ask its `stop` again."""
        self._nonempty.set()

    async def take_batch(self, frames_max: int, bytes_max: int,
                         stop: Callable[[], bool] = lambda: False) -> list[bytes]:
        """Wait for frames, then pop as many as fit: at least one, at most
        `frames_max`, and no more than `bytes_max` payload bytes unless the
        first frame alone is that large.

        Returns [] without popping once `stop()` is true, checked before
        each wait and after each wake-up (`wake_takers`): a link's writer
        stops this way for its heartbeat and when it retires, which costs
        less than a cancel scope around every wait. Several links' writers
        may wait on one peer's queue during a link swap; each asks its own
        `stop`, so a wake-up meant for one is only a spurious one for the
        others."""
        while True:
            if stop():
                return []
            if self._items:
                break
            if self._nonempty.is_set():
                self._nonempty = trio.Event()
            await self._nonempty.wait()
        # A waiter cancelled while being woken must not pop frames it can no
        # longer send; that would turn a link swap into frame loss.
        await trio.lowlevel.checkpoint_if_cancelled()
        batch = [self._items.popleft()]
        size = len(batch[0])
        while self._items and len(batch) < frames_max:
            nxt = len(self._items[0])
            if size + nxt > bytes_max:
                break
            batch.append(self._items.popleft())
            size += nxt
        return batch
