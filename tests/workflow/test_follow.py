"""The one execution follower over the in-memory server, in virtual time: events first and polls only as the
fallback, an event that overtakes ``follow`` is kept, a lost or silent server ends every live row lost, and a
row that has ended never changes again."""

from __future__ import annotations

import itertools

import pytest
import trio

from hcs_batch.errors import ServerLostError
from hcs_batch.model import ExecutionState
from hcs_batch.protocol import ProgressEvent
from hcs_batch.testing import InMemoryBackend, open_in_memory_backend
from hcs_batch.workflow.follow import Ending, ExecutionFollower, follow_to_end


async def submit(backend: InMemoryBackend, plates: list[str]) -> list[str]:
    ids = []
    for plate in plates:
        compiled = await backend.compile(plate_path=f"/plates/{plate}", plate_name=plate, pipeline="p")
        ids.append(await backend.execute(compiled.artifact_id, output_dir="/out"))
    return ids


async def test_events_alone_follow_executions_to_their_ends_without_a_poll(autojump_clock):
    async with open_in_memory_backend(execute_delay=10.0, execute_failures={"B": "boom"}) as backend:
        progress: list[ProgressEvent] = []
        async with backend.open_event_stream() as events:
            follower = ExecutionFollower(
                backend, on_progress=progress.append, poll_interval=1000.0, max_poll_interval=1000.0
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.serve, events)
                ids = await submit(backend, ["A", "B"])
                for execution_id, plate in zip(ids, ["A", "B"], strict=True):
                    follower.follow(execution_id, plate)
                assert follower.live_ids() == ids and not follower.settled
                ended = [await follower.wait(execution_id) for execution_id in ids]
                nursery.cancel_scope.cancel()
    assert [(row.plate_name, row.state, row.error) for row in ended] == [
        ("A", ExecutionState.COMPLETED, ""),
        ("B", ExecutionState.FAILED, "boom"),
    ]
    assert ended[0].percent == 100
    assert follower.settled
    assert backend.status_calls == 0
    assert progress and {event.execution_id for event in progress} <= set(ids)


async def test_with_every_event_dropped_one_batched_poll_follows_them_all(autojump_clock):
    async with open_in_memory_backend(execute_delay=10.0, drop_events=True, gap_markers=False) as backend:
        ids = await submit(backend, [f"P{i}" for i in range(20)])
        seen: list[list[int]] = []
        async with backend.open_event_stream() as events:
            follower = ExecutionFollower(backend, max_poll_interval=2.0)
            for execution_id in ids:
                follower.follow(execution_id)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follower.serve, events)
                while not follower.settled:
                    seen.append([row.percent for row in follower.rows()])
                    await trio.sleep(0.5)
                nursery.cancel_scope.cancel()
    assert {(row.state, row.percent) for row in follower.rows()} == {(ExecutionState.COMPLETED, 100)}
    assert 1 <= backend.status_calls <= 12, backend.status_calls  # one request per poll for all 20
    assert any(0 < p < 100 for snapshot in seen for p in snapshot), "progress shown while running"
    for before, after in itertools.pairwise(seen):
        assert all(a >= b for a, b in zip(after, before, strict=True)), "progress never goes back"


async def test_a_state_event_that_overtakes_follow_is_applied_when_it_is_followed(autojump_clock):
    async with open_in_memory_backend(execute_delay=1.0) as backend:
        async with backend.open_event_stream() as events:
            follower = ExecutionFollower(backend, poll_interval=1000.0, max_poll_interval=1000.0)
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.serve, events)
                [execution_id] = await submit(backend, ["A"])
                await trio.sleep(5.0)  # the execution ended; its events came before anyone followed it
                follower.follow(execution_id, "A")
                row = await follower.wait(execution_id)
                nursery.cancel_scope.cancel()
    assert row.state is ExecutionState.COMPLETED
    assert backend.status_calls == 0


async def test_a_lost_connection_ends_every_live_row_lost_and_wait_raises_its_error(autojump_clock):
    async with open_in_memory_backend(execute_delay=100.0) as backend:
        ids = await submit(backend, ["A", "B"])
        async with backend.open_event_stream() as events:
            follower = ExecutionFollower(backend)
            for execution_id in ids:
                follower.follow(execution_id)
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.serve, events)
                backend.lose(ServerLostError("server lost: test"))
        # serve returned by itself: the stream ended after ConnectionLost
        assert {(row.state, row.error) for row in follower.rows()} == {(Ending.LOST, "server lost: test")}
        with pytest.raises(ServerLostError, match="server lost: test"):
            await follower.wait(ids[0])


async def test_a_silent_server_hits_the_liveness_deadline(autojump_clock):
    async with open_in_memory_backend(execute_delay=100.0) as backend:
        ids = await submit(backend, ["A"])
        async with backend.open_event_stream() as events:
            follower = ExecutionFollower(
                backend,
                liveness_timeout=30.0,
                request_timeout=5.0,
                liveness_error=lambda timeout: ServerLostError(f"silent for {timeout:g} s"),
            )
            follower.follow(ids[0])
            backend.freeze()
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.serve, events)
                started = trio.current_time()
                with pytest.raises(ServerLostError, match="silent for 30 s"):
                    await follower.wait(ids[0])
                assert 30.0 <= trio.current_time() - started <= 40.0
                nursery.cancel_scope.cancel()
    assert follower.rows()[0].state is Ending.LOST


async def test_an_ended_row_never_changes_again(autojump_clock):
    async with open_in_memory_backend(execute_delay=100.0) as backend:
        [execution_id] = await submit(backend, ["A"])
        follower = ExecutionFollower(backend)
        follower.follow(execution_id)
        follower._apply(execution_id, state=ExecutionState.CANCELLED, error="stopped")
        follower._apply(execution_id, state=ExecutionState.COMPLETED, percent=100)
        follower._apply(execution_id, state=Ending.LOST, error="late")
    [row] = follower.rows()
    assert (row.state, row.error, row.percent) == (ExecutionState.CANCELLED, "stopped", 0)
    assert follower.settled


async def test_follow_to_end_returns_once_every_execution_ended(autojump_clock):
    async with open_in_memory_backend(execute_delay=100.0) as backend:
        ids = await submit(backend, ["A", "B", "C"])
        async with backend.open_event_stream() as events:
            await backend.cancel(ids[:2])
            with trio.fail_after(10.0):
                rows = await follow_to_end(backend, ids[:2], events=events)
        assert [row.state for row in rows] == [ExecutionState.CANCELLED] * 2
        assert backend.record(ids[2]).state is ExecutionState.RUNNING


async def test_take_changed_hands_out_each_changed_row_once_and_settles_by_count(autojump_clock):
    # 2,000 executions ending in one poll: the host's on_change looks only at the changed rows, so a batch of
    # 10,000 plates stays linear (the window's guest tick measured 3.8 s when every change rescanned every row).
    async with open_in_memory_backend(execute_delay=10.0, drop_events=True, gap_markers=False) as backend:
        ids = await submit(backend, [f"P{i}" for i in range(2000)])
        batches: list[list[str]] = []
        async with backend.open_event_stream() as events:
            follower = ExecutionFollower(backend, poll_interval=5.0, max_poll_interval=5.0)
            for execution_id in ids:
                follower.follow(execution_id)
            assert [row.execution_id for row in follower.take_changed()] == ids
            assert follower.take_changed() == []
            async with trio.open_nursery() as nursery:
                await nursery.start(follower.serve, events)
                await follower.wait_settled()
                batches.append([row.execution_id for row in follower.take_changed()])
                nursery.cancel_scope.cancel()
    assert sorted(batches[0]) == sorted(ids)
    assert all(row.state is ExecutionState.COMPLETED for row in follower.rows())
    assert follower.settled and follower.live_ids() == []
