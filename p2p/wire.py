"""Wire codec for p2p links: handshake maps and the frame envelope.

Pure functions, no I/O. Every decoder treats its input as hostile: it checks
types with `type(x) is ...` (so `True` is not an int), bounds every length,
and re-encodes the decoded value and compares it with the received bytes, so
trailing garbage, duplicate map keys, non-minimal integers and tags are all
rejected as `PeerProtocolError` (cbor2 accepts each of them silently).

After the handshake every websocket message is one kind byte and a body:

    0x00 BATCH  body = CBOR array of 1..batch_frames_max byte strings
    0x01 PING   body empty; sent when the link is otherwise idle
    0x02 GOODBYE body empty; the sender's last message on a retired link

A batch exists because each websocket message costs ~150 us of CPU; the
sender packs queued frames into one message and the receiver unpacks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

__all__ = [
    "GOODBYE",
    "KIND_BATCH",
    "KIND_GOODBYE",
    "KIND_PING",
    "NONCE_BYTES",
    "PING",
    "SIGNATURE_BYTES",
    "Auth",
    "Hello",
    "PeerProtocolError",
    "decode_auth",
    "decode_hello",
    "decode_message",
    "encode_auth",
    "encode_batch",
    "encode_hello",
    "envelope_bytes_max",
]

PROTOCOL_VERSION = 1
NONCE_BYTES = 32
SIGNATURE_BYTES = 64
ID_CHARS_MAX = 128
KIND_BATCH = 0x00
KIND_PING = 0x01
KIND_GOODBYE = 0x02
PING = bytes([KIND_PING])
GOODBYE = bytes([KIND_GOODBYE])
# Largest CBOR header of an array or byte string (major type + 8-byte length).
_CBOR_HEADER_BYTES_MAX = 9
_DECODE_ERRORS = (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError)


class PeerProtocolError(Exception):
    """The peer sent bytes that are not a valid message: its fault, not ours."""


def envelope_bytes_max(frame_bytes_max: int, batch_frames_max: int) -> int:
    """Upper bound on one encoded batch, used as the websocket message limit.

    The payload of a batch never exceeds frame_bytes_max; the rest is the
    kind byte plus CBOR headers.
    """
    return 1 + _CBOR_HEADER_BYTES_MAX * (1 + batch_frames_max) + frame_bytes_max


def _refuse_aliasing(*_args: object) -> object:
    raise PeerProtocolError("CBOR value sharing and string references are not allowed")


# Value sharing (tags 28/29) and string references (256/25) decode to one
# object referenced any number of times, and the canonical check below would
# re-encode every reference in full: 221 bytes of HELLO, before the handshake,
# blocked the event loop for seconds inside cbor2, and 4 MB asked it for a
# terabyte and aborted the process.  They are refused as they are read.
_NO_ALIASING = {tag: _refuse_aliasing for tag in (25, 28, 29, 256)}


def _loads_exact(data: bytes | memoryview, *, canonical: bool) -> object:
    try:
        value = cbor2.loads(data, semantic_decoders=_NO_ALIASING)
        same = cbor2.dumps(value, canonical=canonical) == data
    except _DECODE_ERRORS as exc:
        if isinstance(exc.__cause__, PeerProtocolError):  # ours, wrapped by cbor2
            raise exc.__cause__ from None
        raise PeerProtocolError(f"undecodable CBOR: {exc}") from None
    if not same:
        raise PeerProtocolError("CBOR not in canonical form or has trailing bytes")
    return value


@dataclass(frozen=True, slots=True)
class Hello:
    """First handshake message: who I claim to be and my fresh nonce."""

    chain_id: str
    node_id: str
    nonce: bytes

    def __post_init__(self) -> None:
        for name in ("chain_id", "node_id"):
            value = getattr(self, name)
            if type(value) is not str or not 0 < len(value) <= ID_CHARS_MAX:
                raise PeerProtocolError(f"hello {name} must be a str of 1..{ID_CHARS_MAX}")
        if type(self.nonce) is not bytes or len(self.nonce) != NONCE_BYTES:
            raise PeerProtocolError(f"hello nonce must be {NONCE_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class Auth:
    """Second handshake message: my signature over the shared transcript."""

    signature: bytes

    def __post_init__(self) -> None:
        if type(self.signature) is not bytes or len(self.signature) != SIGNATURE_BYTES:
            raise PeerProtocolError(f"auth signature must be {SIGNATURE_BYTES} bytes")


def encode_hello(hello: Hello) -> bytes:
    body = {"t": "hello", "v": PROTOCOL_VERSION, "chain_id": hello.chain_id,
            "node_id": hello.node_id, "nonce": hello.nonce}
    return cbor2.dumps(body, canonical=True)


def encode_auth(auth: Auth) -> bytes:
    return cbor2.dumps({"t": "auth", "sig": auth.signature}, canonical=True)


def _decode_map(data: object, kind: str, keys: frozenset[str]) -> dict:
    if type(data) is not bytes:
        raise PeerProtocolError(f"{kind} must be a binary message")
    value = _loads_exact(data, canonical=True)
    if type(value) is not dict or value.keys() != keys or value.get("t") != kind:
        raise PeerProtocolError(f"expected a {kind} map with keys {sorted(keys)}")
    return value


_HELLO_KEYS = frozenset({"t", "v", "chain_id", "node_id", "nonce"})
_AUTH_KEYS = frozenset({"t", "sig"})


def decode_hello(data: object) -> Hello:
    value = _decode_map(data, "hello", _HELLO_KEYS)
    if type(value["v"]) is not int or value["v"] != PROTOCOL_VERSION:
        raise PeerProtocolError(f"unsupported protocol version {value['v']!r}")
    return Hello(chain_id=value["chain_id"], node_id=value["node_id"], nonce=value["nonce"])


def decode_auth(data: object) -> Auth:
    return Auth(signature=_decode_map(data, "auth", _AUTH_KEYS)["sig"])


def encode_batch(frames: list[bytes]) -> bytes:
    """One websocket message carrying `frames` in order (caller bounds them)."""
    assert frames, "an empty batch is a PING"
    return bytes([KIND_BATCH]) + cbor2.dumps(frames)


def decode_message(data: object, *, frame_bytes_max: int,
                   batch_frames_max: int) -> list[bytes] | None:
    """Frames carried by one post-handshake message: [] for a PING, None
    for a GOODBYE."""
    if type(data) is not bytes or not data:
        raise PeerProtocolError("expected a non-empty binary message")
    if data[0] in (KIND_PING, KIND_GOODBYE):
        if len(data) != 1:
            raise PeerProtocolError("PING and GOODBYE carry no body")
        return [] if data[0] == KIND_PING else None
    if data[0] != KIND_BATCH:
        raise PeerProtocolError(f"unknown message kind {data[0]:#04x}")
    frames = _loads_exact(memoryview(data)[1:], canonical=False)
    if type(frames) is not list or not 0 < len(frames) <= batch_frames_max:
        raise PeerProtocolError(f"batch must be an array of 1..{batch_frames_max} frames")
    total = 0
    for frame in frames:
        if type(frame) is not bytes:
            raise PeerProtocolError("batch items must be byte strings")
        total += len(frame)
    if total > frame_bytes_max:
        raise PeerProtocolError(f"batch carries {total} bytes, limit {frame_bytes_max}")
    return frames
