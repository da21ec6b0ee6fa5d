"""The periodic malloc_trim (pbftd/memtrim.py): it finds glibc's function
here, calls it off the event loop at its interval, and does nothing where
the C library has none."""

from __future__ import annotations

import threading

import trio
import trio.testing

from pbftd import memtrim


def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = memtrim.find_malloc_trim()
    assert trim is not None  # this machine runs glibc, like the courts' servers
    assert trim(0) in (0, 1)  # 1: memory was released, 0: none could be


def test_it_trims_every_interval_on_a_worker_thread() -> None:
    calls: list[tuple[int, bool]] = []
    main = threading.get_ident()

    def fake_trim(pad: int) -> int:
        calls.append((pad, threading.get_ident() != main))
        return 1

    elapsed: list[float] = []

    async def main_task() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(memtrim.trim_forever, 0.1, fake_trim)
            while len(calls) < 3:
                await trio.sleep(0.01)
            elapsed.append(trio.current_time())
            nursery.cancel_scope.cancel()

    trio.run(main_task, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(calls) == 3
    assert elapsed[0] >= 0.3  # three calls, 0.1 s of (virtual) time apart
    assert all(pad == 0 and off_loop for pad, off_loop in calls)


def test_without_malloc_trim_it_returns_at_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memtrim, "find_malloc_trim", lambda: None)

    async def main_task() -> None:
        with trio.fail_after(1):
            await memtrim.trim_forever(0.01)

    trio.run(main_task)
