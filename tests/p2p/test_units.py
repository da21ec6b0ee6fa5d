"""The pure parts of p2p, one rule per test: codec, handshake, queue, backoff."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import cbor2
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import raw_public_key
from p2p.backoff import Backoff
from p2p.handshake import Handshaker, HandshakeRejected, tls_server_end_point
from p2p.peer_queue import PeerQueue
from p2p.peer_state import keep_new_link
from p2p.wire import (
    PING,
    Auth,
    Hello,
    PeerProtocolError,
    decode_auth,
    decode_hello,
    decode_message,
    encode_auth,
    encode_batch,
    encode_hello,
    envelope_bytes_max,
)

LIMITS = {"frame_bytes_max": 1000, "batch_frames_max": 8}


# -- wire ---------------------------------------------------------------------

@given(st.lists(st.binary(max_size=100), min_size=1, max_size=8))
def test_batch_round_trips(frames: list[bytes]) -> None:
    encoded = encode_batch(frames)
    assert decode_message(encoded, **LIMITS) == frames
    assert len(encoded) <= envelope_bytes_max(**LIMITS)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decoders_raise_only_peer_protocol_error(data: bytes) -> None:
    for decode in (lambda d: decode_message(d, **LIMITS), decode_hello, decode_auth):
        with contextlib.suppress(PeerProtocolError):
            decode(data)


def test_ping_is_an_empty_delivery() -> None:
    assert decode_message(PING, **LIMITS) == []


def test_batch_limits_are_enforced() -> None:
    with pytest.raises(PeerProtocolError, match=r"1\.\.8"):
        decode_message(b"\x00" + cbor2.dumps([b"x"] * 9), **LIMITS)
    with pytest.raises(PeerProtocolError, match="1001 bytes"):
        decode_message(b"\x00" + cbor2.dumps([b"x" * 600, b"y" * 401]), **LIMITS)


def test_hello_rejects_duplicate_keys_and_non_canonical_forms() -> None:
    hello = Hello(chain_id="c", node_id="a", nonce=b"n" * 32)
    good = encode_hello(hello)
    assert decode_hello(good) == hello
    # Same map with the "t" key repeated: cbor2 would keep the last one.
    dup = bytearray(good)
    dup[0] += 1
    dup += cbor2.dumps("t") + cbor2.dumps("hello")
    with pytest.raises(PeerProtocolError):
        decode_hello(bytes(dup))
    with pytest.raises(PeerProtocolError):
        decode_hello(good + b"\x00")
    as_bool = cbor2.dumps({"t": "hello", "v": True, "chain_id": "c", "node_id": "a",
                           "nonce": b"n" * 32}, canonical=True)
    with pytest.raises(PeerProtocolError, match="version"):
        decode_hello(as_bool)


def _array_head(n: int) -> bytes:
    return cbor2.dumps([0] * n)[:-n]


def _shared_tree(width: int, depth: int) -> bytes:
    """[l0, ..., l_depth], each l_i ``width`` value-sharing references (tags
    28/29) to l_(i-1): 3 * width * depth bytes, width ** depth nodes."""
    items = [b"\xd8\x1c\x81\x00"]
    for i in range(1, depth + 1):
        items.append(b"\xd8\x1c" + _array_head(width) + (b"\xd8\x1d" + cbor2.dumps(i - 1)) * width)
    return _array_head(len(items)) + b"".join(items)


def _string_refs(size: int, count: int) -> bytes:
    """One string of ``size`` bytes and ``count`` string references (tags 256/25) to it."""
    return (b"\xd9\x01\x00" + _array_head(count + 1) + cbor2.dumps(b"x" * size)
            + b"\xd8\x19\x00" * count)


ALIASED = {"tree-8^8": _shared_tree(8, 8),
           "shared-bytes": _array_head(20_001) + b"\xd8\x1c" + cbor2.dumps(b"x" * 10_000)
           + b"\xd8\x1d\x00" * 20_000,
           "string-refs": _string_refs(10_000, 20_000),
           # 256({"t": "hello", "v": 25(0)})
           "hello-string-refs": b"\xd9\x01\x00\xa2\x61t\x65hello\x61v\xd8\x19\x00"}
DECODERS = {"batch": lambda d: decode_message(b"\x00" + d, frame_bytes_max=1 << 22,
                                              batch_frames_max=1 << 20),
            "hello": decode_hello, "auth": decode_auth}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("data", list(ALIASED.values()), ids=list(ALIASED))
def test_decoders_refuse_value_sharing_and_string_references_as_they_read(decoder, data):
    """Regression: cbor2 decodes value sharing (tags 28/29) and string
    references (256/25) into one object referenced many times, and the
    canonical check re-encoded every reference in full: 221 bytes of HELLO
    from anyone who opens a TCP connection, before the handshake, blocked
    the event loop for 9 s inside cbor2 (400 bytes: hours), and a 4 MB
    message asked for a terabyte and aborted the process."""
    with pytest.raises(PeerProtocolError, match="sharing"):
        DECODERS[decoder](data)


def test_auth_signature_must_be_64_bytes() -> None:
    assert decode_auth(encode_auth(Auth(b"s" * 64))) == Auth(b"s" * 64)
    with pytest.raises(PeerProtocolError):
        decode_auth(cbor2.dumps({"t": "auth", "sig": b"s" * 63}, canonical=True))


# -- handshake ----------------------------------------------------------------

KEYS = {i: Ed25519PrivateKey.generate() for i in ("a", "b")}
KNOWN = {i: raw_public_key(k) for i, k in KEYS.items()}


def _pair(binding_a: bytes = b"bind", binding_b: bytes = b"bind",
          b_key: Ed25519PrivateKey | None = None) -> tuple[Handshaker, Handshaker]:
    dialer = Handshaker.new(chain_id="c", node_id="a", private_key=KEYS["a"],
                            known_keys=KNOWN, expected_peer="b", tls_binding=binding_a)
    acceptor = Handshaker.new(chain_id="c", node_id="b", private_key=b_key or KEYS["b"],
                              known_keys=KNOWN, expected_peer=None, tls_binding=binding_b)
    return dialer, acceptor


def test_honest_handshake_authenticates_both_sides() -> None:
    d, a = _pair()
    d.check_hello(a.hello())
    a.check_hello(d.hello())
    assert a.check_auth(d.hello(), d.auth(a.hello())) == "a"
    assert d.check_auth(a.hello(), a.auth(d.hello())) == "b"


def test_different_tls_channels_break_the_signatures() -> None:
    # A man in the middle shows the dialer its own certificate.
    d, a = _pair(tls_server_end_point(b"mitm cert"), tls_server_end_point(b"b cert"))
    with pytest.raises(HandshakeRejected, match="bad signature"):
        a.check_auth(d.hello(), d.auth(a.hello()))
    with pytest.raises(HandshakeRejected, match="bad signature"):
        d.check_auth(a.hello(), a.auth(d.hello()))


def test_signature_is_not_valid_on_another_link_or_reflected() -> None:
    d, a = _pair()
    d2, a2 = _pair()  # fresh nonces
    with pytest.raises(HandshakeRejected):
        a2.check_auth(d2.hello(), d.auth(a.hello()))
    with pytest.raises(HandshakeRejected):  # acceptor's own signature sent back to it
        a.check_auth(d.hello(), a.auth(d.hello()))


def test_signature_cannot_be_reflected_even_when_two_ids_share_a_key() -> None:
    shared = Ed25519PrivateKey.generate()
    known = {"a": raw_public_key(shared), "b": raw_public_key(shared)}
    d = Handshaker.new(chain_id="c", node_id="a", private_key=shared, known_keys=known,
                       expected_peer="b", tls_binding=b"")
    acc = Handshaker.new(chain_id="c", node_id="b", private_key=shared, known_keys=known,
                         expected_peer=None, tls_binding=b"")
    assert acc.check_auth(d.hello(), d.auth(acc.hello())) == "a"  # sanity: honest works
    with pytest.raises(HandshakeRejected):  # the signer role is in the transcript
        acc.check_auth(d.hello(), acc.auth(d.hello()))


def test_key_not_listed_for_the_claimed_id_is_refused() -> None:
    d, impostor = _pair(b_key=Ed25519PrivateKey.generate())
    with pytest.raises(HandshakeRejected, match="bad signature for 'b'"):
        d.check_auth(impostor.hello(), impostor.auth(d.hello()))


def test_dialer_refuses_a_node_it_did_not_dial() -> None:
    d = Handshaker.new(chain_id="c", node_id="a", private_key=KEYS["a"],
                       known_keys={**KNOWN, "c": KNOWN["b"]}, expected_peer="c",
                       tls_binding=b"")
    with pytest.raises(HandshakeRejected, match="dialed 'c'"):
        d.check_hello(_pair()[1].hello())


def test_echoed_nonce_is_refused() -> None:
    d, _ = _pair()
    with pytest.raises(HandshakeRejected, match="echoed"):
        d.check_hello(Hello(chain_id="c", node_id="b", nonce=d.nonce))


# -- duplicate links ----------------------------------------------------------

def test_duplicate_rule_agrees_at_both_ends() -> None:
    # Links between a and b, dialed by a or by b; "a" is smaller.
    for new, old in (("a", "b"), ("b", "a"), ("a", "a"), ("b", "b")):
        at_a = keep_new_link("a", "b", new, old)
        at_b = keep_new_link("b", "a", new, old)
        assert at_a == at_b
    assert keep_new_link("a", "b", new_dialer="a", old_dialer="b")
    assert not keep_new_link("a", "b", new_dialer="b", old_dialer="a")
    assert keep_new_link("b", "a", new_dialer="b", old_dialer="b")  # stale old


# -- queue and backoff --------------------------------------------------------

def test_queue_batches_by_count_and_bytes() -> None:
    async def body() -> None:
        q = PeerQueue(frames_max=10)
        for k in range(6):
            assert q.offer(bytes([k]) * 40)
        assert await q.take_batch(frames_max=4, bytes_max=1000) == [bytes([k]) * 40
                                                                    for k in range(4)]
        assert await q.take_batch(frames_max=4, bytes_max=50) == [bytes([4]) * 40]
        big = b"z" * 500
        assert q.offer(big)
        assert await q.take_batch(frames_max=4, bytes_max=100) == [bytes([5]) * 40]
        assert await q.take_batch(frames_max=4, bytes_max=100) == [big]  # alone may exceed

    trio.run(body)


def test_queue_wakes_a_waiting_taker_and_drops_when_full() -> None:
    async def body() -> None:
        q = PeerQueue(frames_max=2)
        got: list[list[bytes]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _take_into(q, got))
            await trio.testing.wait_all_tasks_blocked()
            assert q.offer(b"1") and q.offer(b"2") and not q.offer(b"3")
        assert got == [[b"1", b"2"]]

    trio.run(body)


async def _take_into(q: PeerQueue, got: list[list[bytes]],
                     stop: Callable[[], bool] = lambda: False) -> None:
    got.append(await q.take_batch(frames_max=8, bytes_max=100, stop=stop))


def test_cancelled_taker_leaves_frames_in_the_queue() -> None:
    async def body() -> None:
        q = PeerQueue(frames_max=4)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: _take_into(q, []))
                await trio.testing.wait_all_tasks_blocked()
                q.offer(b"kept")
                scope.cancel()  # woken and cancelled in the same tick
        assert len(q) == 1

    trio.run(body)


def test_a_stopped_taker_returns_empty_and_pops_nothing_others_keep_waiting() -> None:
    """A link's writer leaves take_batch for its heartbeat or when it
    retires (its own stop); another writer on the same peer's queue (a link
    swap) is only woken, and still gets the frames."""
    async def body() -> None:
        q = PeerQueue(frames_max=4)
        stopped = False
        first: list[list[bytes]] = []
        second: list[list[bytes]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _take_into(q, first, lambda: stopped))
            nursery.start_soon(lambda: _take_into(q, second))
            await trio.testing.wait_all_tasks_blocked()
            stopped = True
            q.wake_takers()
            await trio.testing.wait_all_tasks_blocked()
            assert first == [[]] and second == []
            assert q.offer(b"frame")
        assert second == [[b"frame"]]
        assert q.offer(b"more")
        assert await q.take_batch(4, 100, stop=lambda: True) == []  # stop wins over frames
        assert len(q) == 1

    trio.run(body)


def test_backoff_is_jittered_exponential_within_bounds() -> None:
    b = Backoff(100, 1000, random.Random(1))
    delays = [b.next_delay_ms() for _ in range(12)]
    caps = [min(1000, 100 * 2**k) for k in range(12)]
    assert all(100 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) > 6  # jittered, not a fixed schedule
    b.reset()
    assert b.next_delay_ms() == 100
    again = Backoff(100, 1000, random.Random(1))
    assert [again.next_delay_ms() for _ in range(12)] == delays  # seeded replay
