"""The daemon's JSON-RPC service: methods, metrics and access, mounted on
the HTTP server (rpc/http11.py) by ``start_rpc``.

Bearer tokens are checked against the SHA-256 hashes in the node's config;
a valid token's scopes are returned together with ``client:<token name>``
so handlers can record which client of this court made a write.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio

from rpc.chain_methods import HEX64, register_chain_methods
from rpc.errors import RpcError
from rpc.jsonrpc import Dispatcher, RpcContext
from rpc.metrics import Registry
from rpc.server import RpcLimits, make_app, serve_rpc

from . import evidence
from .api import DaemonApi
from .daemon import Node
from .evidence_batch import register_batch_methods
from .proof_methods import register_proof_methods
from .rpcedge import edge_options
from .rpcwrite import client_of, submit_write
from .workflow_methods import register_workflow_methods

__all__ = ["build_rpc", "start_rpc"]

EVIDENCE_WRITE = "evidence:write"
INVALID_PARAMS = -32602
_SHA = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "SHA-256, hex"}

ATTEST_PARAMS = {
    "type": "object", "required": ["sha256", "kind", "case_no"], "additionalProperties": False,
    "properties": {
        "sha256": _SHA,
        "kind": {"enum": list(evidence.KINDS)},
        "case_no": {"type": "string", "minLength": 1, "maxLength": evidence.CASE_NO_CHARS_MAX,
                    "description": "case number (案号), e.g. (2020)吉0102民初1234号"},
        "title": {"type": "string", "minLength": 1, "maxLength": evidence.TITLE_CHARS_MAX},
        "request_id": {"type": "string", "minLength": 1, "maxLength": 128,
                       "description": "makes the write idempotent for this client"},
        "wait": {"type": "boolean", "description": "answer only once committed"},
    },
}
ATTEST_RESULT = {
    "type": "object", "required": ["tx_id", "status"],
    "properties": {"tx_id": HEX64, "status": {"enum": ["pending", "committed"]},
                   "height": {"type": "integer", "minimum": 1}},
}
VERIFY_RESULT = {
    "type": "object", "required": ["attested", "records"],
    "properties": {"attested": {"type": "boolean"},
                   "records": {"type": "array", "items": {"type": "object"}}},
}


def register_evidence_methods(dispatcher: Dispatcher, node: Node) -> None:
    @dispatcher.method(
        "evidence.attest", scope=EVIDENCE_WRITE, params_schema=ATTEST_PARAMS,
        result_schema=ATTEST_RESULT, result_name="attestation",
        summary="Attest a document's SHA-256 for a case, as this court.",
        description="Only the hash goes on chain. request_id makes the call idempotent; "
                    "wait: true answers after commit.")
    async def attest(params: dict[str, Any], ctx: RpcContext) -> dict[str, Any]:
        try:
            payload = evidence.attest_payload(params["sha256"], params["kind"], params["case_no"],
                                              params.get("title"))
        except evidence.EvidenceError as exc:
            raise RpcError(INVALID_PARAMS, "Invalid params", {"reason": str(exc)}) from None
        return await submit_write(node, ctx, payload, params.get("request_id"),
                                  bool(params.get("wait")))

    @dispatcher.method(
        "evidence.verify", public=True, result_schema=VERIFY_RESULT, result_name="verification",
        params_schema={"type": "object", "required": ["sha256"], "additionalProperties": False,
                       "properties": {"sha256": _SHA}},
        summary="Every attestation of a document hash on this chain.")
    def verify(params: dict[str, Any], _ctx: RpcContext) -> dict[str, Any]:
        records = evidence.records_for(node.store.iter_state, bytes.fromhex(params["sha256"]))
        return {"attested": bool(records), "records": records}


def _metrics(node: Node) -> Registry:
    """The daemon's /metrics.  Callbacks read ``node.replica`` each time:
    the runtime rebuilds its replica from disk (storage recovered, clock
    stepped back), and a replica captured here would be reported forever.
    A rebuilt replica's counts start again from 0, which Prometheus reads as
    a counter reset."""
    reg = Registry()
    runtime = node.runtime
    reg.gauge("pbftd_height", "last executed block height",
              callback=lambda: node.chain.tip().height)
    reg.gauge("pbftd_view", "current PBFT view", callback=lambda: node.replica.view)
    reg.gauge("pbftd_stable_checkpoint", "last stable checkpoint seq",
              callback=lambda: node.replica.stable_seq)
    reg.counter("pbftd_view_changes_total", "view changes this replica started",
                callback=lambda: node.replica.stats["view_changes_started"])
    reg.gauge("pbftd_peers_connected", "validator links up",
              callback=lambda: len(runtime.mesh.connected_peers()))
    reg.gauge("pbftd_pending_submissions", "submissions waiting for a batch",
              callback=lambda: len(node.replica.pending))
    reg.counter("pbftd_messages_rejected_total", "peer messages refused as invalid",
                callback=lambda: sum(v for k, v in node.replica.stats.items()
                                     if k.startswith("rejected_")))
    reg.counter("pbftd_persist_seconds_total", "time spent in synced consensus writes",
                callback=lambda: runtime.stats["persist_us_total"] / 1e6)
    reg.counter("pbftd_persists_total", "synced consensus writes",
                callback=lambda: runtime.stats["persists"])
    reg.counter("pbftd_transactions_total", "transactions executed",
                callback=lambda: runtime.stats["txs"])
    reg.counter("pbftd_votes_not_needed_total",
                "PREPAREs and COMMITs dropped unverified because their phase was over",
                callback=lambda: node.replica.stats["votes_not_needed"])
    reg.gauge("pbftd_peer_send_queue_frames", "frames queued for each peer link",
              labelnames=("peer",),
              callback=lambda: {(peer,): float(depth) for peer, depth in
                                runtime.mesh.stats.get("queue_depth", {}).items()})
    reg.gauge("pbftd_peer_inbox_bytes", "bytes of each peer's frames received and not yet handled",
              labelnames=("peer",),
              callback=lambda: {(peer,): float(size) for peer, size in
                                runtime.mesh.stats.get("inbox_bytes", {}).items()})
    reg.gauge("pbftd_process_resident_bytes", "resident memory of this process (VmRSS)",
              callback=_resident_bytes)
    reg.gauge("pbftd_python_allocated_blocks",
              "memory blocks Python's allocator holds (sys.getallocatedblocks)",
              callback=lambda: float(sys.getallocatedblocks()))
    reg.gauge("pbftd_rocksdb_memory_bytes", "RocksDB memory by kind",
              labelnames=("kind",),
              callback=lambda: {(kind,): float(n)
                                for kind, n in node.store.memory_bytes().items()})
    latency = reg.histogram("pbftd_commit_latency_seconds",
                            "from accepting a client's submission to its block")
    runtime.on_commit_latency = lambda ms: latency.observe(ms / 1000)
    return reg


def _resident_bytes() -> float:
    with open("/proc/self/statm", "rb") as f:
        return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))


def build_rpc(node: Node) -> Any:
    settings = node.settings.rpc
    dispatcher = Dispatcher(title="pbftd JSON-RPC", version="0.1.0",
                            batch_len_max=settings.batch_len_max)
    api = DaemonApi(node)
    register_chain_methods(dispatcher, api)
    register_evidence_methods(dispatcher, node)
    register_batch_methods(dispatcher, node, client_of)
    register_workflow_methods(dispatcher, node)
    register_proof_methods(dispatcher, node)

    def auth(token: str) -> frozenset[str] | None:
        grant = settings.token_for(token)
        return None if grant is None else frozenset(grant.scopes) | {f"client:{grant.name}"}

    edge = edge_options(node, dispatcher)  # events.*, rate limits, /ws (pbftd/rpcedge.py)
    return make_app(dispatcher, node_api=api, metrics=_metrics(node),
                    limits=RpcLimits(body_bytes_max=settings.body_bytes_max,
                                     request_timeout_ms=settings.request_timeout_ms), auth=auth,
                    **edge)


async def start_rpc(node: Node, nursery: trio.Nursery) -> None:
    host, _, port = node.rpc_listen.rpartition(":")
    read_timeout_s = max(65, node.settings.rpc.request_timeout_ms // 1000 + 35)
    await nursery.start(lambda task_status: serve_rpc(
        build_rpc(node), host.strip("[]"), int(port), read_timeout_s=read_timeout_s,
        connections_max=node.settings.rpc.connections_max,
        connections_per_address_max=node.settings.rpc.connections_per_address_max,
        task_status=task_status))
