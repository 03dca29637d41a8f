"""The window's frame and controls (issues 15, 14, 12): toolbar, shortcuts, docks, title, remembered state, the
Stop question, the batch bar by outcome, the status line after Stop, the unreachable server's message, the output
folder, cancelling one execution started elsewhere. Real window under guest mode, real ``InMemoryBackend``."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QKeySequence
from PyQt6.QtWidgets import QDockWidget, QFileDialog

from guest_mode.batch_bar import COLORS
from guest_mode.session import BackendOpener, ConnectionState
from guest_mode.toolbar import SHORTCUTS
from guest_mode.window import PlateManagerWindow
from hcs_batch.testing import open_in_memory_backend
from hcs_batch.workflow.service import BatchKind, BatchState, BatchSummary

from .conftest import InMemoryServer, free_port, guest, opener_for, press_stop, serving, start_executions


def make_window(qtbot, tmp_path: Path, opener: BackendOpener, n: int = 3, **kwargs) -> PlateManagerWindow:
    window = PlateManagerWindow(open_backend=opener, output_dir=tmp_path / "results", **kwargs)
    qtbot.addWidget(window)
    folders = [tmp_path / f"P{i}" for i in range(n)]
    for folder in folders:
        folder.mkdir(exist_ok=True)
    window.add_plates(folders)
    return window


def states(window: PlateManagerWindow) -> list[str]:
    return [window.plate_model.state_text(p.name) for p in window.plates]


def all_shown(window: PlateManagerWindow, state: str) -> trio.Event:
    """Set once a repaint of the plate table shows every plate in ``state``."""
    seen = trio.Event()

    def check(*_: object) -> None:
        if set(states(window)) == {state}:
            seen.set()

    window.plate_model.dataChanged.connect(check)
    return seen


async def status_containing(window: PlateManagerWindow, text: str) -> str:
    with trio.fail_after(10):
        while text not in window.server_status_text:
            await window.session.wait_server_status()
    return window.server_status_text


def test_toolbar_actions_have_icons_shortcuts_and_the_docks_are_laid_out(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, InMemoryServer().open, server=None)
    actions = window.actions_
    for action in (actions.add, actions.remove, actions.compile, actions.run, actions.pause, actions.stop):
        assert not action.icon().isNull(), action.text()
    assert actions.run.shortcut() == QKeySequence("Ctrl+R")
    assert actions.stop.shortcut() == QKeySequence("Ctrl+.")
    assert actions.compile.shortcut() == QKeySequence(SHORTCUTS["compile"])
    assert "Ctrl+R" in actions.run.toolTip()
    docks = {dock.objectName(): dock.windowTitle() for dock in window.findChildren(QDockWidget)}
    assert docks == {
        "plates_dock": "Plates",
        "plate_map_dock": "Plate map",
        "well_view_dock": "Well view",
        "log_dock": "Log",
    }
    area = window.dockWidgetArea
    assert area(window.log_dock) == Qt.DockWidgetArea.BottomDockWidgetArea
    assert area(window.plates_dock) == area(window.plate_map_dock) == area(window.well_view_dock)
    window.show()
    plates, plate_map, well = (d.geometry() for d in (window.plates_dock, window.plate_map_dock, window.well_view_dock))
    assert plates.right() < plate_map.left() and plate_map.right() < well.left()  # side by side, in this order
    assert window.log_dock.geometry().top() > plates.bottom()
    assert window.windowTitle() == "hcs-batch plate manager — embedded local server"


@guest
async def test_ctrl_r_runs_and_the_title_names_the_server(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=0.05)
    window = make_window(qtbot, tmp_path, server.open, server="tcp://127.0.0.1:7700")
    assert "tcp://127.0.0.1:7700" in window.windowTitle()
    done = all_shown(window, "completed")
    async with serving(window):
        await window.session.wait_connection()
        window.activateWindow()
        qtbot.keyClick(window.table, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        assert window.session.busy  # the shortcut started the batch at once
        with trio.fail_after(20):
            await done.wait()


def test_window_state_is_remembered_between_sessions(qtbot, tmp_path, private_settings):
    first = make_window(qtbot, tmp_path, InMemoryServer().open, n=0)
    first.show()
    first.resize(640, 480)  # within the offscreen screen (restoreGeometry keeps a window on screen)
    first.well_view_dock.hide()
    size = (first.width(), first.height())  # the docks' minimum sizes may have widened it
    assert size != (1440, 880)
    first.close()  # not served: closes at once and saves its state
    assert list(private_settings.rglob("*.ini")), "nothing was saved in the test's settings folder"
    second = make_window(qtbot, tmp_path, InMemoryServer().open, n=0)
    assert second.height() == size[1]  # (restoreGeometry keeps the width within the 800-pixel offscreen screen)
    assert second.well_view_dock.isHidden()
    assert not second.plate_map_dock.isHidden()
    fresh = make_window(qtbot, tmp_path, InMemoryServer().open, n=0, remember_state=False)
    assert (fresh.width(), fresh.height()) == (1440, 880)  # what --screenshot uses: never the last session's


@guest
async def test_stop_asks_without_freezing_trio_and_continue_keeps_the_batch(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=60)
    window = make_window(qtbot, tmp_path, server.open)
    running = all_shown(window, "running")
    async with serving(window):
        await window.session.wait_connection()
        window.start_batch(BatchKind.RUN)
        with trio.fail_after(10):
            await running.wait()
        window.stop_button.click()
        await trio.testing.wait_all_tasks_blocked()
        box = window.stop_dialog
        assert (box is not None and box.isVisible() and not box.isModal()) or box.windowModality() is not None
        assert "3 of 3 plates are not finished" in box.text()
        # Trio runs on while the question is open: a server round trip completes.
        assert server.backend is not None
        with trio.fail_after(5):
            await server.backend.server_info()
        window.stop_button.click()  # a second click while asking asks nothing more
        assert window.stop_dialog is box
        box.findChild(type(box.buttons()[0]), "continue").click()
        while window.stop_dialog is not None:
            await trio.lowlevel.checkpoint()
        assert window.session.batch_state is BatchState.RUNNING
        assert len(server.backend.live_executions()) == 3
        await press_stop(window)
        service = window.session.service
        assert service is not None
        with trio.fail_after(10):
            await service.batch_state.wait_value(BatchState.IDLE)
        window.refresh_now()
        assert states(window) == ["cancelled"] * 3


@guest
async def test_batch_bar_tells_done_failed_and_cancelled_apart(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=0.05, execute_failures={"P1": "ValueError: bad", "P2": "ValueError: bad"})
    window = make_window(qtbot, tmp_path, server.open)
    bar = window.batch_bar
    async with serving(window):
        await window.session.wait_connection()
        await window.run_batch(BatchKind.RUN)
        assert (bar.value(), bar.maximum()) == (3, 3)
        assert bar.counts() == {"done": 1, "failed": 2, "cancelled": 0}
        assert [name for name, _ in bar.segments()] == ["done", "failed"]
        assert "1 done" in bar.text() and "2 failed" in bar.text()

        server.options.update(execute_delay=60, execute_failures={})
        assert server.backend is not None
        server.backend.execute_delay = 60
        server.backend.execute_failures = {}
        running = all_shown(window, "running")
        window.start_batch(BatchKind.RUN)
        with trio.fail_after(10):
            await running.wait()
        await press_stop(window)
        service = window.session.service
        assert service is not None
        with trio.fail_after(10):
            await service.batch_state.wait_value(BatchState.IDLE)
        window.refresh_now()
        assert bar.counts() == {"done": 0, "failed": 0, "cancelled": 3}
        assert bar.segments() == [("cancelled", 1.0)]
        bar.resize(300, 24)
        image = bar.grab().toImage()
        middle = image.pixelColor(150, 3)  # above the text
        assert middle == COLORS["cancelled"], middle.name()
        assert middle != bar.palette().highlight().color()  # never the full (blue) bar of a success


@guest
async def test_after_stop_the_status_line_no_longer_counts_the_batch_running(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=60, workers=4)
    window = make_window(qtbot, tmp_path, server.open)
    summaries: list[BatchSummary] = []
    ended = trio.Event()

    async def run() -> None:
        summaries.append(await window.run_batch(BatchKind.RUN))
        ended.set()

    async with serving(window) as nursery:
        await window.session.wait_connection()
        nursery.start_soon(run)
        assert "3 running" in await status_containing(window, "3 running")
        await press_stop(window)
        with trio.fail_after(10):
            await ended.wait()
        # The moment the batch returns, rows and status line agree.
        window.refresh_now()
        assert states(window) == ["cancelled"] * 3
        assert "0 running" in window.server_status_text, window.server_status_text
        assert "0/4 workers busy" in window.server_status_text


@guest
async def test_unreachable_server_message_is_whole_in_the_status_bar_and_in_the_log(qtbot, tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    window = PlateManagerWindow(server=url, connect_timeout=0.5, output_dir=tmp_path / "results")
    qtbot.addWidget(window)
    window.resize(700, 500)  # narrower than the message
    async with serving(window):
        assert await window.session.wait_connection() is ConnectionState.UNREACHABLE
        detail = window.server_status_text.split(" · ", 2)[-1]
        assert len(detail) > 30 and url in window.server_status_text
        assert f"error: {detail}" in window.log_pane.toPlainText()
        label = window.server_label
        assert label.wordWrap() and label.toolTip() == label.text()
        status_bar = window.statusBar()
        assert status_bar is not None
        layout = status_bar.layout()
        assert layout is not None
        layout.activate()
        layout.activate()  # the label asked for its lines at its final width
        # The label asks for every line of the wrapped message at its width (nothing is elided).
        assert label.minimumHeight() >= label.heightForWidth(label.width()) > label.fontMetrics().height()
        assert label.width() < label.fontMetrics().horizontalAdvance(label.text())  # it did need wrapping


@guest
async def test_output_folder_chooser_sets_where_results_go_and_the_window_says_so(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=0.05)
    window = make_window(qtbot, tmp_path, server.open, n=1)
    chosen = tmp_path / "my results"
    chosen.mkdir()
    async with serving(window):
        await window.session.wait_connection()
        assert str(tmp_path / "results") in window.output_label.text()
        window.output_button.click()
        with trio.fail_after(10):  # the connection's heartbeats keep tasks waking: wait for the dialog itself
            while (dialog := window.findChild(QFileDialog)) is None or not dialog.isVisible():
                await trio.lowlevel.checkpoint()
        dialog.setDirectory(str(chosen))
        dialog.accept()
        with trio.fail_after(10):
            while window.session.output_dir != chosen:
                await trio.lowlevel.checkpoint()
        assert window.session.output_dir == chosen
        assert window.output_label.text() == f"Results: {chosen}"
        service = window.session.service
        assert service is not None and service.output_dir == chosen
        await window.run_batch(BatchKind.RUN)
        assert server.backend is not None
        assert [r.output for r in server.backend.records()] == [f"{chosen}/P0"]
        assert f"results of this batch: {chosen}" in window.log_pane.toPlainText()


@guest
async def test_cancel_one_execution_started_elsewhere_from_its_row(qtbot, tmp_path):
    async with open_in_memory_backend(execute_delay=60) as backend:
        ids = await start_executions(backend, ["A", "B"])
        window = make_window(qtbot, tmp_path, opener_for(backend), n=1)
        async with serving(window):
            await window.session.wait_connection()
            window.refresh_now()
            assert [r.execution_id for r in window.attached_model.rows] == ids
            menu = window.plates_panel.attached_menu(0)
            (action,) = menu.actions()
            assert action.isEnabled() and "A" in action.text()
            action.trigger()
            await trio.testing.wait_all_tasks_blocked()
            assert backend.cancel_log == [(ids[0],)]  # that one only
            assert backend.live_executions() == [ids[1]]
            window.refresh_now()
            assert not window.plates_panel.attached_menu(0).actions()[0].isEnabled()  # A is no longer live
            assert window.plates_panel.attached_menu(1).actions()[0].isEnabled()


@guest
async def test_pause_resume_button_and_cancel_one_plate_from_its_row(qtbot, tmp_path):
    server = InMemoryServer(execute_delay=60, wells=("A01", "A02"))
    window = make_window(qtbot, tmp_path, server.open)
    running = all_shown(window, "running")
    async with serving(window):
        await window.session.wait_connection()
        assert not window.pause_button.isEnabled()  # nothing to pause yet
        window.start_batch(BatchKind.RUN)
        with trio.fail_after(10):
            await running.wait()
        service = window.session.service
        assert service is not None and window.pause_button.isEnabled()
        window.pause_button.click()
        with trio.fail_after(10):
            await service.paused.wait_value(True)
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert window.actions_.pause.text() == "Resume"
        window.pause_button.click()
        with trio.fail_after(10):
            await service.paused.wait_value(False)
        menu = window.plates_panel.plate_menu(1)
        (action,) = menu.actions()
        assert action.isEnabled() and action.text() == "Cancel plate P1"
        action.trigger()
        with trio.fail_after(10):
            while window.session.plate_state("P1").value != "cancelled":
                await trio.lowlevel.checkpoint()
        assert server.backend is not None
        assert len(server.backend.live_executions()) == 2  # the other two go on
        assert not window.plates_panel.plate_menu(1).actions()[0].isEnabled()
        await press_stop(window)


def test_server_field_offers_the_servers_of_this_machine(qtbot, tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("HCS_BATCH_RUNTIME_DIR", str(tmp_path / "runtime"))
    window = make_window(qtbot, tmp_path, InMemoryServer().open, n=0)
    assert window.server_field.refresh() == {} and window.server_field.offered() == []
    with subprocess.Popen(
        [sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the server says where it listens once it has registered
                if "listening on" in line:
                    break
            url = line.split("listening on", 1)[1].split()[0]
            window.server_field.setEditText("typed")
            assert list(window.server_field.refresh()) == [url]
            assert window.server_field.offered() == [url]
            assert window.server_field.currentText() == "typed"  # what the user typed stays
            window.server_field.setCurrentIndex(0)
            assert window.server_field.url() == url
        finally:
            proc.terminate()
            proc.wait(timeout=30)
