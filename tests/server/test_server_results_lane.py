"""Results are written on the server's thread lane: never on the Trio thread, ``completed`` only once on disk,
and a hung write neither freezes the event loop nor blocks cancelling the execution."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.server import ServerAddress
from hcs_batch.server.executor import base as executor_module
from hcs_batch.server.results import write_plate_results

from .helpers import wait_terminal


class _GatedWrites:
    """Replaces ``write_plate_results``: records the writing thread and waits for ``release`` before writing."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[int] = []
        self.entered = threading.Event()

    def __call__(self, plate_dir: Path, rows: Any, manifest: Any, **options: Any) -> None:
        self.threads.append(threading.get_ident())
        self.entered.set()
        self.release.wait(30)
        write_plate_results(plate_dir, rows, manifest, **options)


async def _state(conn: Any, execution_id: str) -> str:
    records, _ = await conn.status([execution_id])
    return str(records[0].state)


async def test_results_are_written_off_the_trio_thread_before_completed(
    control_server: ServerAddress, plates: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _GatedWrites()
    monkeypatch.setattr(executor_module, "write_plate_results", gate)
    try:
        async with open_connection(control_server.control_url) as conn:
            compiled = await conn.compile(plate_path=str(plates[0]), plate_name="p", pipeline=noop_pipeline_text())
            execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path))
            with trio.fail_after(10):
                await trio.to_thread.run_sync(gate.entered.wait)
                # The write is stuck on its thread; the event loop still answers requests.
                for _ in range(3):
                    assert await _state(conn, execution_id) == "running"
                assert not (tmp_path / "p" / "manifest.json").exists()
                gate.release.set()
                records = await wait_terminal(conn, [execution_id])
    finally:
        gate.release.set()
    assert records[execution_id].state == "completed"
    assert (tmp_path / "p" / "wells.csv").is_file() and (tmp_path / "p" / "manifest.json").is_file()
    assert gate.threads and threading.get_ident() not in gate.threads


async def test_a_hung_results_write_does_not_block_cancelling(
    control_server: ServerAddress, plates: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _GatedWrites()
    monkeypatch.setattr(executor_module, "write_plate_results", gate)
    try:
        async with open_connection(control_server.control_url) as conn:
            compiled = await conn.compile(plate_path=str(plates[0]), plate_name="p", pipeline=noop_pipeline_text())
            execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path))
            with trio.fail_after(10):
                await trio.to_thread.run_sync(gate.entered.wait)
                await conn.cancel([execution_id])
                records = await wait_terminal(conn, [execution_id])  # while the write is still hung
            assert records[execution_id].state == "cancelled"
    finally:
        gate.release.set()


async def test_a_hung_plate_folder_does_not_hold_up_other_plates_results(
    control_server: ServerAddress, plates: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plate folders (input) and result files (output) are on separate lanes: a listing stuck on a dead network
    # share must not keep another plate's results from being written.
    from hcs_batch.server import control as app_module
    from hcs_batch.server.roots import Roots, list_plate_folder

    release, entered = threading.Event(), threading.Event()

    def listing(path: str, roots: Roots) -> tuple[str, list[str]]:
        if path.endswith("hung"):
            entered.set()
            release.wait(30)
        return list_plate_folder(path, roots)

    monkeypatch.setattr(app_module, "list_plate_folder", listing)
    hung = tmp_path / "hung"
    hung.mkdir()
    try:
        async with open_connection(control_server.control_url) as conn, trio.open_nursery() as nursery:
            compiled = await conn.compile(plate_path=str(plates[0]), plate_name="p", pipeline=noop_pipeline_text())
            nursery.start_soon(
                lambda: conn.compile(plate_path=str(hung), plate_name="hung", pipeline=noop_pipeline_text())
            )
            with trio.fail_after(10):
                await trio.to_thread.run_sync(entered.wait)
                # The hung listing holds the input lane; plate p executes and writes its results meanwhile.
                execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
                records = await wait_terminal(conn, [execution_id])
                assert not release.is_set()
            nursery.cancel_scope.cancel()
    finally:
        release.set()
    assert records[execution_id].state == "completed"
    assert (tmp_path / "out" / "p" / "wells.csv").is_file()
