"""What the GUI calls with a malformed server address (``127.0.0.1:7700``, ``http://...``): one line naming the
expected form, in the status line and the log, no traceback (issue 12)."""

from __future__ import annotations

import pytest
import trio

from guest_mode.session import BatchSession, ConnectionState

from .conftest import RecordingView


@pytest.mark.parametrize("server", ["127.0.0.1:7700", "tcp://127.0.0.1", "http://127.0.0.1:7700"])
async def test_a_malformed_address_is_one_line_naming_the_expected_form(server: str) -> None:
    view = RecordingView()
    session = BatchSession(view, pipeline=lambda: "# a pipeline\n", server=server, connect_timeout=5)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(session.serve)
            assert await session.wait_connection() is ConnectionState.ERROR
            session.request_close()
            await session.wait_closed()
    assert "tcp://HOST:PORT" in session.server_line()
    assert "Traceback" not in view.text and any("tcp://HOST:PORT" in line for line in view.lines), view.lines
