"""JSON-RPC for pbftd: a transport-free engine, the read methods, and an HTTP shell.

jsonrpc.py is the engine (no I/O), chain_methods.py registers SPEC's read
methods against the daemon's NodeApi, server.py is the ASGI app that
http11.py serves (h11, wsproto on trio), metrics.py renders /metrics. See
each module's docstring for the rules it keeps.

The HTTP shell is imported as `rpc.server`, not re-exported here, so the
engine stays importable (and testable) without the HTTP libraries installed.
"""

from .chain_methods import EVIDENCE_READ, register_chain_methods
from .errors import RpcError
from .jsonrpc import ADMIN_SCOPE, ANONYMOUS, Dispatcher, RpcContext, parse_request_body
from .metrics import Registry
from .node_api import NodeApi

__all__ = [
    "ADMIN_SCOPE",
    "ANONYMOUS",
    "EVIDENCE_READ",
    "Dispatcher",
    "NodeApi",
    "Registry",
    "RpcContext",
    "RpcError",
    "parse_request_body",
    "register_chain_methods",
]
