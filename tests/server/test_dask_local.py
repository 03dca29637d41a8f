"""The dask executor on a LocalCluster the server starts itself (``executor="dask"`` without a scheduler): real
plates, per-well Dask tasks, fair sharing between plates, and a cooperative cancel that leaves nothing running."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from hcs_batch import protocol as p
from hcs_batch.client import open_connection
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.server import ServerAddress, open_embedded_server
from hcs_batch.testing.plates import make_plates
from tests.support.dask_cluster import cluster_workers, keys_on_cluster
from tests.support.procs import alive, descendants, listening
from tests.support.serverproc import GATE_PIPELINE, pids_in, wait_for_pids
from tests.support.slow_steps import release_gate

from .helpers import read_csv, seconds_to_cancel, wait_terminal

pytestmark = pytest.mark.slow


@dataclass
class DaskServer:
    address: ServerAddress
    scheduler: str
    """The LocalCluster's scheduler, as the server logs it."""

    @property
    def control_url(self) -> str:
        return self.address.control_url


@pytest.fixture
async def dask_server(caplog: pytest.LogCaptureFixture) -> AsyncIterator[DaskServer]:
    """An embedded server whose wells run on a LocalCluster of two worker processes on 127.0.0.1."""
    caplog.set_level(logging.INFO, logger="hcs_batch.server")
    async with open_embedded_server(workers=2, executor="dask") as address:
        said = [r.getMessage() for r in caplog.records if "Dask scheduler at" in r.getMessage()]
        match = re.search(r"at (tcp://127\.0\.0\.1:\d+) \(a LocalCluster", said[0])
        assert match, said
        yield DaskServer(address=address, scheduler=match.group(1))


async def test_plates_run_as_dask_tasks_on_a_local_cluster(dask_server: DaskServer, plates: list[Path]) -> None:
    out = tmp = plates[0].parent.parent / "out"
    with trio.fail_after(90):
        async with open_connection(dask_server.control_url) as conn:
            info = await conn.server_info()
            assert info.workers == 2  # two single-threaded worker processes
            runs = {}
            progress: dict[str, list[p.ProgressEvent]] = {}
            async with conn.open_event_stream() as events:
                for folder in plates:
                    compiled = await conn.compile(
                        plate_path=str(folder), plate_name=folder.name, pipeline=default_pipeline_text()
                    )
                    runs[folder.name] = await conn.execute(compiled.artifact_id, output_dir=str(out))
                finished = 0
                async for event in events:  # progress per well reaches the client as with local workers
                    if isinstance(event, p.ProgressEvent):
                        progress.setdefault(event.execution_id, []).append(event)
                    elif isinstance(event, p.StateEvent) and event.state in ("completed", "failed", "cancelled"):
                        finished += 1
                        if finished == len(runs):
                            break
            records = await wait_terminal(conn, list(runs.values()))
            for run in runs.values():
                got = [e for e in progress[run] if e.step]  # without the "well started" events (empty step)
                assert {e.well for e in got} == {"A01", "A02", "A03"}
                assert [e.done for e in got] == list(range(1, len(got) + 1)) and got[-1].done == got[-1].total
                assert len(got) == 3 * len(compiled.steps)  # one event per (well, step)
            cluster = await trio.to_thread.run_sync(cluster_workers, dask_server.scheduler)
            # Scheduler, nannies and workers the server started listen on loopback only: nobody else can reach
            # a scheduler that runs what it is sent.
            sockets = listening(descendants(os.getpid()) | {os.getpid()})
            assert len(sockets) >= 6 and {host for host, _ in sockets} == {"127.0.0.1"}, sockets
    assert {r.state for r in records.values()} == {"completed"}, [r.error for r in records.values()]
    manifest = json.loads((tmp / plates[0].name / "manifest.json").read_text())
    assert manifest["executor"] == "dask" and manifest["scheduler"] == dask_server.scheduler
    workers: set[str] = set()
    for folder in plates:
        header, rows = read_csv(tmp / folder.name / "wells.csv")
        assert header[:9] == [
            *("plate", "well", "site", "channel", "object_count", "mean_intensity", "timepoint", "file", "worker")
        ]
        assert len(rows) == 3 * 2 * 2  # wells x sites x channels
        assert all(r["object_count"] != "" for r in rows)
        workers |= {r["worker"] for r in rows}
        assert len({r["worker"] for r in rows if r["well"] == "A01"}) == 1  # one task computes a whole well
    assert workers == cluster and len(cluster) == 2, (workers, cluster)  # both workers took wells


async def test_worker_values_are_the_cluster_workers_and_keys_name_the_well(
    dask_server: DaskServer, tmp_path: Path
) -> None:
    [folder] = make_plates(tmp_path / "plates", plates=1, wells=2, sites=1, channels=1, size=16, seed=2)
    gate = tmp_path / "gate"
    gate.mkdir()
    out = tmp_path / "out"
    with trio.fail_after(90):
        async with open_connection(dask_server.control_url) as conn:
            compiled = await conn.compile(
                plate_path=str(folder), plate_name="gated", pipeline=GATE_PIPELINE.format(gate_dir=gate)
            )
            run = await conn.execute(compiled.artifact_id, output_dir=str(out))
            await wait_for_pids(gate, 2)  # both wells are inside their step, one on each worker
            scheduler = dask_server.scheduler
            processing, executing = await trio.to_thread.run_sync(keys_on_cluster, scheduler, run)
            assert processing == executing == {f"{run}/A01", f"{run}/A02"}
            workers = await trio.to_thread.run_sync(cluster_workers, scheduler)
            release_gate(gate)
            records = await wait_terminal(conn, [run])
    assert records[run].state == "completed"
    _, rows = read_csv(out / "gated" / "wells.csv")
    assert {r["worker"] for r in rows} == workers and len(workers) == 2


async def test_cancel_stops_a_running_well_between_steps_and_the_other_plate_completes(
    dask_server: DaskServer, tmp_path: Path
) -> None:
    slow_folder, gated_folder = make_plates(tmp_path / "plates", plates=2, wells=1, sites=1, channels=1, size=16)
    ticks = tmp_path / "ticks"
    gate = tmp_path / "gate"
    ticks.mkdir()
    gate.mkdir()
    # 200 steps of 50 ms: a 10 s well that can stop between any two steps.
    slow = "".join(f"[[steps]]\nfunc = 'tests.support.slow_steps:tick'\npid_dir = '{ticks}'\n" for _ in range(200))
    out = tmp_path / "out"
    with trio.fail_after(90):
        async with open_connection(dask_server.control_url) as conn:
            a = await conn.compile(plate_path=str(slow_folder), plate_name="slow", pipeline=slow)
            b = await conn.compile(
                plate_path=str(gated_folder), plate_name="gated", pipeline=GATE_PIPELINE.format(gate_dir=gate)
            )
            run_a = await conn.execute(a.artifact_id, output_dir=str(out))
            run_b = await conn.execute(b.artifact_id, output_dir=str(out))
            (pid_a,) = await wait_for_pids(ticks, 1)
            await wait_for_pids(gate, 1)
            scheduler = dask_server.scheduler

            stopped_after = await seconds_to_cancel(conn, run_a)
            assert stopped_after < 10.0, stopped_after  # well under the 30 s of a stop that waits on a dead worker
            assert alive(pid_a), "a cooperative stop keeps the worker process"
            assert await trio.to_thread.run_sync(keys_on_cluster, scheduler, run_a) == (set(), set())

            (status_b,), _ = await conn.status([run_b])
            assert status_b.state == "running"
            release_gate(gate)
            records = await wait_terminal(conn, [run_b])
            assert records[run_b].state == "completed"
            assert await trio.to_thread.run_sync(keys_on_cluster, scheduler, run_b) == (set(), set())
    assert not (out / "slow" / "wells").exists(), "a stopped well writes no result file"
    assert (out / "gated" / "wells.csv").exists()
    assert pids_in(ticks) == {pid_a}


async def test_plates_share_the_cluster(dask_server: DaskServer, tmp_path: Path) -> None:
    # As with local workers: a big plate submitted first does not hold the cluster until it is done.
    big = make_plates(tmp_path / "big", plates=1, wells=12, sites=1, channels=1, size=64, seed=3)[0]
    small = make_plates(tmp_path / "small", plates=1, wells=2, sites=1, channels=1, size=64, seed=4)[0]
    pipeline = default_pipeline_text()
    out = str(tmp_path / "out")
    order: list[str] = []
    with trio.fail_after(90):
        async with open_connection(dask_server.control_url) as conn:
            a = await conn.compile(plate_path=str(big), plate_name="big", pipeline=pipeline)
            b = await conn.compile(plate_path=str(small), plate_name="small", pipeline=pipeline)
            async with conn.open_event_stream() as events:
                run_big = await conn.execute(a.artifact_id, output_dir=out, force=True)
                run_small = await conn.execute(b.artifact_id, output_dir=out, force=True)
                names = {run_big: "big", run_small: "small"}
                async for event in events:
                    if isinstance(event, p.StateEvent) and event.state == "completed":
                        order.append(names[event.execution_id])
                        if len(order) == 2:
                            break
    assert order == ["small", "big"]


async def test_a_well_that_keeps_killing_its_worker_fails_its_plate_with_dasks_reason(tmp_path: Path) -> None:
    # Dask's default: a task is given up after its fourth lost worker (allowed-failures 3). Other plates' wells
    # queued behind such a well on the same worker count those deaths too (see docs/cluster.md), so this plate runs
    # alone: what is checked is the reason the user reads and that the plate ends, with the server still serving.
    [crashing] = make_plates(tmp_path / "bad", plates=1, wells=1, sites=1, channels=1, size=16, seed=8)
    [fine] = make_plates(tmp_path / "good", plates=1, wells=2, sites=1, channels=1, size=16, seed=9)
    out = tmp_path / "out"
    with trio.fail_after(120):
        async with (
            open_embedded_server(workers=2, executor="dask") as address,
            open_connection(address.control_url) as conn,
        ):
            bad = await conn.compile(
                plate_path=str(crashing),
                plate_name="crashing",
                pipeline="[[steps]]\nfunc = 'tests.support.slow_steps:crash'\n",
            )
            run_bad = await conn.execute(bad.artifact_id, output_dir=str(out))
            records = await wait_terminal(conn, [run_bad])
            good = await conn.compile(plate_path=str(fine), plate_name="fine", pipeline=default_pipeline_text())
            run_good = await conn.execute(good.artifact_id, output_dir=str(out))
            records |= await wait_terminal(conn, [run_good])
    assert records[run_bad].state == "failed"
    error = records[run_bad].error
    assert "Dask worker that computed it died" in error and "allowed-failures" in error, error
    assert "on 4 different workers" in error, error
    assert records[run_good].state == "completed", records[run_good].error  # the restarted workers serve on
    assert len(read_csv(out / "fine" / "wells.csv")[1]) == 2


async def test_rows_come_from_the_well_files_and_from_the_workers_where_the_server_cannot_read_those(
    dask_server: DaskServer, plates: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hcs_batch.server.executor import dask as dask_executor

    fetched: list[str] = []
    fetch = dask_executor._DaskWells._fetch

    async def counted_fetch(future: object, where: str) -> list[dict[str, object]]:
        fetched.append(where)
        return await fetch(future, where)

    monkeypatch.setattr(dask_executor._DaskWells, "_fetch", staticmethod(counted_fetch))
    out = tmp_path / "out"
    wells: dict[str, list[dict[str, str]]] = {}
    with trio.fail_after(90):
        async with open_connection(dask_server.control_url) as conn:
            compiled = await conn.compile(plate_path=str(plates[0]), plate_name="p", pipeline=default_pipeline_text())
            for attempt in ("file", "worker"):
                if attempt == "worker":  # as a shared folder whose cache has not seen the workers' files yet
                    monkeypatch.setattr(dask_executor, "read_well_rows", lambda *args: None)
                run = await conn.execute(compiled.artifact_id, output_dir=str(out / attempt), force=True)
                records = await wait_terminal(conn, [run])
                assert records[run].state == "completed", records[run].error
                wells[attempt] = read_csv(out / attempt / "p" / "wells.csv")[1]
                assert len(fetched) == (0 if attempt == "file" else 3), fetched  # 3 wells
    cluster = await trio.to_thread.run_sync(cluster_workers, dask_server.scheduler)
    for rows in wells.values():
        assert len(rows) == 3 * 2 * 2 and {r["worker"] for r in rows} <= cluster
    drop = ("worker",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in wells["file"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in wells["worker"]
    ]
