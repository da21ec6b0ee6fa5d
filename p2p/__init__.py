"""Authenticated validator mesh: moves opaque byte frames between nodes.

The daemon hands `Mesh.send`/`Mesh.broadcast` bytes and reads each
websocket message's frames as one `(FRAMES, peer_id, frames)` item, from
`Mesh.inbox` or from its own channel given to `Mesh.run(deliver_to=...)`,
calling `Mesh.release` once they are handled (a peer's unreleased bytes are
bounded). The mesh knows nothing about consensus; it guarantees only that
a frame delivered came from the node whose key is listed for `peer_id`, and
that frames on one link arrive in order. Delivery is best effort: PBFT's
own timers retransmit.
"""

from p2p.config import MeshConfig, PeerInfo, raw_public_key
from p2p.handshake import DOMAIN_TAG, HandshakeRejected
from p2p.mesh import FRAMES, WS_PATH, Mesh
from p2p.wire import PeerProtocolError

__all__ = [
    "DOMAIN_TAG",
    "FRAMES",
    "WS_PATH",
    "HandshakeRejected",
    "Mesh",
    "MeshConfig",
    "PeerInfo",
    "PeerProtocolError",
    "raw_public_key",
]
