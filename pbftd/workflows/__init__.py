"""Judicial workflows on chain (issue 5): a deterministic state machine.

The seam for the daemon:

* ``Engine(config, is_attested_by).execute_block(state, BlockContext(h, t), fresh_txs)``
  once per block, on the committed state; write ``outcome.ops`` into the
  block's write batch, fold ``outcome.digest`` into the state root, index
  ``outcome.attestations`` as attestations, publish ``outcome.events``.
* ``ops.encode_op(method, params)`` at the RPC edge builds the transaction
  payload (validated); ``reads.*`` answer the read methods;
  ``reads.audit_read_payload`` records an agency read.
"""

from .engine import (
    EVENT_TOPICS,
    BlockContext,
    BlockOutcome,
    Config,
    Engine,
    TxContext,
    TxResult,
    run_blocks,
)
from .ops import METHODS, encode_op, parse_payload, validate_op
from .state import MemoryState, Overlay, State
from .validate import WorkflowError

__all__ = ["EVENT_TOPICS", "METHODS", "BlockContext", "BlockOutcome", "Config", "Engine",
           "MemoryState", "Overlay", "State", "TxContext", "TxResult", "WorkflowError", "encode_op",
           "parse_payload", "run_blocks", "validate_op"]
