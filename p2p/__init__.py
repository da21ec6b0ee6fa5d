"""Authenticated validator mesh: moves opaque byte frames between nodes.

The daemon hands `Mesh.send`/`Mesh.broadcast` bytes and reads
`(peer_id, frame)` pairs from `Mesh.inbox`, calling `Mesh.release` for each
frame once handled (a peer's unreleased bytes are bounded). The mesh knows
nothing about consensus; it guarantees only that a frame in the inbox came
from the node whose key is listed for `peer_id`, and that frames on one link
arrive in order. Delivery is best effort: PBFT's own timers retransmit.
"""

from p2p.config import MeshConfig, PeerInfo, raw_public_key
from p2p.handshake import DOMAIN_TAG, HandshakeRejected
from p2p.mesh import WS_PATH, Mesh
from p2p.wire import PeerProtocolError

__all__ = [
    "DOMAIN_TAG",
    "WS_PATH",
    "HandshakeRejected",
    "Mesh",
    "MeshConfig",
    "PeerInfo",
    "PeerProtocolError",
    "raw_public_key",
]
