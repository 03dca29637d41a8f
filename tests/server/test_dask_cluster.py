"""The dask executor on a real cluster: ``dask scheduler`` and two ``dask worker`` processes (with nannies) on
127.0.0.1, started from the venv's ``dask`` command. The CLI paths (``run --scheduler-file``, ``serve --executor
dask --scheduler``), a hard stop of a step that never returns, a worker killed mid-run, and a lost scheduler."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.server import open_embedded_server, registry
from hcs_batch.server.executor import dask as dask_executor
from hcs_batch.testing.plates import make_plates
from tests.support.dask_cluster import DaskCluster, dask_cluster, keys_on_cluster
from tests.support.procs import alive, survivors
from tests.support.serverproc import GATE_PIPELINE, env, reap, start_server, stop, wait_for_pids
from tests.support.slow_steps import release_gate

from .helpers import read_csv, seconds_to_cancel, wait_terminal

pytestmark = pytest.mark.slow

HOLD_PIPELINE = "[[steps]]\nfunc = 'tests.support.slow_steps:hold'\npid_dir = '{pid_dir}'\n"
"""A well whose step never returns (it records the worker's pid and blocks until the process ends)."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path / "dask", workers=2) as started:
        yield started


def test_run_with_a_scheduler_file_computes_every_well_on_the_cluster(
    cluster: DaskCluster, plates: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "run", *map(str, plates), "--output", str(out), "--json",
         "--executor", "dask", "--scheduler-file", str(cluster.scheduler_file)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert [plate["state"] for plate in summary["plates"]] == ["completed", "completed"]
    used: set[str] = set()
    for folder in plates:
        _, rows = read_csv(out / folder.name / "wells.csv")
        assert len(rows) == 3 * 2 * 2
        assert {(r["well"], r["site"], r["channel"]) for r in rows} == {
            (w, str(s), str(c)) for w in ("A01", "A02", "A03") for s in (1, 2) for c in (1, 2)
        }
        used |= {r["worker"] for r in rows}
        manifest = json.loads((out / folder.name / "manifest.json").read_text())
        assert manifest["executor"] == "dask" and manifest["scheduler"] == cluster.scheduler.address
    assert used <= cluster.worker_addresses and used, (used, cluster.worker_addresses)


async def test_serve_on_a_scheduler_cancels_one_of_two_with_a_hard_stop(cluster: DaskCluster, tmp_path: Path) -> None:
    hold_folder, gated_folder = make_plates(tmp_path / "plates", plates=2, wells=1, sites=1, channels=1, size=16)
    held, gate = tmp_path / "held", tmp_path / "gate"
    held.mkdir()
    gate.mkdir()
    out = tmp_path / "out"
    extra = ["--executor", "dask", "--scheduler", cluster.scheduler.address]
    server = await trio.to_thread.run_sync(functools.partial(start_server, workers=1, extra=extra))
    try:
        with trio.fail_after(90):
            async with open_connection(server.url) as conn:
                assert (await conn.server_info()).workers == 2  # the cluster's threads, not --workers
                [entry] = [e for e in registry.read_entries() if e.url == server.url]
                assert entry.executor == "dask"  # what `hcs-batch servers` shows
                a = await conn.compile(
                    plate_path=str(hold_folder), plate_name="held", pipeline=HOLD_PIPELINE.format(pid_dir=held)
                )
                b = await conn.compile(
                    plate_path=str(gated_folder), plate_name="gated", pipeline=GATE_PIPELINE.format(gate_dir=gate)
                )
                run_a = await conn.execute(a.artifact_id, output_dir=str(out))
                run_b = await conn.execute(b.artifact_id, output_dir=str(out))
                (pid_a,) = await wait_for_pids(held, 1)
                (pid_b,) = await wait_for_pids(gate, 1)
                scheduler = cluster.scheduler.address
                assert await trio.to_thread.run_sync(keys_on_cluster, scheduler, run_a) == ({f"{run_a}/A01"},) * 2

                stopped_after = await seconds_to_cancel(conn, run_a)
                assert stopped_after < 10.0, stopped_after  # well under the 30 s of a stop that waits on a dead worker
                # The step never returns: its worker process was restarted through its nanny.
                assert await trio.to_thread.run_sync(survivors, {pid_a}) == {}
                assert await trio.to_thread.run_sync(keys_on_cluster, scheduler, run_a) == (set(), set())

                (status_b,), _ = await conn.status([run_b])
                assert status_b.state == "running" and alive(pid_b)
                release_gate(gate)
                records = await wait_terminal(conn, [run_b])
                assert records[run_b].state == "completed"
        assert await trio.to_thread.run_sync(stop, server) == 0
    finally:
        await trio.to_thread.run_sync(reap, server)
    assert not (out / "held" / "wells.csv").exists()
    _, rows = read_csv(out / "gated" / "wells.csv")
    assert {r["worker"] for r in rows} <= cluster.worker_addresses


def test_a_hard_stop_sees_the_killed_worker_gone_without_asking_it(cluster: DaskCluster) -> None:
    """Regression (CI, stop 17): right after the SIGKILL the scheduler may still list the dead worker; a request
    routed to it waited out Dask's 30 s connect timeout, so a cancel took 30 s. Only the scheduler is asked now."""
    import distributed

    with distributed.Client(cluster.scheduler.address, timeout=10, set_as_default=False) as client:
        victim = sorted(cluster.worker_addresses)[0]
        old_pid = client.run(os.getpid, workers=[victim])[victim]
        before = dask_executor._worker_processes(client, [victim])
        assert set(before) == {victim}
        started = time.monotonic()
        dask_executor._end_worker_processes(client, [victim])
        assert dask_executor._wait_replaced(client, before, 30.0) == []
        assert time.monotonic() - started < 10.0  # hang guard: the old path took 30 s
    assert survivors({old_pid}) == {}


async def test_a_worker_killed_mid_run_has_its_wells_recomputed(cluster: DaskCluster, tmp_path: Path) -> None:
    [folder] = make_plates(tmp_path / "plates", plates=1, wells=4, sites=1, channels=1, size=16, seed=5)
    gate = tmp_path / "gate"
    gate.mkdir()
    out = tmp_path / "out"
    with trio.fail_after(90):
        async with (
            open_embedded_server(executor="dask", scheduler=cluster.scheduler.address) as address,
            open_connection(address.control_url) as conn,
        ):
            compiled = await conn.compile(
                plate_path=str(folder), plate_name="gated", pipeline=GATE_PIPELINE.format(gate_dir=gate)
            )
            run = await conn.execute(compiled.artifact_id, output_dir=str(out))
            pids = await wait_for_pids(gate, 2)  # one well inside its step on each worker
            victim_pid = min(pids)
            [victim] = [w for w in cluster.workers if victim_pid in w.worker_pids()]
            victim.proc.kill()  # the `dask worker` process this test started (the nanny) ...
            os.kill(victim_pid, signal.SIGKILL)  # ... and its worker process below it
            await trio.to_thread.run_sync(victim.proc.wait)
            release_gate(gate)
            records = await wait_terminal(conn, [run])
    assert records[run].state == "completed", records[run].error
    assert records[run].wells_done == 4
    _, rows = read_csv(out / "gated" / "wells.csv")
    [survivor] = cluster.worker_addresses - {victim.address}
    assert len(rows) == 4 and {r["worker"] for r in rows} == {survivor}


async def test_a_lost_scheduler_fails_the_running_executions_with_a_clear_reason(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    [folder] = make_plates(tmp_path / "plates", plates=1, wells=2, sites=1, channels=1, size=16, seed=6)
    gate = tmp_path / "gate"
    gate.mkdir()
    with trio.fail_after(90):
        async with (
            open_embedded_server(executor="dask", scheduler=cluster.scheduler.address) as address,
            open_connection(address.control_url) as conn,
        ):
            compiled = await conn.compile(
                plate_path=str(folder), plate_name="gated", pipeline=GATE_PIPELINE.format(gate_dir=gate)
            )
            run = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
            await wait_for_pids(gate, 2)
            cluster.scheduler.proc.kill()
            await trio.to_thread.run_sync(cluster.scheduler.proc.wait)
            records = await wait_terminal(conn, [run])  # after the client's reconnect window (10 s)
            release_gate(gate)
    assert records[run].state == "failed"
    assert cluster.scheduler.address in records[run].error and "scheduler" in records[run].error, records[run].error
