"""``AttachedExecutions`` (the window's reattach follower) over the in-memory server, in virtual time: the poll
fallback alone reaches the end, progress only goes forward, a lost server ends every row as lost, one request
follows them all."""

from __future__ import annotations

import itertools

import trio

from guest_mode.attached import LOST, AttachedExecutions
from hcs_batch.errors import ServerLostError
from hcs_batch.testing import InMemoryBackend, open_in_memory_backend


async def start_executions(backend: InMemoryBackend, plates: list[str]) -> list[str]:
    """What a first client that went away did: compile and submit, then nothing more."""
    ids = []
    for plate in plates:
        compiled = await backend.compile(plate_path=f"/plates/{plate}", plate_name=plate, pipeline="p")
        ids.append(await backend.execute(compiled.artifact_id, output_dir="/out"))
    return ids


async def test_with_every_event_dropped_the_batched_poll_alone_follows_them_to_completed(autojump_clock):
    async with open_in_memory_backend(execute_delay=10.0, drop_events=True, gap_markers=False) as backend:
        ids = await start_executions(backend, [f"P{i}" for i in range(20)])
        await trio.sleep(1.0)
        changes: list[int] = []
        follower = AttachedExecutions(backend, on_change=lambda: changes.append(1), max_poll_interval=2.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(follower.serve)
            assert [row.execution_id for row in follower.rows()] == ids
            assert {row.state for row in follower.rows()} == {"running"}
            status_calls = backend.status_calls
            seen: list[list[int]] = []
            while not follower.settled.is_set():
                seen.append([row.percent for row in follower.rows()])
                await trio.sleep(0.5)
        assert {(row.state, row.percent) for row in follower.rows()} == {("completed", 100)}
        assert follower.live_ids() == []
        polls = backend.status_calls - status_calls
        assert 1 <= polls <= 12, polls  # one request per poll for all 20, not one per execution
        assert any(0 < p < 100 for snapshot in seen for p in snapshot), "progress shown while running"
        for before, after in itertools.pairwise(seen):
            assert all(a >= b for a, b in zip(after, before, strict=True)), "progress never goes back"
        assert changes


async def test_a_lost_server_ends_every_live_row_as_lost_and_the_follower_returns(autojump_clock):
    async with open_in_memory_backend(execute_delay=100.0) as backend:
        await start_executions(backend, ["P1", "P2"])
        await trio.sleep(1.0)
        follower = AttachedExecutions(backend)
        async with trio.open_nursery() as nursery:
            await nursery.start(follower.serve)
            backend.lose(ServerLostError("server lost: test"))
        assert {(row.state, row.error) for row in follower.rows()} == {(LOST, "server lost: test")}
        assert follower.settled.is_set()


async def test_only_live_executions_are_attached_and_cancel_is_targeted(autojump_clock):
    async with open_in_memory_backend(execute_delay=5.0) as backend:
        done = await start_executions(backend, ["DONE"])
        await trio.sleep(10.0)
        live = await start_executions(backend, ["A", "B"])
        await trio.sleep(1.0)
        follower = AttachedExecutions(backend)
        async with trio.open_nursery() as nursery:
            await nursery.start(follower.serve)
            assert [row.plate_name for row in follower.rows()] == ["A", "B"]
            assert await follower.cancel() == live
            await follower.settled.wait()
        assert {row.state for row in follower.rows()} == {"cancelled"}
        assert backend.cancel_log == [tuple(live)]
        assert backend.record(done[0]).state == "completed"
