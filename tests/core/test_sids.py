"""Submission ids (pbftd/core/sids.py): unique for ever, one persisted reservation a minute."""

from pbftd.core import codec
from pbftd.core.actions import Persist
from pbftd.core.sids import SID_RECORD, SID_RESERVE, SidIssuer


def _reserved(actions: list[Persist]) -> int:
    (persist,) = actions
    ((name, raw),) = persist.puts
    assert name == SID_RECORD
    return codec.decode(raw, size_max=64)


def test_ids_grow_with_the_clock_and_by_one_within_a_millisecond() -> None:
    ids = SidIssuer()
    a = ids.peek(5)
    ids.take(a)
    b = ids.peek(5)
    ids.take(b)
    assert (a, b) == (5_000, 5_001)
    assert ids.peek(9) == 9_000


def test_a_reservation_is_persisted_only_when_an_id_passes_the_last_one() -> None:
    ids = SidIssuer()
    first = ids.peek(1_000)
    assert _reserved(ids.take(first)) == first + SID_RESERVE
    later = ids.peek(1_000 + SID_RESERVE // 1000)  # a minute later: still reserved
    assert ids.take(later) == []
    beyond = ids.peek(2_000 + SID_RESERVE // 1000)
    assert _reserved(ids.take(beyond)) == beyond + SID_RESERVE


def test_peek_takes_nothing() -> None:
    ids = SidIssuer()
    assert ids.peek(7) == ids.peek(7)
    assert (ids.last, ids.reserved) == (0, 0)


def test_restored_issuer_starts_above_the_reservation_whatever_the_clock() -> None:
    ids = SidIssuer()
    ids.restore(codec.encode(123_456_789), 64)
    first = ids.peek(0)
    assert first == 123_456_790
    # Above the old reservation, so a new one is made durable before it is used.
    assert _reserved(ids.take(first)) == first + SID_RESERVE
