"""GUI tests: the real window under Trio guest mode on the Qt loop (offscreen, set by tests/conftest.py), and the
Qt-free session under plain Trio. Both talk to a real ``InMemoryBackend`` (or a real server), never to a fake.

Mark each async window test with ``@guest`` (a module-level ``pytestmark`` would lose to trio mode's automatic mark).
Never use ``qtbot.waitSignal`` inside these tests: its nested Qt loop starves Trio; await a ``trio.Event``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QAbstractButton, QMessageBox

from guest_mode.runner import run as guest_run
from guest_mode.session import BackendOpener
from guest_mode.window import PlateManagerWindow
from hcs_batch.backend import ExecutionBackend
from hcs_batch.testing import InMemoryBackend, open_in_memory_backend

guest = pytest.mark.trio(run=guest_run)


class InMemoryServer:
    """A ``BackendOpener`` that serves every connection with a fresh ``InMemoryBackend(**options)``; the latest
    one stays reachable as :attr:`backend` for assertions, and :attr:`connections` counts them."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.backend: InMemoryBackend | None = None
        self.connections = 0

    @asynccontextmanager
    async def open(
        self, server: str | None, /, *, workers: int | None = None, connect_timeout: float = 5.0
    ) -> AsyncIterator[ExecutionBackend]:
        async with open_in_memory_backend(**self.options) as backend:
            self.backend = backend
            self.connections += 1
            yield backend


class RecordingView:
    """A ``SessionView`` that records what the session told it (for session tests without Qt)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.scheduled = 0
        self.refreshed = 0
        self.updates = 0
        self.closed_calls = 0

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def log(self, text: str) -> None:
        self.lines.append(text)

    def schedule_refresh(self) -> None:
        self.scheduled += 1

    def refresh_now(self) -> None:
        self.refreshed += 1

    def update_state(self) -> None:
        self.updates += 1

    def closed(self) -> None:
        self.closed_calls += 1


def opener_for(backend: InMemoryBackend) -> BackendOpener:
    """A ``BackendOpener`` whose every connection is ``backend`` (already served by the test): what a client that
    comes and goes sees of one long-lived server."""

    @asynccontextmanager
    async def open(
        server: str | None, /, *, workers: int | None = None, connect_timeout: float = 5.0
    ) -> AsyncIterator[ExecutionBackend]:
        yield backend

    return open


async def start_executions(backend: InMemoryBackend, plates: list[str]) -> list[str]:
    """What a client that went away did: compile and submit, then nothing more. Returns the execution ids."""
    ids = []
    for plate in plates:
        compiled = await backend.compile(plate_path=f"/plates/{plate}", plate_name=plate, pipeline="p")
        ids.append(await backend.execute(compiled.artifact_id, output_dir="/out"))
    return ids


@asynccontextmanager
async def serving(window: PlateManagerWindow, *, limit: float = 60) -> AsyncIterator[trio.Nursery]:
    """Serve ``window`` in a nursery; on exit close it and wait (bounded) until serve returned."""
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            await nursery.start(window.serve)
            window.show()
            try:
                yield nursery
            finally:
                window.request_close()
                await window.wait_closed()


def free_port() -> int:
    """A loopback TCP port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def press_stop(window: PlateManagerWindow, *, confirm: bool = True) -> QMessageBox:
    """Click Stop and answer its non-modal question (Stop, or Continue when ``confirm`` is False); returns the
    question box (deleted later)."""
    window.stop_button.click()
    await trio.testing.wait_all_tasks_blocked()
    box = window.stop_dialog
    assert box is not None and box.isVisible(), "Stop did not ask"
    answer = box.findChild(QAbstractButton, "stop" if confirm else "continue")
    assert answer is not None
    answer.click()
    while window.stop_dialog is not None:  # the waiting task resumes at its next turn; nothing else runs to the end
        await trio.lowlevel.checkpoint()
    return box


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every GUI test saves and restores window state in a folder of its own, never the user's settings."""
    folder = tmp_path_factory.mktemp("settings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield folder


def buttons(window: PlateManagerWindow) -> tuple[bool, bool, bool]:
    return window.compile_button.isEnabled(), window.run_button.isEnabled(), window.stop_button.isEnabled()
