"""``map_in_slices``: the same list as a comprehension, with the scheduler given turns on the way, uncancellably."""

from __future__ import annotations

import time

import trio

from hcs_batch.runtime import map_in_slices


def _slow_square(x: int) -> int:
    deadline = time.perf_counter() + 0.001  # busy work: a step that really takes time on the thread
    while time.perf_counter() < deadline:
        pass
    return x * x


async def test_other_tasks_run_between_slices_and_the_result_is_the_comprehension() -> None:
    turns: list[int] = []
    done = False

    async def other() -> None:
        while not done:
            turns.append(len(turns))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()  # the other task has had its first turn
        before = len(turns)
        result = await map_in_slices(_slow_square, range(40), slice_seconds=0.004)
        done = True
    assert result == [x * x for x in range(40)]
    # 40 ms of work in 4 ms slices: the other task ran several times meanwhile (a broken version never yields).
    assert len(turns) - before >= 5


async def test_a_cancelled_caller_still_gets_every_item_then_sees_cancelled_at_its_next_checkpoint() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        result = await map_in_slices(_slow_square, range(20), slice_seconds=0.002)
        assert result == [x * x for x in range(20)]
        await trio.lowlevel.checkpoint()
        raise AssertionError("not reached: the checkpoint raises Cancelled")  # pragma: no cover
    assert scope.cancelled_caught


async def test_a_short_list_never_yields() -> None:
    # Fast items within one slice: no scheduling point at all (a checkpoint would let a stop slip in mid-list).
    with trio.CancelScope() as scope:
        scope.cancel()
        assert await map_in_slices(str, range(100)) == [str(x) for x in range(100)]
    assert not scope.cancelled_caught
