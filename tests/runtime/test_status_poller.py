"""ExecutionStatusPoller: pushes first, batched polls with backoff, liveness deadline, unknown ids, finality."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest
import trio
import trio.testing

from hcs_batch.runtime import ExecutionStatusPoller

TERMINAL = {"done", "failed"}


class FakePeer:
    """Answers batched status requests from a dict; records every request."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.requests: list[tuple[float, tuple[str, ...]]] = []
        self.hang = False
        self.raise_error: Exception | None = None

    async def fetch(self, ids: Sequence[str]) -> Mapping[str, str]:
        self.requests.append((trio.current_time(), tuple(ids)))
        if self.hang:
            await trio.sleep_forever()
        await trio.sleep(0.01)
        if self.raise_error is not None:
            raise self.raise_error
        return {i: self.states[i] for i in ids if i in self.states}

    def gaps(self) -> list[float]:
        times = [t for t, _ in self.requests]
        return [round(b - a, 2) for a, b in itertools.pairwise(times)]


class Lost(Exception):
    pass


def make(peer: FakePeer, **kw: object) -> ExecutionStatusPoller[str]:
    options: dict[str, object] = {
        "fetch": peer.fetch,
        "is_terminal": lambda s: s in TERMINAL,
        "interval": 1.0,
        "max_interval": 8.0,
        "backoff": 2.0,
        "request_timeout": 5.0,
        "liveness_timeout": 30.0,
        "unknown_after": 3,
    }
    options.update(kw)
    return ExecutionStatusPoller(**options)  # type: ignore[arg-type]


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def test_pushed_terminal_status_completes_without_any_poll(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = FakePeer()
    poller = make(peer)
    await nursery.start(poller.serve)
    poller.track("a")
    poller.push("a", "running")
    poller.push("a", "done")
    with trio.fail_after(0.5):  # less than one poll interval
        assert await poller.wait("a") == "done"
    assert peer.requests == []
    stats = poller.statistics()
    assert stats.polls == 0 and stats.pushes == 2 and stats.delivered == 1 and stats.tracked == 0


async def test_a_push_that_overtakes_track_is_not_lost(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    poller = make(peer)
    await nursery.start(poller.serve)
    poller.push("x", "done")  # the event arrived before the reply that named "x"
    with trio.fail_after(0.5):
        assert await poller.wait("x") == "done"
    assert peer.requests == []


async def test_one_batched_fetch_asks_for_all_pending_ids(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = FakePeer()
    ids = [f"e{i}" for i in range(100)]
    peer.states = dict.fromkeys(ids, "done")
    poller = make(peer)
    await nursery.start(poller.serve)
    for i in ids:
        poller.track(i)
    results: dict[str, str] = {}

    async def waiter(i: str) -> None:
        results[i] = await poller.wait(i)

    async with trio.open_nursery() as waiters:
        for i in ids:
            waiters.start_soon(waiter, i)
    assert results == dict.fromkeys(ids, "done")
    assert len(peer.requests) == 1
    assert sorted(peer.requests[0][1]) == sorted(ids)
    assert poller.statistics().ids_polled == 100


async def test_polls_ask_only_for_ids_not_yet_terminal(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    peer.states = {"a": "running", "b": "running"}
    poller = make(peer)
    await nursery.start(poller.serve)
    poller.track("a")
    poller.track("b")
    poller.push("a", "done")
    async with trio.open_nursery() as n:
        n.start_soon(poller.wait, "a")
        peer.states["b"] = "done"
        with trio.fail_after(5):
            assert await poller.wait("b") == "done"
    assert [ids for _, ids in peer.requests] == [("b",)]


async def test_backoff_grows_while_nothing_changes_and_resets_on_change(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = FakePeer()
    peer.states = {"a": "queued"}
    poller = make(peer, max_interval=8.0)
    await nursery.start(poller.serve)
    poller.track("a")
    t0 = trio.current_time()
    # First poll after 1 s sees "queued" (a change from unknown), then nothing changes: gaps 1, 2, 4, 8, 8 (+10 ms
    # per fetch)
    await trio.sleep(1 + 1 + 2 + 4 + 8 + 8 + 0.5)
    assert [round(t - t0, 2) for t, _ in peer.requests] == [1.0, 2.01, 4.02, 8.03, 16.04, 24.05]
    assert poller.statistics().interval == 8.0
    peer.states["a"] = "running"  # a change: the period drops back to 1 s
    await trio.sleep(8 + 1 + 2 + 0.5)
    assert peer.gaps()[-3:] == [8.01, 1.01, 2.01]
    peer.states["a"] = "done"
    with trio.fail_after(10):
        assert await poller.wait("a") == "done"


async def test_poll_now_skips_the_remaining_interval(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    peer.states = {"a": "running"}
    poller = make(peer, interval=5.0, max_interval=60.0)
    await nursery.start(poller.serve)
    poller.track("a")
    await trio.testing.wait_all_tasks_blocked()
    peer.states["a"] = "done"
    t0 = trio.current_time()
    poller.poll_now()
    assert await poller.wait("a") == "done"
    assert trio.current_time() - t0 < 0.1


async def test_a_hanging_fetch_ends_in_a_liveness_failure_not_a_forever_poll(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = FakePeer()
    peer.hang = True
    poller = make(
        peer,
        request_timeout=None,  # even with no per-request bound, the liveness deadline ends it
        liveness_timeout=10.0,
        liveness_error=lambda timeout: Lost(f"server lost after {timeout:g} s"),
    )
    await nursery.start(poller.serve)
    poller.track("a")
    poller.track("b")
    t0 = trio.current_time()
    with pytest.raises(Lost, match="server lost after 10 s"):
        await poller.wait("a")
    assert trio.current_time() - t0 == pytest.approx(10.0)
    with pytest.raises(Lost):
        await poller.wait("b")
    stats = poller.statistics()
    assert stats.liveness_failures == 1 and stats.pending == 0
    # Nothing pending: the loop sleeps instead of polling on.
    n = len(peer.requests)
    await trio.sleep(100)
    assert len(peer.requests) == n == 1


async def test_failing_fetches_hit_the_liveness_deadline_with_the_cause_attached(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = FakePeer()
    peer.raise_error = OSError("connection refused")
    poller = make(peer, liveness_timeout=20.0, liveness_error=lambda t: Lost("lost"))
    await nursery.start(poller.serve)
    poller.track("a")
    t0 = trio.current_time()
    with pytest.raises(Lost) as info:
        await poller.wait("a")
    assert isinstance(info.value.__cause__, OSError)
    assert trio.current_time() - t0 == pytest.approx(20.0)
    assert poller.statistics().polls_failed == len(peer.requests) >= 3


async def test_pushes_keep_a_pending_id_alive_past_the_liveness_timeout(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    peer = FakePeer()
    peer.hang = True  # polls never answer, but events keep coming
    poller = make(peer, request_timeout=2.0, liveness_timeout=10.0)
    await nursery.start(poller.serve)
    poller.track("a")
    for _ in range(5):
        await trio.sleep(5)
        poller.push("a", "running")
    poller.push("a", "done")
    assert await poller.wait("a") == "done"
    assert poller.statistics().liveness_failures == 0


async def test_an_id_the_peer_keeps_not_knowing_fails(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    peer.states = {"known": "running"}
    poller = make(peer, unknown_after=3, unknown_error=lambda i, n: KeyError(f"{i} unknown {n}x"))
    await nursery.start(poller.serve)
    poller.track("known")
    with pytest.raises(KeyError, match="ghost unknown 3x"):
        await poller.wait("ghost")
    assert len(peer.requests) == 3
    assert poller.status("known") == "running"
    assert poller.statistics().unknown_failures == 1


async def test_a_terminal_status_is_final(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    peer.states = {"a": "running"}
    poller = make(peer)
    await nursery.start(poller.serve)
    poller.track("a")
    poller.push("a", "failed")
    poller.push("a", "done")  # ignored
    await trio.sleep(5)  # polls would report "running": ignored, and "a" is not even asked for
    poller.fail("a", Lost("too late"))  # ignored too
    assert await poller.wait("a") == "failed"
    poller.push("a", "done")  # after delivery: ignored, not buffered
    assert poller.statistics().pushes_ignored == 2
    assert peer.requests == []


async def test_fail_and_fail_all_raise_in_the_waiters(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    peer.states = {"a": "running", "b": "running", "c": "running"}
    poller = make(peer)
    await nursery.start(poller.serve)
    for i in "abc":
        poller.track(i)
    poller.push("c", "done")
    poller.fail("a", Lost("a went away"))
    poller.fail_all(Lost("all gone"))
    with pytest.raises(Lost, match="a went away"):
        await poller.wait("a")
    with pytest.raises(Lost, match="all gone"):
        await poller.wait("b")
    assert await poller.wait("c") == "done"


async def test_a_cancelled_wait_stops_polling_that_id(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    peer.states = {"a": "running"}
    poller = make(peer, max_interval=1.0)
    await nursery.start(poller.serve)
    with trio.move_on_after(3.5):
        await poller.wait("a")
    n = len(peer.requests)
    assert n == 3
    await trio.sleep(10)
    assert len(peer.requests) == n
    stats = poller.statistics()
    assert stats.tracked == 0 and stats.delivered == 0 and stats.ids_polled == 3


async def test_two_waiters_for_one_id_are_refused(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    poller = make(FakePeer())
    await nursery.start(poller.serve)
    nursery.start_soon(poller.wait, "a")
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(trio.BusyResourceError):
        await poller.wait("a")
    poller.push("a", "done")


async def test_the_loop_sleeps_while_nothing_is_tracked(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    peer = FakePeer()
    poller = make(peer)
    await nursery.start(poller.serve)
    await trio.sleep(1000)
    assert peer.requests == []
