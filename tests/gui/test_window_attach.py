"""Reattach in the GUI: executions of a client that went away show on connect, are followed live, and Stop
cancels them. A real ``hcs-batch serve`` process, a real ``hcs-batch run`` client process killed with SIGKILL."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from guest_mode.session import ConnectionState
from guest_mode.window import PlateManagerWindow
from hcs_batch.client import open_connection
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import GATE_PIPELINE, Server, env, gated_server, wait_for_pids
from ..support.slow_steps import release_gate
from .conftest import buttons, guest, press_stop, serving

pytestmark = pytest.mark.slow


@pytest.fixture
async def server(gate_dir: Path) -> AsyncIterator[Server]:
    async with gated_server(gate_dir, stop_cleanly=True) as srv:
        yield srv


async def start_orphans(server: Server, gate_dir: Path, tmp_path: Path, plates: int) -> None:
    """``hcs-batch run`` against ``server``; once every plate's well is held at the gate, SIGKILL the client."""
    folders = make_plates(tmp_path / "plates", plates=plates, wells=1, sites=1, channels=1, size=16, seed=9)
    pipeline = tmp_path / "gated.toml"
    pipeline.write_text(GATE_PIPELINE.format(gate_dir=gate_dir))
    cmd = [sys.executable, "-m", "hcs_batch", "run", *map(str, folders), "--server", server.url]
    cmd += ["--pipeline", str(pipeline), "--output", str(tmp_path / "out")]
    async with trio.open_nursery() as nursery:
        run = functools.partial(
            trio.run_process, cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        client = await nursery.start(run)
        await wait_for_pids(gate_dir, plates)
        client.send_signal(signal.SIGKILL)
    assert client.returncode == -signal.SIGKILL


async def server_counts(url: str) -> tuple[int, int]:
    async with open_connection(url) as conn:
        info = await conn.server_info()
    return info.queued, info.running


def make_window(qtbot, tmp_path: Path, url: str) -> PlateManagerWindow:
    window = PlateManagerWindow(server=url, output_dir=tmp_path / "results")
    qtbot.addWidget(window)
    return window


def shown(window: PlateManagerWindow) -> dict[str, tuple[str, str, int]]:
    """What the attached section shows: execution id -> (plate, state text, progress percent)."""
    window.refresh_now()
    model = window.attached_model
    shown: dict[str, tuple[str, str, int]] = {}
    for row in range(model.rowCount()):
        cells = [model.data(model.index(row, column)) for column in range(4)]
        shown[cells[3]] = (cells[0], cells[1], cells[2])
    return shown


@guest
async def test_window_shows_executions_of_a_killed_client_and_follows_them_to_completed(
    qtbot, tmp_path, server, gate_dir
):
    with trio.fail_after(90):
        await start_orphans(server, gate_dir, tmp_path, plates=2)
        window = make_window(qtbot, tmp_path, server.url)
        async with serving(window):
            assert await window.session.wait_connection() is ConnectionState.CONNECTED
            rows = shown(window)
            assert sorted(plate for plate, _, _ in rows.values()) == ["plate_001", "plate_002"]
            assert {state for _, state, _ in rows.values()} == {"running"}
            assert {percent for _, _, percent in rows.values()} == {0}
            assert window.attached_box.isVisibleTo(window)
            assert window.plates == []  # not plates of this window: Run and Compile never act on them
            assert buttons(window) == (False, False, True)  # Stop would cancel them

            release_gate(gate_dir)
            await window.session.wait_attached_settled()
            rows_after = shown(window)
            assert set(rows_after) == set(rows)
            assert {(state, percent) for _, state, percent in rows_after.values()} == {("completed", 100)}
            assert buttons(window) == (False, False, False)
            assert await server_counts(server.url) == (0, 0)
    for plate in ("plate_001", "plate_002"):
        assert (tmp_path / "out" / plate / "wells.csv").exists()


@guest
async def test_stop_cancels_the_attached_executions_on_the_server(qtbot, tmp_path, server, gate_dir):
    with trio.fail_after(90):
        await start_orphans(server, gate_dir, tmp_path, plates=2)
        assert await server_counts(server.url) == (0, 2)
        window = make_window(qtbot, tmp_path, server.url)
        async with serving(window):
            await window.session.wait_connection()
            assert {state for _, state, _ in shown(window).values()} == {"running"}
            await press_stop(window)  # no batch of its own: Stop cancels the executions started elsewhere
            assert not window.stop_button.isEnabled()  # one cancel in flight, no second
            await window.session.wait_attached_settled()
            assert {state for _, state, _ in shown(window).values()} == {"cancelled"}
            assert await server_counts(server.url) == (0, 0)
            assert "cancel asked for 2 executions" in window.log_pane.toPlainText()


@guest
async def test_nothing_live_on_the_server_shows_no_attached_section(qtbot, tmp_path, server, gate_dir):
    with trio.fail_after(60):
        window = make_window(qtbot, tmp_path, server.url)
        async with serving(window):
            assert await window.session.wait_connection() is ConnectionState.CONNECTED
            await window.session.wait_attached_settled()
            assert shown(window) == {}
            assert not window.attached_box.isVisibleTo(window)
            assert not window.stop_button.isEnabled()


@guest
async def test_connect_lists_again_and_attaches_to_what_started_meanwhile(qtbot, tmp_path, server, gate_dir):
    with trio.fail_after(90):
        window = make_window(qtbot, tmp_path, server.url)
        async with serving(window):
            assert await window.session.wait_connection() is ConnectionState.CONNECTED
            assert shown(window) == {}
            await start_orphans(server, gate_dir, tmp_path, plates=1)
            assert shown(window) == {}  # only on connect: the window does not adopt executions as they start
            window.connect_button.click()
            await window.session.wait_connection(ConnectionState.CONNECTING)
            assert await window.session.wait_connection() is ConnectionState.CONNECTED
            assert [(plate, state) for plate, state, _ in shown(window).values()] == [("plate_001", "running")]
            release_gate(gate_dir)
            await window.session.wait_attached_settled()
            assert [state for _, state, _ in shown(window).values()] == ["completed"]
