"""Which faults a simulation may inject, and the rates it draws them with."""

from __future__ import annotations

FAULT_KINDS = (
    "drop",        # lose messages
    "dup",         # deliver a message twice
    "delay",       # occasional long delays, hence reordering
    "partition",   # split the cluster in two, both ways
    "oneway",      # cut one direction between two nodes
    "isolate",     # cut one node from all others
    "crash",       # stop a node, restart it later from its persisted state
    "crash_mid",   # crash between two actions of one step
    "wipe",        # erase a node's store; it must recover from peers
    "replay",      # re-deliver old messages from anyone
    "equivocate",  # a Byzantine primary with two faces (Twins)
    "silent",      # a Byzantine node that never sends
    "forge",       # a Byzantine node sending forged and malformed messages
    "bogus",       # a Byzantine node sending view changes and checkpoints with bad proofs
    "censor",      # a Byzantine primary that orders every submission but one origin's
)
BYZANTINE_KINDS = ("equivocate", "silent", "forge", "bogus", "censor")


def parse_faults(text: str) -> frozenset[str]:
    """``all``, ``none`` or a comma-separated list of FAULT_KINDS."""
    text = text.strip()
    if text == "all":
        return frozenset(FAULT_KINDS)
    if text in ("", "none"):
        return frozenset()
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(kinds - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds: {', '.join(unknown)} "
                         f"(choose from all, none, {', '.join(FAULT_KINDS)})")
    return kinds
