"""Artifact and execution-record stores: bounded, evicted by age; Shutdown stops a server with work in flight."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.errors import ArtifactNotFoundError, PlateError
from hcs_batch.model import ExecutionState
from hcs_batch.server.compiler import Plan
from hcs_batch.server.results import plate_output_dir
from hcs_batch.server.serve import serve
from hcs_batch.server.stores import ArtifactStore, Execution, RecordStore
from hcs_batch.testing.plates import make_plates
from tests.support.procs import alive as pid_alive


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plan(artifact_id: str) -> Plan:
    return Plan(
        artifact_id=artifact_id,
        plate_name="p",
        plate_path="/p",
        pipeline_name="noop",
        wells=("A01",),
        well_images=types.MappingProxyType({"A01": ((1, 1, ((1, ("A01_s1_w1.tif",)),)),)}),
        sites=1,
        channels=1,
        steps=(),
        worker_steps=(),
        inline=True,
    )


def test_artifacts_expire_by_age_and_are_bounded() -> None:
    clock = FakeClock()
    store = ArtifactStore(max_items=2, max_age=10.0, clock=clock)
    store.put(_plan("a"))
    clock.now = 5.0
    store.put(_plan("b"))
    assert store.get("a").artifact_id == "a"
    clock.now = 10.5  # "a" is older than 10 s now, "b" is not
    with pytest.raises(ArtifactNotFoundError, match="a is unknown or expired"):
        store.get("a")
    assert store.get("b").artifact_id == "b"
    store.put(_plan("c"))
    store.put(_plan("d"))  # over the bound: the oldest ("b") goes
    assert len(store) == 2
    with pytest.raises(ArtifactNotFoundError):
        store.get("b")


def test_records_keep_live_executions_and_evict_finished_ones() -> None:
    clock = FakeClock()
    records = RecordStore(max_finished=1, max_age=10.0, clock=clock)
    executions = [Execution(artifact_id="a", plate_name="p", wells_total=1, output="") for _ in range(3)]
    for execution in executions:
        records.add(execution)
    assert records.queued == 3
    records.mark_running(executions[0])
    records.finish(executions[0], ExecutionState.COMPLETED)
    records.finish(executions[0], ExecutionState.CANCELLED)  # terminal is final
    assert executions[0].state is ExecutionState.COMPLETED
    records.finish(executions[1], ExecutionState.CANCELLED)
    assert (records.queued, records.running) == (1, 0)
    assert records.get(executions[0].execution_id) is None  # bounded: one finished record kept
    assert records.get(executions[1].execution_id) is executions[1]
    clock.now = 100.0
    assert [e.execution_id for e in records.all()] == [executions[2].execution_id]  # live ones never go


def test_plate_output_dir_refuses_escapes(tmp_path: Path) -> None:
    assert plate_output_dir(tmp_path, "plate 1") == tmp_path.absolute() / "plate 1"
    for bad in ("..", "../x", "a/b", "/abs", ""):
        with pytest.raises(PlateError):
            plate_output_dir(tmp_path, bad)


def _read_fifo(path: Path) -> str:
    with open(path) as fh:
        return fh.read()


async def test_shutdown_replies_cancels_everything_and_serve_returns(tmp_path: Path) -> None:
    folders = make_plates(tmp_path / "plates", plates=1, wells=1, sites=1, channels=1, size=16, seed=1)
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    pipeline = f"[[steps]]\nfunc = 'tests.support.slow_steps:pid_then_wait'\npid_fifo = '{fifo}'\n"
    returned = trio.Event()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def run_server(*, task_status: trio.TaskStatus[object]) -> None:
                await serve(workers=1, warm_workers=False, allow_remote_shutdown=True, task_status=task_status)
                returned.set()

            address = await nursery.start(run_server)
            async with open_connection(address.control_url) as conn:  # type: ignore[attr-defined]
                compiled = await conn.compile(plate_path=str(folders[0]), plate_name="p", pipeline=pipeline)
                await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
                pid = int(await trio.to_thread.run_sync(_read_fifo, fifo, abandon_on_cancel=True))
                info = await conn.server_info(records=True)
                assert (info.running, [e.state for e in info.executions]) == (1, ["running"])
                await conn.shutdown()
                await returned.wait()
    assert not pid_alive(pid), "Shutdown kills the workers of running executions"
