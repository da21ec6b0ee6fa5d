"""The periodic malloc_trim (pbftd/memtrim.py): it finds glibc's function
here, calls it off the event loop at its interval, and does nothing where
the C library has none."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from pbftd import memtrim


def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = memtrim.find_malloc_trim()
    assert trim is not None  # this machine runs glibc, like the courts' servers
    assert trim(0) in (0, 1)  # 1: memory was released, 0: none could be


class _Enough(Exception):
    """Raised by the fake trim on its third call, which ends the loop."""


def test_it_trims_every_interval_on_a_worker_thread() -> None:
    calls: list[tuple[int, bool, float]] = []
    main = threading.get_ident()
    token: list[trio.lowlevel.TrioToken] = []

    def fake_trim(pad: int) -> int:
        now = trio.from_thread.run_sync(trio.current_time, trio_token=token[0])
        calls.append((pad, threading.get_ident() != main, now))
        if len(calls) == 3:
            raise _Enough
        return 1

    async def main_task() -> None:
        token.append(trio.lowlevel.current_trio_token())
        with pytest.raises(_Enough):
            await memtrim.trim_forever(0.1, fake_trim)

    trio.run(main_task, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [(pad, off_loop) for pad, off_loop, _ in calls] == [(0, True)] * 3
    assert [round(t, 6) for _, _, t in calls] == [0.1, 0.2, 0.3]  # virtual time


def test_without_malloc_trim_it_returns_at_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memtrim, "find_malloc_trim", lambda: None)

    async def main_task() -> None:
        with trio.fail_after(1):
            await memtrim.trim_forever(0.01)

    trio.run(main_task)
