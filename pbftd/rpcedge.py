"""What the daemon adds at its RPC edge besides methods: rate limits from
[rpc], the /ws limits, and the event hub fed by the runtime's on_block hook.

``build_rpc`` calls ``edge_options`` once and passes the result to
``make_app``; kept apart from rpcservice.py so each can change on its own.
"""

from __future__ import annotations

from typing import Any

from rpc.jsonrpc import Dispatcher
from rpc.ratelimit import RateLimiter
from rpc.ws import WsLimits

from .events import ChainEventSource, EventHub, register_event_methods

__all__ = ["edge_options"]


def edge_options(node: Any, dispatcher: Dispatcher) -> dict[str, Any]:
    """Register events.* on `dispatcher`, hook the runtime, return make_app kwargs."""
    settings = node.settings.rpc
    ws = WsLimits(frame_bytes_max=settings.body_bytes_max)
    hub = EventHub(ChainEventSource(node.chain, node.workflows))
    node.runtime.on_block = hub.publish
    register_event_methods(dispatcher, hub, subscriptions_max=ws.subscriptions_max)
    limiter = RateLimiter(rate_per_s_token=settings.rate_per_s_token,
                          rate_per_s_anonymous=settings.rate_per_s_anonymous)
    return {"rate_limiter": limiter, "ws": ws}
