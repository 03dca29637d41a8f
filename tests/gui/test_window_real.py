"""The real window on the real service and an embedded server, on synthetic plates (offscreen)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from PyQt6.QtCore import Qt

from guest_mode.session import ConnectionState
from guest_mode.window import PlateManagerWindow
from hcs_batch.testing.plates import make_plates
from hcs_batch.workflow.service import BatchKind, BatchState

from .conftest import buttons, free_port, guest, press_stop, serving

pytestmark = pytest.mark.slow


def make_window(qtbot, tmp_path: Path, *, plates: int = 3, wells: int = 2, size: int = 64, **kwargs):
    folders = make_plates(tmp_path / "plates", plates=plates, wells=wells, size=size, seed=1)
    kwargs.setdefault("workers", 1)
    window = PlateManagerWindow(output_dir=tmp_path / "results", **kwargs)
    qtbot.addWidget(window)
    window.add_plates(folders)
    return window


def states(window: PlateManagerWindow) -> list[str]:
    return [window.plate_model.state_text(p.name) for p in window.plates]


def when_running(window: PlateManagerWindow) -> trio.Event:
    """An event set once a repaint of the plate table shows any plate running."""
    seen = trio.Event()

    def check(*_: object) -> None:
        if "running" in states(window):
            seen.set()

    window.plate_model.dataChanged.connect(check)
    return seen


@guest
async def test_compile_then_run_reach_the_right_rows(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    async with serving(window):
        assert await window.session.wait_connection() is ConnectionState.CONNECTED
        assert buttons(window) == (True, True, False)
        summary = await window.run_batch(BatchKind.COMPILE)
        assert summary.exit_code() == 0
        assert states(window) == ["compiled"] * 3
        assert [window.plate_model.percent(p.name) for p in window.plates] == [100] * 3
        assert buttons(window) == (True, True, False)

        summary = await window.run_batch(BatchKind.RUN)
        assert summary.exit_code() == 0, window.log_pane.toPlainText()
        assert states(window) == ["completed"] * 3
        assert [window.plate_model.percent(p.name) for p in window.plates] == [100] * 3
        assert (window.batch_bar.value(), window.batch_bar.maximum()) == (3, 3)
        assert buttons(window) == (True, True, False)
        assert "connected" in window.server_status_text


@guest
async def test_a_plate_with_its_own_settings_shows_its_pipeline_in_its_row(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, plates=2, wells=1, size=32)
    own = window.plates[0]
    (own.path / "mine.toml").write_text('name = "own-noop"\n[[steps]]\nfunc = "hcs_batch.steps:noop"\n')
    (own.path / "hcs_batch.toml").write_text('pipeline = "mine.toml"\n')
    assert [window.plate_model.pipeline(p.name) for p in window.plates] == ["", ""]
    async with serving(window):
        assert await window.session.wait_connection() is ConnectionState.CONNECTED
        summary = await window.run_batch(BatchKind.COMPILE)
        assert summary.exit_code() == 0, window.log_pane.toPlainText()
        model = window.plate_model
        assert model.headerData(3, Qt.Orientation.Horizontal) == "Pipeline"
        assert [model.data(model.index(row, 3)) for row in range(2)] == ["own-noop", "nucleus_counter"]


@guest
async def test_files_the_layout_does_not_understand_are_a_warning_in_the_log(qtbot, tmp_path):
    # Issue 10: never skipped silently; compile names them and the window shows the warning.
    window = make_window(qtbot, tmp_path, plates=1)
    (window.plates[0].path / "notes.txt").write_text("not an image")
    async with serving(window):
        assert await window.session.wait_connection() is ConnectionState.CONNECTED
        summary = await window.run_batch(BatchKind.COMPILE)
    assert summary.exit_code() == 0, window.log_pane.toPlainText()
    warning = "plate_001: warning: 1 file(s) not understood by the flat layout were ignored: notes.txt"
    assert warning in window.log_pane.toPlainText().splitlines()


@guest
async def test_stop_mid_run_ends_every_row_cancelled(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, plates=3, wells=24, size=256)
    running = when_running(window)
    async with serving(window):
        await window.session.wait_connection()
        service = window.session.service
        assert service is not None
        assert window.start_batch(BatchKind.RUN)
        with trio.fail_after(30):
            await running.wait()
        window.refresh_now()
        assert buttons(window) == (False, False, True)
        await press_stop(window)  # one click
        assert not window.stop_button.isEnabled()
        with trio.fail_after(30):
            await service.batch_state.wait_value(BatchState.IDLE)
        await trio.testing.wait_all_tasks_blocked()
        window.refresh_now()
        assert states(window) == ["cancelled"] * 3
        assert buttons(window) == (True, True, False)
        # Issue 12, on a real server: the bar tells the cancelled plates apart and the status line agrees with the
        # rows at once (it said "3 running, 2/2 workers busy" 0.3 s after Stop).
        assert window.batch_bar.counts() == {"done": 0, "failed": 0, "cancelled": 3}
        assert "0 running" in window.server_status_text, window.server_status_text


@guest
async def test_closing_mid_run_stops_then_exits(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, plates=2, wells=24, size=256)
    running = when_running(window)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            window.show()
            await window.session.wait_connection()
            service = window.session.service
            assert service is not None
            window.start_batch(BatchKind.RUN)
            await running.wait()
            window.close()
            assert window.isVisible()  # the close waits for the server to confirm the stop
            await window.wait_closed()
    assert service.batch_state.value is BatchState.IDLE
    assert set(states(window)) == {"cancelled"}
    assert not window.isVisible()


def _env(tmp_path: Path) -> dict[str, str]:
    # Remembered window state goes to the test's folder, never the user's settings.
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_scripted_run_exits_0_and_saves_a_screenshot(tmp_path):
    folders = make_plates(tmp_path / "plates", plates=2, wells=2, size=64, seed=2)
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
            "--screenshot-well=A02",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "(plate plate_001, well A02)" in proc.stderr  # the picture shows the first plate's map and that well
    assert shot.stat().st_size > 10_000
    from PyQt6.QtGui import QImage

    image = QImage(str(shot))
    assert (image.width(), image.height()) == (1440, 880)  # the plate list beside the plate map and well view


def test_scripted_exit_codes_for_bad_input_and_unreachable_server(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "guest_mode", str(tmp_path / "nope"), "--run", "--exit-when-done"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path),
    )
    assert missing.returncode == 2, missing.stderr
    assert "does not exist" in missing.stderr
    folders = make_plates(tmp_path / "plates", plates=1, wells=1, size=32, seed=3)
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
        env=_env(tmp_path),
    )
    assert unreachable.returncode == 3, unreachable.stderr
    assert "unreachable" in unreachable.stderr


@guest
async def test_cancelling_serve_mid_run_still_cancels_on_the_server(qtbot, tmp_path, caplog):
    # Ctrl-C cancels the runner's scope, not the window: the service must still reach the server to cancel.
    window = make_window(qtbot, tmp_path, plates=2, wells=24, size=256)
    running = when_running(window)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            await window.session.wait_connection()
            service = window.session.service
            assert service is not None
            window.start_batch(BatchKind.RUN)
            await running.wait()
            nursery.cancel_scope.cancel()
    assert service.batch_state.value is BatchState.IDLE
    assert set(states(window)) == {"cancelled"}
    assert not [r for r in caplog.records if r.name.startswith("hcs_batch") and r.levelno >= logging.WARNING]


_PROBE = """
import sys
import guest_mode.__main__ as entry
from guest_mode.runner import GuestRunner

def run(self, main, *args):
    print("pyarrow.parquet" in sys.modules)
    return 0

GuestRunner.run = run
sys.exit(entry.main([]))
"""


def test_the_first_cold_tick_has_no_parquet_import_left_to_do(tmp_path):
    # Issue 12: the first cold run froze the Qt loop for ~340 ms because pyarrow.parquet (a C extension, holding
    # the GIL while it loads) was first imported from the server's thread lane mid-loop. A fresh interpreter
    # shows whether it is loaded before the Qt loop starts (GuestRunner.run stands in for the loop here).
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, env=_env(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True", "pyarrow.parquet is first imported after the Qt loop started"


def test_the_documented_exit_codes_are_the_codes():
    # Issue 12: guest_mode/__main__.py documented exit 1 for a cancelled batch while the code exited 130.
    import guest_mode.__main__ as entry

    doc = " ".join((entry.__doc__ or "").split())
    for code, meaning in [
        (entry.EXIT_OK, "every plate succeeded"),
        (entry.EXIT_FAILED, "some plates failed"),
        (entry.EXIT_USAGE, "bad usage or input"),
        (entry.EXIT_UNREACHABLE, "server unreachable"),
        (entry.EXIT_CANCELLED, "the batch was cancelled"),
    ]:
        assert f"{code} {meaning}" in doc, (code, meaning)
    assert entry.EXIT_CANCELLED == 130
