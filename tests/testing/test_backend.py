"""InMemoryBackend, the scripted server policy tests run against: it must behave like the real one where it counts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from hcs_batch.client import ConnectionLost, EventGap, ExecutionBackend, StreamItem
from hcs_batch.errors import ArtifactNotFoundError, PipelineError, PlateError, ServerLostError
from hcs_batch.model import ExecutionState
from hcs_batch.protocol import HeartbeatEvent, ProgressEvent, StateEvent
from hcs_batch.runtime import BatchSubmitWaitEngine, ExecutionStatusPoller
from hcs_batch.testing import InMemoryBackend, open_in_memory_backend


async def compile_plate(backend: InMemoryBackend, name: str, pipeline: str = "steps") -> str:
    reply = await backend.compile(plate_path=f"/plates/{name}", plate_name=name, pipeline=pipeline)
    return reply.artifact_id


def drain(receive: trio.MemoryReceiveChannel[StreamItem]) -> list[StreamItem]:
    items: list[StreamItem] = []
    while True:
        try:
            items.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def states(items: list[StreamItem], execution_id: str) -> list[str]:
    return [i.state for i in items if isinstance(i, StateEvent) and i.execution_id == execution_id]


async def test_it_is_an_execution_backend() -> None:
    assert isinstance(InMemoryBackend(), ExecutionBackend)


async def test_compile_takes_its_delay_and_gives_a_stable_artifact_id(autojump_clock: trio.abc.Clock) -> None:
    backend = InMemoryBackend(compile_delay=2.0, wells=("A01", "B01", "C01"))
    t0 = trio.current_time()
    reply = await backend.compile(plate_path="/p/P1", plate_name="P1", pipeline="x")
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert reply.plate_name == "P1" and reply.wells == ["A01", "B01", "C01"]
    assert await compile_plate(backend, "P1", "x") == reply.artifact_id  # same input, same artifact
    assert await compile_plate(backend, "P1", "y") != reply.artifact_id
    assert await compile_plate(backend, "P2", "x") != reply.artifact_id
    assert backend.compile_calls == 4
    assert [c.outcome for c in backend.compile_log] == ["ok"] * 4


async def test_scripted_compile_failures_raise_fresh_errors(autojump_clock: trio.abc.Clock) -> None:
    backend = InMemoryBackend(
        compile_delay=1.0,
        compile_failures={"bad": PlateError("bad: no images"), "ugly": PipelineError("unknown step 'x'")},
    )
    with pytest.raises(PlateError, match="no images"):
        await compile_plate(backend, "bad")
    with pytest.raises(PipelineError, match="unknown step"):
        await compile_plate(backend, "ugly")
    with pytest.raises(PlateError) as second:
        await compile_plate(backend, "bad")
    assert second.value is not backend.compile_failures["bad"]
    assert [c.outcome for c in backend.compile_log] == ["failed"] * 3
    assert all(c.ended_at - c.started_at == pytest.approx(1.0) for c in backend.compile_log)


async def test_concurrent_compiles_are_counted(autojump_clock: trio.abc.Clock) -> None:
    backend = InMemoryBackend(compile_delay=1.0)
    async with trio.open_nursery() as nursery:
        for i in range(7):
            nursery.start_soon(compile_plate, backend, f"P{i}")
    assert backend.max_concurrent_compiles == 7
    assert backend.last_compile_end is not None


async def test_an_execution_runs_queued_running_completed_with_numbered_events(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=4.0, wells=("A01", "A02"), steps=("s1", "s2")) as backend:
        artifact = await compile_plate(backend, "P1")
        async with backend.open_event_stream() as events:
            t0 = trio.current_time()
            execution_id = await backend.execute(artifact, output_dir="/out")
            assert trio.current_time() == t0  # answered at once
            (record,), unknown = await backend.status([execution_id])
            assert record.state == "queued" and unknown == []
            await trio.sleep(4.5)
            items = drain(events)
        (record,), _ = await backend.status([execution_id])
    assert states(items, execution_id) == ["queued", "running", "completed"]
    progress = [i for i in items if isinstance(i, ProgressEvent)]
    assert [(p.well, p.step, p.done, p.total) for p in progress] == [
        ("A01", "s1", 1, 4),
        ("A01", "s2", 2, 4),
        ("A02", "s1", 3, 4),
        ("A02", "s2", 4, 4),
    ]
    seqs = [i.seq for i in items if not isinstance(i, (EventGap, ConnectionLost))]
    assert seqs == list(range(1, len(seqs) + 1))
    assert all(i.instance == backend.instance for i in items if not isinstance(i, (EventGap, ConnectionLost)))
    assert any(isinstance(i, HeartbeatEvent) for i in items)
    assert record.state == "completed" and record.wells_done == 2 and record.wells_total == 2
    assert record.finished_at - record.submitted_at == pytest.approx(4.0)
    assert record.output == "/out/P1"


async def test_scripted_execution_failure_and_rejection(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(
        execute_delay=2.0,
        execute_failures={"P2": "segmentation crashed"},
        reject_execute={"P3": ArtifactNotFoundError("artifact expired")},
    ) as backend:
        a1, a2, a3 = [await compile_plate(backend, n) for n in ("P1", "P2", "P3")]
        async with backend.open_event_stream() as events:
            e1 = await backend.execute(a1, output_dir="/o")
            e2 = await backend.execute(a2, output_dir="/o")
            with pytest.raises(ArtifactNotFoundError, match="expired"):
                await backend.execute(a3, output_dir="/o")
            with pytest.raises(ArtifactNotFoundError, match="compile again"):
                await backend.execute("art-nope", output_dir="/o")
            await trio.sleep(3)
            items = drain(events)
    assert states(items, e1)[-1] == "completed"
    assert states(items, e2)[-1] == "failed"
    failed = [i for i in items if isinstance(i, StateEvent) and i.state == "failed"]
    assert failed[0].error == "segmentation crashed"
    assert backend.record(e2).error == "segmentation crashed"
    assert backend.execute_calls == 4
    assert [(c.plate_name, c.execution_id is not None) for c in backend.execute_log] == [
        ("P1", True),
        ("P2", True),
        ("P3", False),
        ("", False),
    ]


async def test_cancel_is_targeted(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=10.0) as backend:
        ids = [await backend.execute(await compile_plate(backend, f"P{i}"), output_dir="/o") for i in range(3)]
        await trio.sleep(1)
        reply = await backend.cancel([ids[1], "exec-unknown"])
        assert reply.cancelled == [ids[1]] and reply.unknown == ["exec-unknown"]
        assert backend.record(ids[1]).state == "cancelled"  # at once, not after the delay
        assert sorted(backend.live_executions()) == sorted([ids[0], ids[2]])
        await trio.sleep(10)
        again = await backend.cancel([ids[0], ids[1]])
        assert again.cancelled == [] and again.already_terminal == [ids[0], ids[1]]
        records, _ = await backend.status(ids)
    assert [r.state for r in records] == ["completed", "cancelled", "completed"]
    assert backend.live_executions() == []
    assert backend.cancel_calls == 2 and backend.cancel_log[0] == (ids[1], "exec-unknown")


async def test_dropped_events_leave_a_gap_and_only_polls_see_the_end(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=2.0, drop_events=True, heartbeat_interval=1.0) as backend:
        artifact = await compile_plate(backend, "P1")
        async with backend.open_event_stream() as events:
            execution_id = await backend.execute(artifact, output_dir="/o")
            await trio.sleep(3.5)
            items = drain(events)
        (record,), _ = await backend.status([execution_id])
    assert record.state == "completed"
    assert not any(isinstance(i, (StateEvent, ProgressEvent)) for i in items)
    gaps = [i for i in items if isinstance(i, EventGap)]
    assert gaps, "a subscriber must be able to notice the missed events"
    first_gap = items.index(gaps[0])
    after = items[first_gap + 1]
    assert isinstance(after, HeartbeatEvent)
    assert after.seq == gaps[0].received


async def test_a_drop_predicate_drops_only_what_it_selects(autojump_clock: trio.abc.Clock) -> None:
    def terminal_only(event: object) -> bool:
        return isinstance(event, StateEvent) and event.state == "completed"

    async with open_in_memory_backend(execute_delay=1.0, drop_events=terminal_only, gap_markers=False) as backend:
        async with backend.open_event_stream() as events:
            execution_id = await backend.execute(await compile_plate(backend, "P1"), output_dir="/o")
            await trio.sleep(1.5)
            items = drain(events)
    assert states(items, execution_id) == ["queued", "running"]
    assert not any(isinstance(i, EventGap) for i in items)


async def test_workers_bound_the_running_executions(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=1.0, workers=2) as backend:
        ids = [await backend.execute(await compile_plate(backend, f"P{i}"), output_dir="/o") for i in range(6)]
        info = await backend.server_info()
        assert (info.queued, info.running) == (4, 2)
        await trio.sleep(3.5)
        info = await backend.server_info(records=True)
    assert backend.max_running == 2
    assert (info.queued, info.running) == (0, 0)
    assert sorted(r.execution_id for r in info.executions) == sorted(ids)


async def test_lose_fails_pending_and_later_requests_and_ends_streams(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(compile_delay=5.0, execute_delay=10.0) as backend:
        artifact = await compile_plate(backend, "P0")
        execution_id = await backend.execute(artifact, output_dir="/o")
        error = ServerLostError("server lost: no heartbeat for 5 s")
        pending: list[BaseException] = []

        async def pending_compile() -> None:
            try:
                await compile_plate(backend, "P1")
            except ServerLostError as exc:
                pending.append(exc)

        async with backend.open_event_stream() as events, trio.open_nursery() as nursery:
            nursery.start_soon(pending_compile)
            await trio.sleep(1)
            backend.lose(error)
            items = [item async for item in events]  # the stream ends by itself
        assert pending == [error]
        assert isinstance(items[-1], ConnectionLost) and items[-1].error is error
        assert backend.lost is error
        with pytest.raises(ServerLostError):
            await backend.status([execution_id])
        async with backend.open_event_stream() as late:
            assert [item async for item in late] == [ConnectionLost(error=error)]
        before = backend.record(execution_id)
        await trio.sleep(20)
        assert backend.record(execution_id) == before  # stopped where it was, not completed
        assert before.state == "running"


async def test_a_frozen_server_answers_nothing_until_lost(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=10.0) as backend:
        execution_id = await backend.execute(await compile_plate(backend, "P0"), output_dir="/o")
        async with backend.open_event_stream() as events:
            backend.freeze()
            with trio.move_on_after(60) as scope:
                await backend.status([execution_id])
            assert scope.cancelled_caught
            assert drain(events) == []  # not even heartbeats
        async with trio.open_nursery() as nursery:
            failures: list[BaseException] = []

            async def call() -> None:
                with pytest.raises(ServerLostError) as info:
                    await backend.server_info()
                failures.append(info.value)

            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            backend.lose(ServerLostError("frozen"))
        assert len(failures) == 1


async def test_heartbeats_flow_while_served(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(heartbeat_interval=0.5) as backend, backend.open_event_stream() as events:
        await trio.sleep(2.1)
        items = drain(events)
    assert [type(i) for i in items] == [HeartbeatEvent] * 4


async def test_no_execute_before_compiles_end_can_be_asserted(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(compile_delay=1.0) as backend:
        artifacts = [await compile_plate(backend, f"P{i}") for i in range(2)]
        await backend.execute(artifacts[0], output_dir="/o")
        assert backend.last_compile_end is not None and backend.first_execute_start is not None
        assert backend.last_compile_end <= backend.first_execute_start
        await compile_plate(backend, "late")
        assert backend.last_compile_end > backend.first_execute_start  # the check a broken policy would fail


async def test_execute_without_serving_says_what_to_do() -> None:
    backend = InMemoryBackend()
    artifact = await compile_plate(backend, "P1")
    with pytest.raises(RuntimeError, match="open_in_memory_backend"):
        await backend.execute(artifact, output_dir="/o")


# --------------------------------------------------------------------------- with the runtime primitives
# How the service is expected to wire them: events are pushed, gaps trigger a poll, a lost connection fails all.


async def follow(backend: InMemoryBackend, poller: ExecutionStatusPoller[str]) -> None:
    async with backend.open_event_stream() as events:
        async for item in events:
            if isinstance(item, StateEvent):
                poller.push(item.execution_id, item.state)
            elif isinstance(item, EventGap):
                poller.poll_now()
            elif isinstance(item, ConnectionLost):
                poller.fail_all(item.error)


def status_poller(backend: InMemoryBackend, interval: float = 1.0) -> ExecutionStatusPoller[str]:
    async def fetch(ids: Sequence[str]) -> dict[str, str]:
        records, _unknown = await backend.status(ids)
        return {r.execution_id: r.state for r in records}

    return ExecutionStatusPoller(
        fetch=fetch, is_terminal=lambda s: ExecutionState(s).is_terminal, interval=interval, max_interval=30.0
    )


async def run_three(backend: InMemoryBackend, poller: ExecutionStatusPoller[str]) -> dict[str, str]:
    artifacts = [await compile_plate(backend, f"P{i}") for i in range(3)]
    engine: BatchSubmitWaitEngine[str, str, str] = BatchSubmitWaitEngine(
        submit=lambda artifact: backend.execute(artifact, output_dir="/o"),
        wait=lambda artifact, execution_id: poller.wait(execution_id),
        on_submitted=lambda artifact, execution_id: poller.track(execution_id),
    )
    outcome = await engine.run(artifacts)
    return {o.job: o.result if o.succeeded else f"error:{o.error}" for o in outcome.jobs}  # type: ignore[misc]


async def test_with_events_the_poller_never_polls(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=5.0, execute_failures={"P1": "boom"}) as backend:
        poller = status_poller(backend, interval=10.0)  # polls are the fallback: the first one comes late
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.serve)
            nursery.start_soon(follow, backend, poller)
            t0 = trio.current_time()
            results = await run_three(backend, poller)
            assert trio.current_time() - t0 == pytest.approx(5.0)  # the terminal events ended the waits
            nursery.cancel_scope.cancel()
    assert sorted(results.values()) == ["completed", "completed", "failed"]
    assert backend.status_calls == 0


async def test_with_dropped_events_a_gap_triggers_the_poll(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=5.0, drop_events=True) as backend:
        poller = status_poller(backend)
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.serve)
            nursery.start_soon(follow, backend, poller)
            t0 = trio.current_time()
            results = await run_three(backend, poller)
            elapsed = trio.current_time() - t0
            nursery.cancel_scope.cancel()
    assert list(results.values()) == ["completed"] * 3
    assert backend.status_calls >= 1
    assert elapsed <= 5.0 + 1.0  # seen by the heartbeat after the end, not by a backed-off poll


async def test_a_lost_server_fails_every_wait_instead_of_hanging(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=50.0) as backend:
        poller = status_poller(backend)
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.serve)
            nursery.start_soon(follow, backend, poller)
            with trio.fail_after(20):
                async with trio.open_nursery() as batch:
                    results: dict[str, str] = {}

                    async def run() -> None:
                        results.update(await run_three(backend, poller))

                    batch.start_soon(run)
                    await trio.sleep(10)
                    backend.lose(ServerLostError("server lost"))
            nursery.cancel_scope.cancel()
    assert list(results.values()) == ["error:server lost"] * 3
