"""The pure consensus core: no I/O, clock, randomness or event loop inside.

Everything here is driven by a shell (the trio daemon or the simulator) that
feeds messages, requests, timer expiries and execution results, and performs
the actions returned.  ``tests/test_core_purity.py`` keeps the imports honest.
"""

from .actions import (
    Action,
    Broadcast,
    CancelTimer,
    Execute,
    Note,
    Persist,
    Send,
    ServeBlocks,
    SetTimer,
)
from .chain import BlockHeader, ChainTip, ExecutedBlock, Tx, execute_batch
from .crypto import CachingVerifier, Signer, Verifier, sha256
from .messages import Batch, CommittedBlock, ProtocolError, Request, Wire
from .replica import ExecutedTip, Replica, ReplicaConfig
from .validators import ValidatorSet

__all__ = [
    "Action", "Batch", "BlockHeader", "Broadcast", "CachingVerifier", "CancelTimer",
    "ChainTip", "CommittedBlock", "Execute", "ExecutedBlock", "ExecutedTip", "Note",
    "Persist", "ProtocolError", "Replica", "ReplicaConfig", "Request", "Send", "ServeBlocks",
    "SetTimer", "Signer", "Tx", "ValidatorSet", "Verifier", "Wire", "execute_batch", "sha256",
]
