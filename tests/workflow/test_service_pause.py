"""BatchWorkflowService.pause()/resume() on the in-memory backend, in virtual time: a paused plate shows
``paused``, is never failed by liveness however long it stays paused, and completes after resume."""

from __future__ import annotations

import trio
import trio.testing

from hcs_batch import PlateState
from hcs_batch.model import ExecutionState
from hcs_batch.testing import open_in_memory_backend
from hcs_batch.workflow.ledger import BatchSummary
from tests.workflow.test_service import RecordingHost, assert_converged, plates, service_for


async def test_pause_holds_the_batch_and_resume_completes_it(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=8.0, wells=("A01", "A02", "A03", "A04")) as backend:
        host = RecordingHost()
        # Polls every second and a liveness bound of 5 s: a pause of 1000 s must still not fail anything.
        service = service_for(backend, host, poll_interval=1.0, max_poll_interval=2.0, liveness_timeout=5.0)
        summary: list[BatchSummary] = []
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                summary.append(await service.run_plates(plates(2)))

            nursery.start_soon(run)
            await trio.sleep(3.0)  # virtual time: both plates running, about one well of each done
            assert set(host.plate_execution_states.values()) == {PlateState.RUNNING}
            paused = await service.pause()
            assert sorted(paused) == sorted(host.plate_execution_ids.values())
            assert service.paused.value is True
            await trio.sleep(10.0)  # the well running at the pause finishes (a well takes 2 s here)
            done = {r.execution_id: r.wells_done for r in backend.records()}
            assert all(0 < n < 4 for n in done.values()), done
            await trio.sleep(1000.0)
            records = backend.records()
            assert {r.execution_id: r.wells_done for r in records} == done, "no new well starts while paused"
            assert {r.state for r in records} == {ExecutionState.PAUSED.value}
            assert set(host.plate_execution_states.values()) == {PlateState.PAUSED}
            assert not summary, "a paused batch is live: nothing may fail it"
            assert sorted(await service.resume()) == sorted(paused)
            assert await service.resume() == []  # nothing paused any more
        assert summary[0].counts == {"completed": 2}
        assert service.paused.value is False
        assert_converged(host, summary[0], backend)
        assert host.transitions["P1"][-3:] == [PlateState.PAUSED, PlateState.RUNNING, PlateState.COMPLETED]


async def test_pause_when_idle_does_nothing(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend() as backend:
        service = service_for(backend)
        assert await service.pause() == [] and await service.resume() == []


async def test_cancel_plate_cancels_that_plate_only(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(compile_delay=1.0, execute_delay=10.0) as backend:
        host = RecordingHost()
        service = service_for(backend, host, max_concurrent_requests=1)
        summary: list[BatchSummary] = []
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                summary.append(await service.run_plates(plates(3)))

            nursery.start_soon(run)
            await trio.sleep(0.5)  # P1 compiling, P2 and P3 queued
            assert await service.cancel_plate("P3")  # not compiled yet: cancelled at once, never submitted
            assert host.plate_execution_states["P3"] is PlateState.CANCELLED
            await trio.sleep(5.0)  # P1 and P2 compiled and running
            assert await service.cancel_plate("P1")  # running: a targeted cancel on the server
            assert not await service.cancel_plate("nope")
    outcome = {o.plate.name: o.state for o in summary[0].plates}
    assert outcome == {"P1": PlateState.CANCELLED, "P2": PlateState.COMPLETED, "P3": PlateState.CANCELLED}
    assert [call.plate_name for call in backend.execute_log] == ["P1", "P2"]
    assert [call.plate_name for call in backend.compile_log] == ["P1", "P2"]
    assert backend.cancel_log[0] == (host.plate_execution_ids["P1"],)
    assert_converged(host, summary[0], backend)
