"""One contract, two backends: the in-memory fake the policy tests use must behave like the real ZeroMQ client
talking to a real server on loopback, or the policy tests prove nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from hcs_batch import ArtifactNotFoundError, ExecutionBackend, ExecutionState
from hcs_batch.client import open_connection
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.protocol import StateEvent
from hcs_batch.server import open_embedded_server
from hcs_batch.testing import open_in_memory_backend
from hcs_batch.testing.plates import make_plates


@pytest.fixture(params=["in-memory", "zmq"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[ExecutionBackend]:
    if request.param == "in-memory":
        async with open_in_memory_backend(execute_delay=0.2, wells=("A01",)) as memory:
            yield memory
    else:
        async with open_embedded_server(workers=1) as address, open_connection(address.control_url) as conn:
            yield conn


@pytest.fixture
def plate_dirs(tmp_path: Path) -> list[Path]:
    return make_plates(tmp_path / "plates", plates=3, wells=1, sites=1, channels=1, size=16, seed=1)


async def _until_terminal(backend: ExecutionBackend, execution_id: str) -> str:
    while True:
        records, _ = await backend.status([execution_id])
        if ExecutionState(records[0].state).is_terminal:
            return records[0].state
        await trio.sleep(0.02)


async def test_compile_is_deterministic_and_executes_to_completed_with_events(
    backend: ExecutionBackend, plate_dirs: list[Path], tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with backend.open_event_stream() as events:
            first = await backend.compile(
                plate_path=str(plate_dirs[0]), plate_name="plate_001", pipeline=noop_pipeline_text()
            )
            again = await backend.compile(
                plate_path=str(plate_dirs[0]), plate_name="plate_001", pipeline=noop_pipeline_text()
            )
            assert first.artifact_id == again.artifact_id
            assert first.wells == ["A01"]
            execution_id = await backend.execute(first.artifact_id, output_dir=str(tmp_path / "out"))
            states: list[str] = []
            async for item in events:
                if isinstance(item, StateEvent) and item.execution_id == execution_id:
                    states.append(item.state)
                    if ExecutionState(item.state).is_terminal:
                        break
    assert states[-1] == "completed"
    records, unknown = await backend.status([execution_id, "no-such-execution"])
    assert [r.state for r in records] == ["completed"] and unknown == ["no-such-execution"]


async def test_unknown_artifact_is_a_clear_error(backend: ExecutionBackend, tmp_path: Path) -> None:
    with trio.fail_after(10), pytest.raises(ArtifactNotFoundError):
        await backend.execute("0" * 64, output_dir=str(tmp_path))


async def test_status_is_batched_and_cancel_is_targeted(
    backend: ExecutionBackend, plate_dirs: list[Path], tmp_path: Path
) -> None:
    with trio.fail_after(30):
        ids = []
        for i, plate in enumerate(plate_dirs[:2]):
            compiled = await backend.compile(
                plate_path=str(plate), plate_name=plate.name, pipeline=noop_pipeline_text()
            )
            ids.append(await backend.execute(compiled.artifact_id, output_dir=str(tmp_path / f"o{i}")))
        records, unknown = await backend.status(ids)
        assert sorted(r.execution_id for r in records) == sorted(ids) and unknown == []
        reply = await backend.cancel(["not-an-execution"])
        assert reply.unknown == ["not-an-execution"] and reply.cancelled == []
        assert [await _until_terminal(backend, i) for i in ids] == ["completed", "completed"]
        info = await backend.server_info(records=True)
        assert {r.execution_id for r in info.executions} >= set(ids)
        assert info.running == 0
