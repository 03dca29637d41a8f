"""ThreadLane: blocking calls off the event loop, many per thread hop, in order, errors to their caller."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from hcs_batch.runtime.thread_lane import ThreadLane


async def test_calls_run_off_the_trio_thread_in_batches_and_in_order() -> None:
    lane = ThreadLane(max_batch=64)
    trio_thread = threading.get_ident()
    ran: list[tuple[int, int]] = []

    def work(i: int) -> int:
        ran.append((i, threading.get_ident()))
        return i * i

    results: dict[int, int] = {}
    queued: list[int] = []

    async def call(i: int) -> None:
        queued.append(i)  # run() queues before its first await: this is the queue order
        results[i] = await lane.run(work, i)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(lane.serve)
            async with trio.open_nursery() as callers:
                for i in range(200):
                    callers.start_soon(call, i)
            nursery.cancel_scope.cancel()
    assert results == {i: i * i for i in range(200)}
    assert [i for i, _ in ran] == queued  # queued order is run order
    assert all(thread != trio_thread for _, thread in ran)
    assert lane.calls == 200 and lane.batches <= 200 // 64 + 2  # many calls per hop, not one each


async def test_an_exception_reaches_its_caller_only() -> None:
    lane = ThreadLane()

    def fail() -> None:
        raise OSError("disk full")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(lane.serve)
            with pytest.raises(OSError, match="disk full"):
                await lane.run(fail)
            assert await lane.run(len, "abc") == 3
            nursery.cancel_scope.cancel()


async def test_a_stopped_lane_refuses_and_fails_what_is_still_queued() -> None:
    lane = ThreadLane()
    release = threading.Event()
    outcomes: list[BaseException | str] = []

    async def call(fn: object, *args: object) -> None:
        try:
            outcomes.append(await lane.run(fn, *args))  # type: ignore[arg-type]
        except trio.ClosedResourceError as exc:
            outcomes.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as nursery:
                await nursery.start(lane.serve)
                outer.start_soon(call, release.wait)  # holds the thread
                await trio.testing.wait_all_tasks_blocked()
                outer.start_soon(call, str, "queued")
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        release.set()
    assert len(outcomes) == 2 and all(isinstance(o, trio.ClosedResourceError) for o in outcomes)
    with pytest.raises(trio.ClosedResourceError):
        await lane.run(str, "late")
