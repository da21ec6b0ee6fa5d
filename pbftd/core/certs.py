"""Checks of the two certificates anyone may be handed by a peer.

A commit certificate (q COMMITs for one batch digest) proves a block was
committed; a checkpoint proof (q CHECKPOINTs for one block hash) proves the
chain up to that height.  Replicas and observers check both before acting on
a block they did not vote on; signatures were already verified when the
envelopes were opened, so these checks are about who signed what.
"""

from __future__ import annotations

from .messages import Checkpoint, CommittedBlock, ProtocolError
from .validators import ValidatorSet

__all__ = ["check_commit_cert", "checkpoint_proof_hash"]


def check_commit_cert(vals: ValidatorSet, chain_id: str, block: CommittedBlock) -> None:
    """q distinct validators' COMMITs for this batch, all in one view."""
    digest = block.batch.digest(chain_id)
    senders = {c.sender for c in block.commits}
    views = {c.view for c in block.commits}
    if len(senders) != len(block.commits) or len(senders) < vals.quorum:
        raise ProtocolError("bad_commit_cert", "too few or repeated commits")
    if len(views) != 1 or any(c.seq != block.batch.seq or c.digest != digest
                              for c in block.commits):
        raise ProtocolError("bad_commit_cert", "commits do not match the block")


def checkpoint_proof_hash(vals: ValidatorSet, interval: int, seq: int,
                          proof: tuple[Checkpoint, ...]) -> bytes:
    """Validate a stable-checkpoint proof and return the block hash it certifies."""
    if seq == 0:
        if proof:
            raise ProtocolError("bad_checkpoint_proof", "proof for seq 0")
        return b""
    if seq % interval:
        raise ProtocolError("bad_checkpoint_proof", "seq is not a checkpoint boundary")
    senders = {c.sender for c in proof}
    hashes = {c.block_hash for c in proof}
    if len(senders) != len(proof) or len(senders) < vals.quorum:
        raise ProtocolError("bad_checkpoint_proof", "too few or repeated signers")
    if len(hashes) != 1 or any(c.seq != seq for c in proof):
        raise ProtocolError("bad_checkpoint_proof", "signers disagree")
    return next(iter(hashes))
