"""The window under Trio guest mode, hosting the real ``BatchWorkflowService`` over a real ``InMemoryBackend`` (real
time): rows, progress, buttons, Stop, close, the status line, dialogs, selection, the attached-executions table."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import trio
from PyQt6.QtCore import QModelIndex, Qt, QTimer
from PyQt6.QtWidgets import QFileDialog

from guest_mode.session import BackendOpener, ConnectionState
from guest_mode.window import PlateManagerWindow
from hcs_batch.errors import PipelineError, PlateError, ServerLostError
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.testing import open_in_memory_backend
from hcs_batch.workflow.service import BatchKind, BatchState

from .conftest import (
    InMemoryServer,
    buttons,
    free_port,
    guest,
    opener_for,
    press_stop,
    serving,
    start_executions,
)


def make_window(qtbot, tmp_path: Path, opener: BackendOpener, n: int = 3, **kwargs) -> PlateManagerWindow:
    window = PlateManagerWindow(open_backend=opener, output_dir=tmp_path / "results", **kwargs)
    qtbot.addWidget(window)
    folders = [tmp_path / f"P{i}" for i in range(n)]
    for folder in folders:
        folder.mkdir()
    window.add_plates(folders)
    return window


def states(window: PlateManagerWindow) -> list[str]:
    return [window.plate_model.state_text(p.name) for p in window.plates]


def percents(window: PlateManagerWindow) -> list[int]:
    return [window.plate_model.percent(p.name) for p in window.plates]


def when_shown(window: PlateManagerWindow, plate: str, state: str) -> trio.Event:
    """An event set once a repaint of the plate table shows ``plate`` in ``state``."""
    seen = trio.Event()

    def check(*_: object) -> None:
        if window.plate_model.state_text(plate) == state:
            seen.set()

    window.plate_model.dataChanged.connect(check)
    return seen


async def wait_batch_state(window: PlateManagerWindow, state: BatchState) -> None:
    service = window.session.service
    assert service is not None
    with trio.fail_after(30):
        await service.batch_state.wait_value(state)


@guest
async def test_runs_as_guest_of_the_qt_loop(qtbot):
    from trio._core._run import GLOBAL_RUN_CONTEXT

    assert GLOBAL_RUN_CONTEXT.runner.is_guest
    fired = trio.Event()
    QTimer.singleShot(10, fired.set)  # a Qt timer wakes a Trio task: both loops are one
    with trio.fail_after(5):
        await fired.wait()


@guest
async def test_compile_then_run_show_states_progress_and_failures(qtbot, tmp_path):
    server = InMemoryServer(
        workers=2, execute_delay=0.4, wells=("A01", "A02", "B01", "B02"), execute_failures={"P2": "ValueError: bad"}
    )
    window = make_window(qtbot, tmp_path, server.open)
    painted: list[int] = []
    window.plate_model.dataChanged.connect(lambda *_: painted.append(window.plate_model.percent("P0")))
    assert buttons(window) == (False, False, False)  # not connected yet
    async with serving(window):
        assert await window.session.wait_connection() is ConnectionState.CONNECTED
        assert buttons(window) == (True, True, False)
        if "workers busy" not in window.server_status_text:
            await window.session.wait_server_status()
        assert "0/2 workers busy" in window.server_status_text
        summary = await window.run_batch(BatchKind.COMPILE)
        assert summary.exit_code() == 0
        assert states(window) == ["compiled"] * 3
        assert percents(window) == [100] * 3
        assert buttons(window) == (True, True, False)

        summary = await window.run_batch(BatchKind.RUN)
        assert summary.exit_code() == 1
        assert states(window) == ["completed", "completed", "failed"]
        assert percents(window)[:2] == [100, 100]
        assert any(0 < p < 100 for p in painted), "progress was never painted between 0 and 100"
        assert (window.batch_bar.value(), window.batch_bar.maximum()) == (3, 3)
        failed = window.plate_model.index(2, 1)
        assert window.plate_model.data(failed, Qt.ItemDataRole.ForegroundRole).color() == Qt.GlobalColor.red
        log = window.log_pane.toPlainText()
        assert "plate P2 failed" in log and "ValueError: bad" in log
        assert "error: plate P2 failed" not in log  # shown once, with its error text
        assert "run batch finished" in log  # a non-server status goes to the log, not the server line
        assert "batch finished" not in window.server_status_text
        assert "connected" in window.server_status_text
        assert buttons(window) == (True, True, False)


@guest
async def test_stop_is_one_click_and_cancels_every_row_and_the_server_executions(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=60)
    window = make_window(qtbot, tmp_path, server.open)
    running = when_shown(window, "P2", "running")
    async with serving(window):
        await window.session.wait_connection()
        window.run_button.click()
        # A second click before the service flipped its state must not start a second batch.
        assert buttons(window) == (False, False, False)
        with trio.fail_after(10):
            await running.wait()
        assert buttons(window) == (False, False, True)
        assert window.plate_model.percent("P0") < 100
        await press_stop(window)  # one click (and one answer)
        assert not window.stop_button.isEnabled()
        await wait_batch_state(window, BatchState.IDLE)
        window.refresh_now()
        assert states(window) == ["cancelled"] * 3
        assert buttons(window) == (True, True, False)
        assert server.backend is not None
        assert server.backend.live_executions() == []
        assert server.backend.cancel_calls >= 1


@guest
async def test_closing_mid_run_waits_for_the_server_then_exits(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=60)
    window = make_window(qtbot, tmp_path, server.open)
    running = when_shown(window, "P2", "running")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            window.show()
            await window.session.wait_connection()
            assert window.start_batch(BatchKind.RUN)
            await running.wait()
            backend = server.backend
            assert backend is not None and backend.live_executions()
            window.close()
            assert window.isVisible()  # the close waits for the stop to be confirmed
            await window.wait_closed()
            assert backend.live_executions() == []
    assert states(window) == ["cancelled"] * 3
    assert not window.isVisible()


@guest
async def test_a_lost_server_fails_the_plates_and_shows_in_the_status_line(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=60)
    window = make_window(qtbot, tmp_path, server.open, n=2)
    running = when_shown(window, "P1", "running")
    async with serving(window):
        await window.session.wait_connection()
        window.start_batch(BatchKind.RUN)
        with trio.fail_after(10):
            await running.wait()
        assert server.backend is not None
        server.backend.lose(ServerLostError("the in-memory server was killed"))
        with trio.fail_after(10):  # the snapshot poller notices within its interval
            assert await window.session.wait_connection(ConnectionState.LOST) is ConnectionState.LOST
        window.refresh_now()
        assert states(window) == ["failed", "failed"]
        assert window.log_pane.toPlainText().count("the in-memory server was killed") == 2  # once per plate
        assert "lost" in window.server_status_text and "Connect" in window.server_status_text
        assert buttons(window) == (False, False, False)
        assert window.connect_button.isEnabled()
        window.connect_button.click()  # reconnect: a fresh backend
        with trio.fail_after(10):
            assert await window.session.wait_connection(ConnectionState.CONNECTED) is ConnectionState.CONNECTED
        assert server.connections == 2
        assert buttons(window) == (True, True, False)


@guest
async def test_unreachable_server_shows_in_the_status_line_and_the_gui_keeps_ticking(qtbot, tmp_path):
    # The real opener and a real socket: nothing listens on the port, the handshake times out.
    url = f"tcp://127.0.0.1:{free_port()}"
    window = PlateManagerWindow(server=url, connect_timeout=1.0, output_dir=tmp_path / "results")
    qtbot.addWidget(window)
    stamps: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start(10)
    try:
        async with serving(window):
            assert "connecting" in window.server_status_text
            assert await window.session.wait_connection() is ConnectionState.UNREACHABLE
            assert "unreachable" in window.server_status_text
            assert buttons(window) == (False, False, False)
            assert window.connect_button.isEnabled()  # the user can fix the URL and try again
    finally:
        timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) >= 30  # a 10 ms Qt timer kept firing through the 1 s handshake wait
    assert max(gaps) < 0.25


@guest
async def test_executions_started_elsewhere_get_their_own_table_and_stop_cancels_them(qtbot, tmp_path):
    async with open_in_memory_backend(execute_delay=60) as backend:
        ids = await start_executions(backend, ["A", "B"])
        window = make_window(qtbot, tmp_path, opener_for(backend), n=1)
        async with serving(window):
            await window.session.wait_connection()
            window.refresh_now()
            model = window.attached_model
            assert [(r.plate_name, r.execution_id) for r in model.rows] == [("A", ids[0]), ("B", ids[1])]
            assert window.attached_box.isVisibleTo(window)
            assert [p.name for p in window.plates] == ["P0"]  # not plates of this window
            assert buttons(window) == (True, True, True)  # Stop would cancel them
            await press_stop(window)
            assert not window.stop_button.isEnabled()  # one cancel in flight, no second
            with trio.fail_after(10):
                await window.session.wait_attached_settled()
            window.refresh_now()
            assert {model.row(i).state for i in ids} == {"cancelled"}
            state_cell = model.index(0, 1)
            assert model.data(state_cell, Qt.ItemDataRole.DisplayRole) == "cancelled"
            assert model.data(state_cell, Qt.ItemDataRole.ForegroundRole).color() == Qt.GlobalColor.darkYellow
            assert backend.cancel_log == [tuple(ids)]
            assert buttons(window) == (True, True, False)


@guest
async def test_folder_dialog_is_non_modal_and_adds_the_chosen_plate(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, InMemoryServer().open, n=0)
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


def test_add_plates_refuses_a_missing_folder_and_skips_a_listed_name(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, InMemoryServer().open, n=1)
    with pytest.raises(PlateError, match="does not exist"):
        window.add_plates([tmp_path / "nope"])
    other = tmp_path / "elsewhere" / "P0"
    other.mkdir(parents=True)
    assert window.add_plates([other, tmp_path / "P0"]) == []
    assert [p.path for p in window.plates] == [tmp_path / "P0"]
    assert f"skipped {other}: a plate named 'P0' is already listed" in window.log_pane.toPlainText()


@guest
async def test_a_failing_window_slot_is_shown_in_the_log_not_raised(qtbot, tmp_path, monkeypatch):
    window = make_window(qtbot, tmp_path, InMemoryServer().open)
    async with serving(window):
        await window.session.wait_connection()

        def broken(kind: BatchKind) -> bool:
            raise RuntimeError("broken start")

        monkeypatch.setattr(window, "start_batch", broken)
        window.run_button.click()  # pytest-qt fails the test if anything reaches sys.excepthook
        assert "internal error in _on_run_clicked: RuntimeError('broken start')" in window.log_pane.toPlainText()
        assert window.compile_button.isEnabled()


@guest
async def test_chosen_pipeline_file_is_read_at_each_batch(qtbot, tmp_path):
    pipeline = tmp_path / "mine.toml"
    pipeline.write_text("# version 1\n")
    window = make_window(qtbot, tmp_path, InMemoryServer().open, pipeline_file=pipeline)
    assert window.pipeline_combo.currentText() == "mine.toml"
    async with serving(window):
        await window.session.wait_connection()
        service = window.session.service
        assert service is not None
        await window.run_batch(BatchKind.COMPILE)
        assert service.pipeline_text == "# version 1\n"
        pipeline.unlink()
        with pytest.raises(PipelineError, match=r"mine\.toml"):
            await window.run_batch(BatchKind.COMPILE)
        assert buttons(window) == (True, True, False)  # a refused batch leaves the window usable
        window.pipeline_combo.setCurrentIndex(0)
        await window.run_batch(BatchKind.COMPILE)
        assert service.pipeline_text == default_pipeline_text()


@guest
async def test_selection_limits_the_batch_and_remove_drops_rows(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, InMemoryServer().open, n=3)
    async with serving(window):
        await window.session.wait_connection()
        window.table.selectRow(1)
        assert [p.name for p in window.selected_plates()] == ["P1"]
        summary = await window.run_batch(BatchKind.COMPILE)
        assert summary.counts == {"compiled": 1}
        assert states(window) == ["idle", "compiled", "idle"]
        window.remove_button.click()
        assert [p.name for p in window.plates] == ["P0", "P2"]
        assert window.plate_count.text() == "2 plates"
        assert window.plate_model.rowCount(QModelIndex()) == 2
        window.table.clearSelection()
        assert [p.name for p in window.selected_plates()] == ["P0", "P2"]  # none selected: all
