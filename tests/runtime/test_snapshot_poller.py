"""IntervalSnapshotPoller: only real changes are reported; errors and recovery are changes; timeouts bound it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from hcs_batch.runtime import IntervalSnapshotPoller, Snapshot


class Source:
    def __init__(self, values: list[object]) -> None:
        self.values = values
        self.calls: list[float] = []

    async def fetch(self) -> object:
        self.calls.append(trio.current_time())
        value = self.values[min(len(self.calls) - 1, len(self.values) - 1)]
        if value == "hang":
            await trio.sleep_forever()
        if isinstance(value, Exception):
            raise value
        return value


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


def describe(s: Snapshot[object]) -> object:
    return s.value if s.ok else f"error:{s.error}"


async def test_only_real_changes_are_reported(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    source = Source([1, 1, 1, 2, 2, 3, 3, 3])
    seen: list[object] = []
    poller = IntervalSnapshotPoller(fetch=source.fetch, interval=1.0, on_change=lambda s: seen.append(describe(s)))
    await nursery.start(poller.serve)
    await trio.sleep(7.5)
    assert len(source.calls) == 8
    assert seen == [1, 2, 3]
    assert poller.latest.value.value == 3
    assert poller.changes == 3 and poller.fetches == 8


async def test_a_failure_is_a_change_and_so_is_the_recovery(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    source = Source(["up", OSError("down"), OSError("down"), OSError("down"), "up", "up"])
    seen: list[object] = []
    poller = IntervalSnapshotPoller(fetch=source.fetch, interval=1.0, on_change=lambda s: seen.append(describe(s)))
    await nursery.start(poller.serve)
    await trio.sleep(5.5)
    assert seen == ["up", "error:down", "up"]


async def test_a_hanging_fetch_becomes_a_timeout_snapshot(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    source = Source(["ok", "hang", "ok"])
    seen: list[Snapshot[object]] = []
    poller = IntervalSnapshotPoller(fetch=source.fetch, interval=1.0, timeout=0.5, on_change=seen.append)
    await nursery.start(poller.serve)
    t0 = trio.current_time()
    await poller.latest.wait_value(lambda s: s is not None and not s.ok)
    assert isinstance(seen[-1].error, TimeoutError)
    assert trio.current_time() - t0 == pytest.approx(1.5)
    await poller.latest.wait_value(lambda s: s is not None and s.ok)
    assert [describe(s) for s in seen] == ["ok", "error:snapshot fetch took longer than 0.5 s", "ok"]


async def test_key_decides_what_counts_as_a_change(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    source = Source([{"running": 1, "uptime": 1}, {"running": 1, "uptime": 2}, {"running": 2, "uptime": 3}])
    seen: list[object] = []
    poller: IntervalSnapshotPoller[dict[str, int]] = IntervalSnapshotPoller(
        fetch=source.fetch,  # type: ignore[arg-type]
        interval=1.0,
        key=lambda v: v["running"],
        on_change=lambda s: seen.append(s.value["running"] if s.value else None),
    )
    await nursery.start(poller.serve)
    await trio.sleep(2.5)
    assert seen == [1, 2]


async def test_refresh_fetches_at_once(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    source = Source([1, 2])
    poller = IntervalSnapshotPoller(fetch=source.fetch, interval=60.0)
    await nursery.start(poller.serve)
    await poller.latest.wait_value(lambda s: s is not None)
    t0 = trio.current_time()
    poller.refresh()
    await poller.latest.wait_value(lambda s: s is not None and s.value == 2)
    assert trio.current_time() - t0 < 0.1


async def test_a_raising_callback_does_not_stop_polling(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source([1, 2, 3])

    def boom(s: Snapshot[object]) -> None:
        raise RuntimeError("bug in callback")

    poller = IntervalSnapshotPoller(fetch=source.fetch, interval=1.0, on_change=boom)
    await nursery.start(poller.serve)
    await trio.sleep(2.5)
    assert poller.latest.value.value == 3
    assert sum("boom raised; polling goes on" in r.getMessage() for r in caplog.records) == 3


async def test_a_slow_fetch_never_overlaps_the_next(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    in_flight = 0
    most = 0
    calls: list[float] = []

    async def slow() -> int:
        nonlocal in_flight, most
        calls.append(trio.current_time())
        in_flight += 1
        most = max(most, in_flight)
        await trio.sleep(2.5)
        in_flight -= 1
        return len(calls)

    poller = IntervalSnapshotPoller(fetch=slow, interval=1.0)
    await nursery.start(poller.serve)
    await trio.sleep(10)
    assert most == 1
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps and all(g == pytest.approx(2.5) for g in gaps)
