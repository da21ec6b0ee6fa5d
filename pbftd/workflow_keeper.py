"""The deadline keeper: deadlines fire even when no court writes anything.

The workflow engine fires a deadline in the first block whose time reaches
it, but PBFT makes blocks only for transactions, so an idle chain would hold
a due case until someone wrote.  Each validator therefore watches the
earliest pending deadline (the engine's time-ordered index ``wf/dl/``) and,
once its own clock has passed it, submits one empty "tick" transaction per
chain height.  The tick carries nothing the applications read; it only makes
a block, and that block's agreed time decides what is due, so the node's
clock decides *when to ask* for a block, never *what happens* in it.

At most one tick per validator per height: if the primary's clock lags
behind ours the block may still fall short of the deadline, and the next
height asks again.
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from .core import codec
from .core.messages import Request
from .workflows import keys as K

__all__ = ["KEEPER_CLIENT", "TICK_PAYLOAD", "next_deadline_ms", "run_keeper"]

KEEPER_CLIENT = "pbftd/keeper"
TICK_PAYLOAD = codec.encode({"op": "tick"})
KEEPER_INTERVAL_S = 1.0

log = structlog.get_logger("pbftd")


def next_deadline_ms(store: Any) -> int | None:
    """The time of the earliest deadline not yet fired, from committed state."""
    for key, _value in store.iter_state(K.DEADLINE):
        return K.from_be8(key[len(K.DEADLINE):])
    return None


async def run_keeper(node: Any, interval_s: float = KEEPER_INTERVAL_S) -> None:
    """Tick whenever a deadline is due by this node's clock (validators only)."""
    asked_at = -1
    while True:
        await trio.sleep(interval_s)
        runtime = node.runtime
        tip = node.chain.tip()
        due = next_deadline_ms(node.store)
        if due is None or due > runtime.now_ms() or tip.height == asked_at or \
                runtime.read_only_reason is not None:
            continue
        asked_at = tip.height
        waiter = await runtime.submit([Request(KEEPER_CLIENT, f"tick-{tip.height}",
                                               TICK_PAYLOAD)])
        await waiter.accepted.wait()
        log.info("deadline_tick", height=tip.height, due_ms=due, error=waiter.error)
