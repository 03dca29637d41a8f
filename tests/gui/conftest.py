"""GUI tests: the real window under Trio guest mode on the Qt loop (offscreen, set by tests/conftest.py).

Mark each async test with ``@guest`` (a module-level ``pytestmark`` would lose to trio mode's automatic mark).
Never use ``qtbot.waitSignal`` inside these tests: its nested Qt loop starves Trio; await a ``trio.Event``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from guest_mode.runner import run as guest_run
from guest_mode.window import PlateManagerWindow

guest = pytest.mark.trio(run=guest_run)


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


def buttons(window: PlateManagerWindow) -> tuple[bool, bool, bool]:
    return window.compile_button.isEnabled(), window.run_button.isEnabled(), window.stop_button.isEnabled()
