"""The window hosting the real ``BatchWorkflowService`` over the in-memory execution server (real time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from guest_mode.window import PlateManagerWindow
from hcs_batch.errors import ServerLostError
from hcs_batch.model import PlateState
from hcs_batch.testing import InMemoryBackend, open_in_memory_backend

from .conftest import buttons, guest, serving


@pytest.fixture(autouse=True)
def _builtin_pipeline(monkeypatch):
    monkeypatch.setattr("guest_mode.window._builtin_pipeline_text", lambda: "# built-in pipeline stand-in\n")


class Server:
    """Opens an in-memory backend for the window and keeps it for assertions."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.backend: InMemoryBackend | None = None

    @asynccontextmanager
    async def open(
        self, server: str | None, *, workers: int | None = None, connect_timeout: float = 5.0
    ) -> AsyncIterator[InMemoryBackend]:
        async with open_in_memory_backend(**self.options) as backend:
            self.backend = backend
            yield backend


def make_window(qtbot, tmp_path: Path, server: Server, n: int = 3) -> PlateManagerWindow:
    window = PlateManagerWindow(open_backend=server.open, output_dir=tmp_path / "results")
    qtbot.addWidget(window)
    folders = [tmp_path / f"P{i}" for i in range(n)]
    for folder in folders:
        folder.mkdir()
    window.add_plates(folders)
    return window


def states(window: PlateManagerWindow) -> list[str]:
    return [window.row_state(p.name) for p in window.plates]


def spy_rows(window: PlateManagerWindow) -> tuple[trio.Event, list[dict[str, int]]]:
    """Repaint on every row update; record the percents seen; the event is set once a plate runs."""
    running = trio.Event()
    seen: list[dict[str, int]] = []
    host = window.host
    original_state, original_items = host.emit_orchestrator_state, host.update_item_list

    def on_state(plate: str, state: PlateState) -> None:
        original_state(plate, state)
        if state == PlateState.RUNNING:
            running.set()

    def on_items() -> None:
        original_items()
        window.refresh_now()
        seen.append({p.name: window.row_percent(p.name) for p in window.plates})

    host.emit_orchestrator_state = on_state  # type: ignore[method-assign]
    host.update_item_list = on_items  # type: ignore[method-assign]
    return running, seen


@guest
async def test_compile_then_run_show_states_progress_and_failures(qtbot, tmp_path):
    server = Server(execute_delay=0.4, wells=("A01", "A02", "B01", "B02"), execute_failures={"P2": "ValueError: bad"})
    window = make_window(qtbot, tmp_path, server)
    _running, seen = spy_rows(window)
    async with serving(window):
        assert await window.wait_connection() == "connected"
        assert buttons(window) == (True, True, False)
        summary = await window.run_batch("compile")
        assert summary.exit_code() == 0
        assert states(window) == ["compiled"] * 3
        assert [window.row_percent(p.name) for p in window.plates] == [100] * 3

        summary = await window.run_batch("run")
        assert summary.exit_code() == 1
        assert states(window) == ["completed", "completed", "failed"]
        assert window.row_percent("P0") == 100 and window.row_percent("P1") == 100
        assert any(0 < row["P0"] < 100 for row in seen), "progress was never shown between 0 and 100"
        assert (window.batch_bar.value(), window.batch_bar.maximum()) == (3, 3)
        assert "plate P2 failed" in window.log_pane.toPlainText()
        assert "ValueError: bad" in window.log_pane.toPlainText()
        assert buttons(window) == (True, True, False)
        assert "connected" in window.server_status_text


@guest
async def test_stop_mid_run_cancels_every_row_and_the_server_executions(qtbot, tmp_path):
    server = Server(execute_delay=60)
    window = make_window(qtbot, tmp_path, server)
    running, _seen = spy_rows(window)
    async with serving(window):
        await window.wait_connection()
        service = window.service
        assert window.start_batch("run")
        assert buttons(window) == (False, False, False)  # starting: no second batch from a double click
        with trio.fail_after(10):
            await running.wait()
        assert buttons(window) == (False, False, True)
        window.stop_button.click()  # one click
        assert not window.stop_button.isEnabled()
        with trio.fail_after(10):
            await service.batch_state.wait_value(lambda v: v == "idle")
        window.refresh_now()
        assert states(window) == ["cancelled"] * 3
        assert buttons(window) == (True, True, False)
        assert server.backend is not None
        assert server.backend.live_executions() == []
        assert server.backend.cancel_calls >= 1


@guest
async def test_closing_mid_run_waits_for_the_server_then_exits(qtbot, tmp_path):
    server = Server(execute_delay=60)
    window = make_window(qtbot, tmp_path, server)
    running, _seen = spy_rows(window)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            window.show()
            await window.wait_connection()
            window.start_batch("run")
            await running.wait()
            backend = server.backend
            assert backend is not None and backend.live_executions()
            window.close()
            assert window.isVisible()  # the close waits for the stop to be confirmed
            await window.wait_closed()
            assert backend.live_executions() == []
    assert {window.host.plate_execution_states[p.name] for p in window.plates} == {PlateState.CANCELLED}
    assert not window.isVisible()


@guest
async def test_a_lost_server_fails_the_plates_and_shows_in_the_status_line(qtbot, tmp_path):
    server = Server(execute_delay=60)
    window = make_window(qtbot, tmp_path, server, n=2)
    running, _seen = spy_rows(window)
    async with serving(window):
        await window.wait_connection()
        window.start_batch("run")
        with trio.fail_after(10):
            await running.wait()
        assert server.backend is not None
        server.backend.lose(ServerLostError("the in-memory server was killed"))
        with trio.fail_after(30):
            while window.service is not None and window.batch_state() != "idle":
                await window.service.batch_state.wait_value(lambda v: v == "idle")
        await trio.testing.wait_all_tasks_blocked()
        window.refresh_now()
        assert states(window) == ["failed", "failed"]
        assert window.log_pane.toPlainText().count("the in-memory server was killed") == 2  # once per plate
        with trio.fail_after(10):  # the snapshot poller notices within its interval
            assert await window.wait_connection("lost") == "lost"
        assert "lost" in window.server_status_text and "Connect" in window.server_status_text
        assert buttons(window) == (False, False, False)
        assert window.connect_button.isEnabled()
        window.connect_button.click()  # reconnect: a fresh backend
        with trio.fail_after(10):
            assert await window.wait_connection("connected") == "connected"
        assert buttons(window) == (True, True, False)
