"""The local executor's worker pool (``hcs_batch.server.worker_pool``), with real worker processes: leaving it ends
idle workers at once (no interpreter finalization) and kills workers still warming up, instead of waiting for
them; a pool opened before the server (as ``hcs-batch run`` does) runs the server's wells and outlives it."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import pytest
import trio
import trio_parallel

from hcs_batch.client import open_connection
from hcs_batch.errors import InputError
from hcs_batch.server import open_embedded_server, worker_pool
from hcs_batch.server.executor import open_well_runner
from hcs_batch.server.worker_pool import open_worker_pool
from hcs_batch.testing.plates import make_plates

from ..support.pool_jobs import held_warm_up, mark_at_exit
from ..support.procs import alive
from ..support.serverproc import kill_pids, wait_for_pids
from .helpers import read_csv, wait_terminal

PID_PIPELINE = """
name = "which_worker"
[[steps]]
func = "tests.support.pid_steps:worker_pid"
"""


async def _two_marked(context: trio_parallel.WorkerContext, limiter: trio.CapacityLimiter, folder: Path) -> set[int]:
    """Run :func:`mark_at_exit` on two workers at once (each job takes a different worker); their pids."""
    pids: set[int] = set()

    async def one(name: str) -> None:
        pids.add(await context.run_sync(mark_at_exit, str(folder / name), limiter=limiter))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "first")
        nursery.start_soon(one, "second")
    return pids


@pytest.mark.parametrize("error", [False, True])
async def test_leaving_the_pool_ends_idle_workers_without_their_finalization(tmp_path: Path, error: bool) -> None:
    ended, graceful = tmp_path / "ended", tmp_path / "graceful"
    ended.mkdir()
    graceful.mkdir()
    pids: set[int] = set()
    with trio.fail_after(120):
        with pytest.raises(InputError) if error else contextlib.nullcontext():
            async with open_worker_pool(2) as pool:
                pids = await _two_marked(pool.context, pool.limiter, ended)
                if error:  # leaving by an exception (a bad plate found after the workers started) ends them too
                    raise InputError("bad plate")
        assert len(pids) == 2
        assert not any(alive(pid) for pid in pids), "every worker has ended (and been reaped) when the block is left"
        assert list(ended.iterdir()) == [], "an ended worker runs no atexit handler: it skips finalization"

        # The same jobs on a plain trio_parallel context, closed gracefully: the workers finalize, markers appear.
        async with trio_parallel.open_worker_context() as context:
            await _two_marked(context, trio.CapacityLimiter(2), graceful)
    assert sorted(p.name for p in graceful.iterdir()) == ["first", "second"]


async def test_an_error_in_the_block_kills_workers_still_warming_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_pool, "warm", functools.partial(held_warm_up, str(tmp_path)))
    pids: set[int] = set()
    try:
        with trio.fail_after(120):
            with pytest.raises(InputError, match="bad plate"):  # as raised, not in an exception group
                async with open_worker_pool(2) as pool:
                    pool.start()
                    pids = await wait_for_pids(tmp_path, 2)  # both warm-ups are running (and never end)
                    raise InputError("bad plate")
        assert not any(alive(pid) for pid in pids), "the warming workers were killed, not waited for"
    finally:
        kill_pids(pids)


async def test_a_pool_opened_first_runs_the_servers_wells_and_outlives_it(tmp_path: Path) -> None:
    [plate] = make_plates(tmp_path / "plates", plates=1, wells=3, size=16, seed=2)
    out = tmp_path / "out"
    with trio.fail_after(120):
        async with open_worker_pool(1) as pool:
            await pool.wait_started()
            worker = await pool.context.run_sync(os.getpid, limiter=pool.limiter)
            roots = {"data_roots": [plate.parent], "output_roots": [out]}
            async with (
                open_embedded_server(worker_pool=pool, **roots) as address,
                open_connection(address.control_url) as conn,
            ):
                compiled = await conn.compile(plate_path=str(plate), plate_name=plate.name, pipeline=PID_PIPELINE)
                run = await conn.execute(compiled.artifact_id, output_dir=str(out))
                record = (await wait_terminal(conn, [run]))[run]
                assert record.state.value == "completed", record.error
            _, rows = read_csv(out / plate.name / "wells.csv")
            assert {int(row["worker_pid"]) for row in rows} == {worker}
            assert alive(worker), "the server stopped; the pool's worker lives on"
            assert await pool.context.run_sync(os.getpid, limiter=pool.limiter) == worker
    assert not alive(worker)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "dask"}, "cannot serve --executor dask"),
        ({"workers": 2}, "the worker pool's own"),
        ({"max_wells_per_worker": 3}, "the worker pool's own"),
    ],
)
async def test_a_pool_refuses_options_it_cannot_honour(options: dict[str, object], message: str) -> None:
    with trio.fail_after(60):
        async with open_worker_pool(1) as pool:
            with pytest.raises(InputError, match=message):
                async with open_well_runner(worker_pool=pool, **options):  # type: ignore[arg-type]
                    pass
