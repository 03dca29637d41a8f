"""Window logic against a test double of the service (no server): rows, buttons, stop, close, dialogs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QFileDialog

from guest_mode.window import PlateManagerWindow
from hcs_batch.model import PlateState

from .conftest import buttons, guest, serving
from .fakes import FakeService, fake_open_backend


@pytest.fixture(autouse=True)
def _builtin_pipeline(monkeypatch):
    monkeypatch.setattr("guest_mode.window._builtin_pipeline_text", lambda: "# built-in pipeline stand-in\n")


def make_window(qtbot, tmp_path: Path, n: int = 3, **kwargs) -> PlateManagerWindow:
    window = PlateManagerWindow(open_backend=fake_open_backend, service_factory=FakeService, **kwargs)
    qtbot.addWidget(window)
    folders = []
    for i in range(n):
        folder = tmp_path / f"plate{i}"
        folder.mkdir()
        folders.append(folder)
    window.add_plates(folders)
    return window


@guest
async def test_runs_as_guest_of_the_qt_loop(qtbot):
    from trio._core._run import GLOBAL_RUN_CONTEXT

    assert GLOBAL_RUN_CONTEXT.runner.is_guest
    fired = trio.Event()
    QTimer.singleShot(10, fired.set)  # a Qt timer wakes a Trio task: both loops are one
    with trio.fail_after(5):
        await fired.wait()


@guest
async def test_compile_reaches_compiled_rows_and_buttons_follow_state(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path)
    assert buttons(window) == (False, False, False)  # not connected yet
    async with serving(window):
        assert await window.wait_connection() == "connected"
        assert buttons(window) == (True, True, False)
        assert "0/2 workers busy" in window.server_status_text
        summary = await window.run_batch("compile")
        assert summary.counts == {"compiled": 3}
        assert [window.row_state(p.name) for p in window.plates] == ["compiled"] * 3
        assert [window.row_percent(p.name) for p in window.plates] == [100] * 3
        assert buttons(window) == (True, True, False)


@guest
async def test_run_shows_completed_failed_and_the_traceback(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeService, "fail", frozenset({"plate1"}))
    window = make_window(qtbot, tmp_path)
    async with serving(window):
        await window.wait_connection()
        summary = await window.run_batch("run")
        assert summary.exit_code() == 1
        assert window.row_state("plate0") == "completed" and window.row_percent("plate0") == 100
        assert window.row_state("plate1") == "failed"
        log = window.log_pane.toPlainText()
        assert "plate plate1 failed" in log and "ValueError: bad well" in log
        assert "run batch finished" in log  # a non-server status goes to the log, not the server line
        assert "batch finished" not in window.server_status_text
        assert (window.batch_bar.value(), window.batch_bar.maximum()) == (3, 3)


@guest
async def test_stop_is_one_click_and_every_row_ends_cancelled(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeService, "hold", True)
    window = make_window(qtbot, tmp_path)
    async with serving(window):
        await window.wait_connection()
        service = window.service
        window.run_button.click()
        # A second click before the service flipped its state must not start a second batch.
        assert not window.run_button.isEnabled() and not window.compile_button.isEnabled()
        with trio.fail_after(5):
            await service.running.wait()
        window.refresh_now()
        assert window.row_state("plate0") == "running"
        assert window.row_percent("plate0") == 25
        assert buttons(window) == (False, False, True)
        window.stop_button.click()
        with trio.fail_after(5):
            await service.batch_state.wait_value("idle")
        await trio.testing.wait_all_tasks_blocked()
        assert [window.row_state(p.name) for p in window.plates] == ["cancelled"] * 3
        assert buttons(window) == (True, True, False)


@guest
async def test_closing_mid_run_stops_the_batch_then_serve_returns(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeService, "hold", True)
    window = make_window(qtbot, tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            window.show()
            await window.wait_connection()
            service = window.service
            window.start_batch("run")
            await service.running.wait()
            window.close()  # the close event is deferred until the batch is confirmed stopped
            await window.wait_closed()
    assert service.batch_state.value == "idle"
    assert {window.host.plate_execution_states[p.name] for p in window.plates} == {PlateState.CANCELLED}
    assert not window.isVisible()


@guest
async def test_unreachable_server_shows_in_status_line_and_gui_keeps_ticking(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, server="tcp://unreachable:1", connect_timeout=0.5)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    try:
        async with serving(window):
            assert "connecting" in window.server_status_text
            assert await window.wait_connection() == "unreachable"
            assert "unreachable" in window.server_status_text
            assert buttons(window) == (False, False, False)
            assert window.connect_button.isEnabled()
    finally:
        timer.stop()
    assert len(gaps) >= 20
    assert max(gaps) < 0.2


@guest
async def test_folder_dialog_is_non_modal_and_adds_the_chosen_plate(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, n=0)
    chosen = tmp_path / "chosen_plate"
    chosen.mkdir()
    async with serving(window):
        window.add_button.click()
        await trio.testing.wait_all_tasks_blocked()
        dialog = window.findChild(QFileDialog)
        assert dialog is not None and dialog.isVisible()
        # Trio keeps running while the dialog is open (no nested modal loop).
        await trio.lowlevel.checkpoint()
        dialog.setDirectory(str(chosen))
        dialog.accept()
        await trio.testing.wait_all_tasks_blocked()
        assert [p.name for p in window.plates] == ["chosen_plate"]


def test_add_plates_refuses_a_missing_folder(qtbot, tmp_path):
    from hcs_batch.errors import PlateError

    window = PlateManagerWindow(open_backend=fake_open_backend, service_factory=FakeService)
    qtbot.addWidget(window)
    with pytest.raises(PlateError, match="does not exist"):
        window.add_plates([tmp_path / "nope"])
    assert window.plates == []


@guest
async def test_a_failing_window_slot_is_shown_in_the_log_not_raised(qtbot, tmp_path, monkeypatch):
    window = make_window(qtbot, tmp_path)
    async with serving(window):
        await window.wait_connection()

        def broken(kind: str) -> bool:
            raise RuntimeError("broken start")

        monkeypatch.setattr(window, "start_batch", broken)
        window.run_button.click()  # pytest-qt fails the test if anything reaches sys.excepthook
        assert "internal error in _on_run_clicked: RuntimeError('broken start')" in window.log_pane.toPlainText()
        assert window.compile_button.isEnabled()


@guest
async def test_chosen_pipeline_file_is_read_at_each_batch(qtbot, tmp_path):
    from hcs_batch.errors import PipelineError

    pipeline = tmp_path / "mine.toml"
    pipeline.write_text("# version 1\n")
    window = make_window(qtbot, tmp_path, pipeline_file=pipeline)
    assert window.pipeline_combo.currentText() == "mine.toml"
    async with serving(window):
        await window.wait_connection()
        await window.run_batch("compile")
        assert window.service.pipeline_text == "# version 1\n"
        pipeline.unlink()
        with pytest.raises(PipelineError, match=r"mine\.toml"):
            await window.run_batch("compile")
        assert buttons(window) == (True, True, False)  # a refused batch leaves the window usable
        window.pipeline_combo.setCurrentIndex(0)
        await window.run_batch("compile")
        assert window.service.pipeline_text == "# built-in pipeline stand-in\n"


@guest
async def test_selection_limits_the_batch_and_remove_drops_rows(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, n=3)
    async with serving(window):
        await window.wait_connection()
        window.table.selectRow(1)
        assert [p.name for p in window.selected_plates()] == ["plate1"]
        summary = await window.run_batch("compile")
        assert summary.counts == {"compiled": 1}
        assert [window.row_state(p.name) for p in window.plates] == ["idle", "compiled", "idle"]
        window.remove_button.click()
        assert [p.name for p in window.plates] == ["plate0", "plate2"]
        assert window.plate_count.text() == "2 plates"
        window.table.clearSelection()
        assert [p.name for p in window.selected_plates()] == ["plate0", "plate2"]  # none selected: all
