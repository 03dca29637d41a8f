"""Targeted cancel (only the named execution stops, its worker is killed) and fair sharing of the workers."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from hcs_batch import protocol as p
from hcs_batch.client import open_connection
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.server import ServerAddress
from hcs_batch.testing.plates import make_plates
from tests.support.procs import alive as pid_alive
from tests.support.serverproc import wait_for_pids
from tests.support.slow_steps import release_gate

from .helpers import wait_terminal


def _read_fifo(path: Path) -> str:
    with open(path) as fh:  # blocks until the worker opens it for writing
        return fh.read()


def _write_fifo(path: Path) -> None:
    with open(path, "w") as fh:  # blocks until the worker opens it for reading
        fh.write("go")


async def test_cancel_one_kills_its_worker_and_the_other_completes(server: ServerAddress, tmp_path: Path) -> None:
    folders = make_plates(tmp_path / "plates", plates=2, wells=1, sites=1, channels=1, size=16, seed=1)
    fifos = {name: tmp_path / name for name in ("a.pid", "b.pid", "b.release")}
    for fifo in fifos.values():
        os.mkfifo(fifo)
    slow = "[[steps]]\nfunc = 'tests.support.slow_steps:pid_then_wait'\npid_fifo = '{}'\nrelease_fifo = '{}'\n"
    out = tmp_path / "out"
    with trio.fail_after(60):
        async with open_connection(server.control_url) as conn:
            a = await conn.compile(plate_path=str(folders[0]), plate_name="a", pipeline=slow.format(fifos["a.pid"], ""))
            b = await conn.compile(
                plate_path=str(folders[1]), plate_name="b", pipeline=slow.format(fifos["b.pid"], fifos["b.release"])
            )
            run_a = await conn.execute(a.artifact_id, output_dir=str(out))
            run_b = await conn.execute(b.artifact_id, output_dir=str(out))
            # Both wells are now inside their steps, each in its own worker process.
            pid_a = int(await trio.to_thread.run_sync(_read_fifo, fifos["a.pid"], abandon_on_cancel=True))
            pid_b = int(await trio.to_thread.run_sync(_read_fifo, fifos["b.pid"], abandon_on_cancel=True))
            assert pid_a != pid_b and pid_alive(pid_a) and pid_alive(pid_b)

            reply = await conn.cancel([run_a, "no-such-execution"])
            assert reply.cancelled == [run_a] and reply.unknown == ["no-such-execution"]
            records = await wait_terminal(conn, [run_a])
            assert records[run_a].state == "cancelled"
            assert not pid_alive(pid_a), "the cancelled execution's worker must be killed"

            (status_b,), _ = await conn.status([run_b])
            assert status_b.state == "running" and pid_alive(pid_b)
            await trio.to_thread.run_sync(_write_fifo, fifos["b.release"], abandon_on_cancel=True)
            records = await wait_terminal(conn, [run_b])
            assert records[run_b].state == "completed"
            assert pid_alive(pid_b), "the worker that finished its well stays in the pool"

            again = await conn.cancel([run_a, run_b])
            assert again.cancelled == [] and sorted(again.already_terminal) == sorted([run_a, run_b])
    assert (out / "b" / "wells.csv").exists() and not (out / "a" / "wells.csv").exists()


_TWO_GATES = """
name = "two gates"
[[steps]]
func = "tests.support.slow_steps:gate"
gate_dir = "{first}"
[[steps]]
func = "tests.support.slow_steps:gate"
gate_dir = "{second}"
allow = 2
"""
"""Every well waits at the first gate until it is released; then the first two wells pass the second gate and
every later one waits there."""


async def test_plates_share_the_workers(server: ServerAddress, tmp_path: Path) -> None:
    # A big plate submitted first must not hold both workers until it is done: the small plate submitted after it
    # gets the workers as soon as the big plate's first wells finish, before the big plate's further wells.
    # Gates order every step (no timing): the big plate's first two wells hold both workers at the first gate
    # until the small plate's wells queue for workers; once released, only those two big wells can finish (the
    # second gate holds the rest), and by the time the next two big wells hold both workers at the second gate,
    # the small plate's wells must have run. The bound is only a hang guard.
    big = make_plates(tmp_path / "big", plates=1, wells=12, sites=1, channels=1, size=64, seed=3)[0]
    small = make_plates(tmp_path / "small", plates=1, wells=2, sites=1, channels=1, size=64, seed=4)[0]
    first, second = tmp_path / "gate1", tmp_path / "gate2"
    first.mkdir()
    second.mkdir()
    gated = _TWO_GATES.format(first=first, second=second)
    out = str(tmp_path / "out")
    with trio.fail_after(60):
        async with open_connection(server.control_url) as conn:
            info = await conn.server_info()
            assert info.workers == 2
            a = await conn.compile(plate_path=str(big), plate_name="big", pipeline=gated)
            b = await conn.compile(plate_path=str(small), plate_name="small", pipeline=default_pipeline_text())
            try:
                run_big = await conn.execute(a.artifact_id, output_dir=out, force=True)
                await wait_for_pids(first, 2)  # both workers hold a big well
                async with conn.open_event_stream() as events:
                    run_small = await conn.execute(b.artifact_id, output_dir=out, force=True)
                    started: set[str] = set()
                    while len(started) < 2:  # a well's start event is published just before it queues for a worker
                        event = await events.receive()
                        if isinstance(event, p.ProgressEvent) and event.execution_id == run_small and not event.step:
                            started.add(event.well)
                release_gate(first)
                await wait_for_pids(second, 2)  # the big plate's next two wells hold both workers again
                (small_now,), _ = await conn.status([run_small])
                assert small_now.wells_done == 2, "the small plate's wells waited behind the big plate's"
                ended = await wait_terminal(conn, [run_small])
                assert ended[run_small].state == "completed"
                (big_now,), _ = await conn.status([run_big])
                assert big_now.state == "running" and big_now.wells_done == 2
            finally:
                release_gate(first)  # a failed assertion must not leave the workers held for the fixture's stop
                release_gate(second)
            ended = await wait_terminal(conn, [run_big])
    assert ended[run_big].state == "completed" and ended[run_big].wells_done == 12
