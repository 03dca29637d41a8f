"""The real window on the real service and an embedded server, on synthetic plates (offscreen)."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from guest_mode.window import PlateManagerWindow
from hcs_batch.model import PlateState

from .conftest import buttons, free_port, guest, serving

service_module = pytest.importorskip("hcs_batch.workflow.service", reason="BatchWorkflowService has not landed yet")
pytest.importorskip("hcs_batch.connect", reason="the embedded server helper has not landed yet")
synth = pytest.importorskip("hcs_batch.testing.plates")

pytestmark = pytest.mark.slow


def make_window(qtbot, tmp_path: Path, *, plates: int = 3, wells: int = 2, size: int = 64, **kwargs):
    folders = synth.make_plates(tmp_path / "plates", plates=plates, wells=wells, size=size, seed=1)
    kwargs.setdefault("workers", 1)
    window = PlateManagerWindow(output_dir=tmp_path / "results", **kwargs)
    qtbot.addWidget(window)
    window.add_plates(folders)
    return window


def states(window: PlateManagerWindow) -> list[str]:
    return [window.row_state(p.name) for p in window.plates]


def watch_state(window: PlateManagerWindow, wanted: PlateState) -> trio.Event:
    """An event set the first time any plate reaches ``wanted`` (seen through the host callback)."""
    seen = trio.Event()
    original = window.host.emit_orchestrator_state

    def spy(plate: str, state: PlateState) -> None:
        original(plate, state)
        if state == wanted:
            seen.set()

    window.host.emit_orchestrator_state = spy  # type: ignore[method-assign]
    return seen


@guest
async def test_compile_then_run_reach_the_right_rows(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    async with serving(window):
        assert await window.wait_connection() == "connected"
        assert buttons(window) == (True, True, False)
        summary = await window.run_batch("compile")
        assert summary.exit_code() == 0
        assert states(window) == ["compiled"] * 3
        assert [window.row_percent(p.name) for p in window.plates] == [100] * 3
        assert buttons(window) == (True, True, False)

        summary = await window.run_batch("run")
        assert summary.exit_code() == 0, window.log_pane.toPlainText()
        assert states(window) == ["completed"] * 3
        assert [window.row_percent(p.name) for p in window.plates] == [100] * 3
        assert (window.batch_bar.value(), window.batch_bar.maximum()) == (3, 3)
        assert buttons(window) == (True, True, False)
        assert "connected" in window.server_status_text


@guest
async def test_stop_mid_run_ends_every_row_cancelled(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, plates=3, wells=24, size=256)
    running = watch_state(window, PlateState.RUNNING)
    async with serving(window):
        await window.wait_connection()
        service = window.service
        assert window.start_batch("run")
        with trio.fail_after(30):
            await running.wait()
        window.refresh_now()
        assert buttons(window) == (False, False, True)
        window.stop_button.click()  # one click
        assert not window.stop_button.isEnabled()
        with trio.fail_after(30):
            await service.batch_state.wait_value(lambda v: v == "idle")
        await trio.testing.wait_all_tasks_blocked()
        window.refresh_now()
        assert states(window) == ["cancelled"] * 3
        assert buttons(window) == (True, True, False)


@guest
async def test_closing_mid_run_stops_then_exits(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, plates=2, wells=24, size=256)
    running = watch_state(window, PlateState.RUNNING)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            window.show()
            await window.wait_connection()
            service = window.service
            window.start_batch("run")
            await running.wait()
            window.close()
            assert window.isVisible()  # the close waits for the server to confirm the stop
            await window.wait_closed()
    assert service.batch_state.value == "idle"
    assert {window.host.plate_execution_states[p.name] for p in window.plates} == {PlateState.CANCELLED}
    assert not window.isVisible()


@guest
async def test_unreachable_server_url_shows_in_the_status_line_without_freezing(qtbot, tmp_path):
    from PyQt6.QtCore import QTimer

    window = make_window(qtbot, tmp_path, plates=1, server=f"tcp://127.0.0.1:{free_port()}", connect_timeout=1.0)
    stamps: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start(10)
    try:
        async with serving(window):
            assert "connecting" in window.server_status_text
            assert await window.wait_connection() == "unreachable"
            assert "unreachable" in window.server_status_text
            assert buttons(window) == (False, False, False)
            assert window.connect_button.isEnabled()  # the user can fix the URL and try again
    finally:
        timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) >= 30  # a 10 ms Qt timer kept firing through the 1 s handshake wait
    assert max(gaps) < 0.25


def _env() -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


def test_scripted_run_exits_0_and_saves_a_screenshot(tmp_path):
    folders = synth.make_plates(tmp_path / "plates", plates=2, wells=2, size=64, seed=2)
    shot = tmp_path / "out.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "guest_mode",
            *map(str, folders),
            "--run",
            "--exit-when-done",
            "--workers=1",
            f"--output={tmp_path / 'results'}",
            f"--screenshot={shot}",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert shot.stat().st_size > 10_000
    from PyQt6.QtGui import QImage

    image = QImage(str(shot))
    assert (image.width(), image.height()) == (900, 620)


def test_scripted_exit_codes_for_bad_input_and_unreachable_server(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "guest_mode", str(tmp_path / "nope"), "--run", "--exit-when-done"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert missing.returncode == 2, missing.stderr
    assert "does not exist" in missing.stderr
    folders = synth.make_plates(tmp_path / "plates", plates=1, wells=1, size=32, seed=3)
    unreachable = subprocess.run(
        [
            sys.executable,
            "-m",
            "guest_mode",
            str(folders[0]),
            "--compile",
            "--exit-when-done",
            f"--server=tcp://127.0.0.1:{free_port()}",
            "--connect-timeout=0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert unreachable.returncode == 3, unreachable.stderr
    assert "unreachable" in unreachable.stderr


@guest
async def test_cancelling_serve_mid_run_still_cancels_on_the_server(qtbot, tmp_path, caplog):
    # Ctrl-C cancels the runner's scope, not the window: the service must still reach the server to cancel.
    window = make_window(qtbot, tmp_path, plates=2, wells=24, size=256)
    running = watch_state(window, PlateState.RUNNING)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            await window.wait_connection()
            service = window.service
            window.start_batch("run")
            await running.wait()
            nursery.cancel_scope.cancel()
    assert service.batch_state.value == "idle"
    assert {window.host.plate_execution_states[p.name] for p in window.plates} == {PlateState.CANCELLED}
    assert not [r for r in caplog.records if r.name.startswith("hcs_batch") and r.levelno >= logging.WARNING]
