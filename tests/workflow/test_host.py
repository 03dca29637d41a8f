"""The host contract: a host sees the service's state through read-only views the service keeps current, and
must implement the callbacks that show plate states and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from hcs_batch import BatchHost, PlateRef, PlateState
from hcs_batch.model import CompileJob
from hcs_batch.testing import open_in_memory_backend
from hcs_batch.workflow.service import BatchWorkflowService


class ViewingHost(BatchHost):
    """Snapshots the views at every state change."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, PlateState, PlateState | None, str | None]] = []

    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:
        self.seen.append((plate, state, self.plate_execution_states.get(plate), self.plate_execution_ids.get(plate)))

    def emit_error(self, text: str) -> None:
        pass


PLATES = [PlateRef(name=f"P{i}", path=Path(f"/plates/P{i}")) for i in (1, 2)]


async def test_the_views_follow_the_service_and_cannot_be_written(autojump_clock: trio.abc.Clock) -> None:
    host = ViewingHost()
    assert host.progress_tracker is None and dict(host.plate_execution_states) == {}
    async with open_in_memory_backend() as backend:
        service = BatchWorkflowService(host, backend, pipeline_text="p")
        await service.compile_plates(PLATES)
        compiled = dict(host.plate_compiled_data)
        summary = await service.run_plates(PLATES)
    # every callback saw the state it announces already in the view
    assert all(state == view for _plate, state, view, _id in host.seen)
    running = [execution_id for _plate, state, _view, execution_id in host.seen if state is PlateState.RUNNING]
    assert running == [outcome.execution_id for outcome in summary.plates]
    # Run reused the artifacts of the compile-only batch: the compile cache is the service's and outlives a batch
    assert [outcome.artifact_id for outcome in summary.plates] == [compiled[p.name].artifact_id for p in PLATES]
    assert backend.compile_calls == 2
    assert host.progress_tracker is service.tracker
    with pytest.raises(TypeError):
        host.plate_execution_states["P1"] = PlateState.FAILED  # type: ignore[index]
    with pytest.raises(TypeError):
        del host.plate_compiled_data["P1"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        host.plate_execution_ids = {}  # type: ignore[misc]
    assert dict(host.plate_execution_states) == {"P1": PlateState.COMPLETED, "P2": PlateState.COMPLETED}


def test_a_host_must_show_plate_states_and_errors() -> None:
    class Mute(BatchHost):
        def emit_status(self, text: str) -> None:
            pass

    with pytest.raises(TypeError, match=r"emit_error, emit_orchestrator_state"):
        Mute()  # type: ignore[abstract]


def test_a_compile_job_is_frozen() -> None:
    job = CompileJob(plate=PLATES[0], pipeline_text="p")
    with pytest.raises(AttributeError):
        job.pipeline_text = "other"  # type: ignore[misc]
