"""BatchWorkflowService policy on the in-memory backend, in virtual time: every ordering rule of a batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from hcs_batch import BatchAlreadyRunningError, BatchHost, PipelineError, PlateRef, PlateState, ServerLostError
from hcs_batch.errors import RemoteError
from hcs_batch.testing import InMemoryBackend, open_in_memory_backend
from hcs_batch.workflow.service import BatchState, BatchSummary, BatchWorkflowService

PIPELINE = 'name = "p"\n[[steps]]\nfunc = "hcs_batch.steps:noop"\n'


class RecordingHost(BatchHost):
    """Records every callback, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.transitions: dict[str, list[PlateState]] = {}
        self.completed: list[tuple[str, PlateState, str]] = []
        self.all_done: list[BatchSummary] = []
        self.item_updates = 0
        self.errors: list[str] = []

    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:
        self.calls.append(("state", (plate, state)))
        self.transitions.setdefault(plate, []).append(state)

    def emit_error(self, text: str) -> None:
        self.errors.append(text)

    def on_plate_completed(self, plate: str, state: PlateState, error: str) -> None:
        self.completed.append((plate, state, error))

    def on_all_plates_completed(self, summary: Any) -> None:
        self.all_done.append(summary)

    def update_item_list(self) -> None:
        self.item_updates += 1

    def terminal_counts(self) -> dict[str, int]:
        """How many terminal states each plate was given (must be exactly 1)."""
        return {p: sum(1 for s in states if s.is_terminal) for p, states in self.transitions.items()}


def plates(n: int) -> list[PlateRef]:
    return [PlateRef(name=f"P{i}", path=Path(f"/plates/P{i}")) for i in range(1, n + 1)]


def service_for(backend: InMemoryBackend, host: BatchHost | None = None, **options: Any) -> BatchWorkflowService:
    return BatchWorkflowService(host or RecordingHost(), backend, pipeline_text=PIPELINE, output_dir="/out", **options)


def assert_converged(host: RecordingHost, summary: BatchSummary, backend: InMemoryBackend) -> None:
    assert all(n == 1 for n in host.terminal_counts().values()), host.transitions
    assert len(host.all_done) == 1
    assert all(outcome.state.is_terminal for outcome in summary.plates)
    assert backend.live_executions() == []


async def test_no_execute_before_every_compile_has_ended(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(compile_delay=3.0, execute_delay=2.0) as backend:
        host = RecordingHost()
        summary = await service_for(backend, host, max_concurrent_requests=3).run_plates(plates(10))
    assert summary.counts == {"completed": 10}
    assert backend.compile_calls == 10 and backend.execute_calls == 10
    assert backend.last_compile_end is not None and backend.first_execute_start is not None
    assert backend.last_compile_end <= backend.first_execute_start
    assert backend.max_concurrent_compiles <= 3
    assert_converged(host, summary, backend)
    assert host.transitions["P1"] == [
        PlateState.QUEUED,
        PlateState.COMPILING,
        PlateState.COMPILED,
        PlateState.RUNNING,
        PlateState.COMPLETED,
    ]


async def test_every_plate_is_queued_before_any_compile_starts(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(compile_delay=1.0) as backend:
        host = RecordingHost()
        compiles_seen_when_queued: list[int] = []
        original = host.emit_orchestrator_state

        def spy(plate: str, state: PlateState) -> None:
            if state is PlateState.QUEUED:
                compiles_seen_when_queued.append(backend.compile_calls)
            original(plate, state)

        host.emit_orchestrator_state = spy  # type: ignore[method-assign]
        await service_for(backend, host, max_concurrent_requests=1).run_plates(plates(5))
    states = [state for kind, (plate, state) in host.calls if kind == "state"]
    assert states[:5] == [PlateState.QUEUED] * 5
    assert PlateState.QUEUED not in states[5:]
    assert compiles_seen_when_queued == [0] * 5


async def test_a_second_batch_while_one_is_active_is_refused(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=5.0) as backend:
        service = service_for(backend)
        results: list[object] = []

        async def click() -> None:
            try:
                results.append(await service.run_plates(plates(2)))
            except BatchAlreadyRunningError as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(click)
            nursery.start_soon(click)  # the double click
    assert sum(isinstance(r, BatchAlreadyRunningError) for r in results) == 1
    assert sum(isinstance(r, BatchSummary) for r in results) == 1
    assert backend.compile_calls == 2


async def test_a_failed_compile_fails_that_plate_and_the_others_still_execute(autojump_clock: trio.abc.Clock) -> None:
    failures = {"P2": PipelineError("step 'x:y' not found")}
    async with open_in_memory_backend(compile_failures=failures) as backend:
        host = RecordingHost()
        summary = await service_for(backend, host).run_plates(plates(3))
    states = {o.plate.name: o.state for o in summary.plates}
    assert states == {"P1": PlateState.COMPLETED, "P2": PlateState.FAILED, "P3": PlateState.COMPLETED}
    assert "x:y" in summary.plates[1].error
    assert backend.execute_calls == 2
    assert summary.exit_code() == 1
    assert_converged(host, summary, backend)


async def test_fail_fast_in_compile_cancels_the_rest_and_executes_nothing(autojump_clock: trio.abc.Clock) -> None:
    failures = {"P1": PipelineError("bad parameter 'sigma'")}
    async with open_in_memory_backend(compile_failures=failures, compile_delay=1.0) as backend:
        host = RecordingHost()
        summary = await service_for(backend, host, fail_fast=True, max_concurrent_requests=1).run_plates(plates(4))
    assert summary.counts == {"failed": 1, "cancelled": 3}
    assert backend.execute_calls == 0
    assert summary.exit_code() == 1 and not summary.stopped
    assert_converged(host, summary, backend)


async def test_fail_fast_in_execute_cancels_the_live_executions_on_the_server(autojump_clock: trio.abc.Clock) -> None:
    failing = {"P1": "segfault in step"}
    async with open_in_memory_backend(execute_failures=failing, execute_delay=10.0, workers=1) as backend:
        backend_failure_fast = backend
        host = RecordingHost()
        summary = await service_for(backend, host, fail_fast=True).run_plates(plates(3))
    assert summary.counts == {"failed": 1, "cancelled": 2}
    cancelled = [o.execution_id for o in summary.plates if o.state is PlateState.CANCELLED]
    assert sorted(id_ for call in backend_failure_fast.cancel_log for id_ in call) == sorted(cancelled)
    assert_converged(host, summary, backend)


async def test_all_plates_completed_is_announced_exactly_once(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=1.0) as backend:
        host = RecordingHost()
        service = service_for(backend, host)
        await service.run_plates(plates(20))
        await service.run_plates(plates(2))
    assert len(host.all_done) == 2
    assert [s.counts for s in host.all_done] == [{"completed": 20}, {"completed": 2}]


async def test_a_rejected_submission_fails_the_plate_and_the_batch_still_ends(autojump_clock: trio.abc.Clock) -> None:
    reject = {"P2": RemoteError("server queue full")}
    async with open_in_memory_backend(reject_execute=reject) as backend:
        host = RecordingHost()
        summary = await service_for(backend, host).run_plates(plates(3))
    assert summary.counts == {"completed": 2, "failed": 1}
    assert "queue full" in summary.plates[1].error
    assert_converged(host, summary, backend)


@pytest.mark.parametrize("stop_at", [0.001, 0.5, 2.5, 4.0, 7.0])
async def test_stop_at_every_phase_converges_with_nothing_left_running(
    autojump_clock: trio.abc.Clock, stop_at: float
) -> None:
    # compile 0..2 s (two waves of 1 s), execute 2..12 s
    async with open_in_memory_backend(compile_delay=1.0, execute_delay=10.0) as backend:
        host = RecordingHost()
        service = service_for(backend, host, max_concurrent_requests=3)
        async with trio.open_nursery() as nursery:
            result: list[BatchSummary] = []

            async def run() -> None:
                result.append(await service.run_plates(plates(6)))

            nursery.start_soon(run)
            await trio.sleep(stop_at)
            service.stop()
            service.stop()  # a second click changes nothing
    summary = result[0]
    assert summary.counts == {"cancelled": 6}
    assert summary.stopped and summary.exit_code() == 130
    assert_converged(host, summary, backend)
    assert service.batch_state.value is BatchState.IDLE
    # One targeted cancel at most, naming only this batch's executions.
    assert len(backend.cancel_log) <= 1


async def test_a_terminal_state_is_never_overwritten(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=4.0) as backend:
        host = RecordingHost()
        service = service_for(backend, host)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.run_plates, plates(2))
            await trio.sleep(2.0)
            service.stop()
        # The server finishing (or re-announcing) later must not change a cancelled plate.
        await trio.sleep(10.0)
    assert host.transitions["P1"][-1] is PlateState.CANCELLED
    assert host.terminal_counts() == {"P1": 1, "P2": 1}


async def test_run_reuses_the_artifacts_of_a_compile_only_batch(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend() as backend:
        host = RecordingHost()
        service = service_for(backend, host)
        compiled = await service.compile_plates(plates(3))
        assert compiled.counts == {"compiled": 3}
        assert set(host.plate_compiled_data) == {"P1", "P2", "P3"}
        ran = await service.run_plates(plates(3))
        assert backend.compile_calls == 3  # nothing compiled twice
        assert [o.artifact_id for o in ran.plates] == [o.artifact_id for o in compiled.plates]
        service.pipeline_text = PIPELINE + "# changed\n"
        await service.run_plates(plates(1))
        assert backend.compile_calls == 4  # a changed pipeline is compiled again


async def test_compile_only_never_executes(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend() as backend:
        host = RecordingHost()
        summary = await service_for(backend, host).compile_plates(plates(2))
    assert summary.kind == "compile" and summary.exit_code() == 0
    assert backend.execute_calls == 0
    assert host.transitions["P1"] == [PlateState.QUEUED, PlateState.COMPILING, PlateState.COMPILED]


async def test_a_lost_server_fails_live_plates_as_lost_not_cancelled(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(execute_delay=30.0) as backend:
        host = RecordingHost()
        service = service_for(backend, host)
        async with trio.open_nursery() as nursery:
            result: list[BatchSummary] = []

            async def run() -> None:
                result.append(await service.run_plates(plates(3)))

            nursery.start_soon(run)
            await trio.sleep(5.0)
            backend.lose(ServerLostError("server lost: no heartbeat for 5 s"))
    summary = result[0]
    assert summary.counts == {"failed": 3}
    assert all("server lost" in o.error for o in summary.plates)
    assert len(host.all_done) == 1


async def test_missed_events_are_recovered_by_polling(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend(drop_events=True, execute_delay=3.0) as backend:
        host = RecordingHost()
        summary = await service_for(backend, host).run_plates(plates(4))
    assert summary.counts == {"completed": 4}
    assert backend.status_calls >= 1


async def test_progress_reaches_the_host_coalesced(autojump_clock: trio.abc.Clock) -> None:
    wells = [f"A{i:02d}" for i in range(1, 25)]
    async with open_in_memory_backend(execute_delay=1.0, wells=wells, steps=("a", "b", "c")) as backend:
        host = RecordingHost()
        service = service_for(backend, host)
        start = trio.current_time()
        summary = await service.run_plates(plates(10))
        elapsed = trio.current_time() - start
    assert summary.counts == {"completed": 10}
    progress_events = sum(1 for e in backend.published if type(e).__name__ == "ProgressEvent")
    assert progress_events == 10 * 24 * 3
    assert 0 < host.item_updates <= 30 * elapsed + 3
    assert host.progress_tracker is not None and host.progress_tracker.plate_percent("P1") == 100.0


async def test_a_host_callback_that_raises_does_not_wedge_the_batch(autojump_clock: trio.abc.Clock) -> None:
    class BrokenHost(RecordingHost):
        def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:
            super().emit_orchestrator_state(plate, state)
            raise ValueError("widget is gone")

    async with open_in_memory_backend() as backend:
        host = BrokenHost()
        summary = await service_for(backend, host).run_plates(plates(2))
    assert summary.counts == {"completed": 2}
    assert len(host.all_done) == 1


def test_a_host_that_does_not_subclass_batchhost_is_refused() -> None:
    class DuckHost:
        def emit_status(self, text: str) -> None: ...

    with pytest.raises(TypeError, match="BatchHost"):
        BatchWorkflowService(DuckHost(), InMemoryBackend(), pipeline_text=PIPELINE)  # type: ignore[arg-type]


async def test_duplicate_plate_names_are_refused_before_any_work(autojump_clock: trio.abc.Clock) -> None:
    async with open_in_memory_backend() as backend:
        service = service_for(backend)
        twins = [PlateRef(name="P1", path=Path("/a/P1")), PlateRef(name="P1", path=Path("/b/P1"))]
        with pytest.raises(Exception, match="two plates are named 'P1'"):
            await service.run_plates(twins)
        assert service.batch_state.value is BatchState.IDLE and backend.compile_calls == 0
