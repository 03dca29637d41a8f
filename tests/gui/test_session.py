"""``BatchSession`` without Qt: the connection life cycle, batch control and the close protocol, driven as the window
drives them, against the real service over a real ``InMemoryBackend`` in virtual time (and a real unreachable
socket)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from guest_mode.session import BackendOpener, BatchSession, ConnectionState
from hcs_batch.errors import (
    BatchAlreadyRunningError,
    InputError,
    PipelineError,
    ServerLostError,
    ServerUnreachableError,
)
from hcs_batch.model import PlateRef, PlateState
from hcs_batch.testing import InMemoryBackend, open_in_memory_backend
from hcs_batch.workflow.service import BatchKind, BatchState

from .conftest import InMemoryServer, RecordingView, free_port, opener_for, start_executions

PIPELINE = "# a pipeline\n"


def plates(*names: str) -> list[PlateRef]:
    return [PlateRef(name=name, path=Path("/plates") / name) for name in names]


def make_session(
    opener: BackendOpener, *, pipeline: Callable[[], str] = lambda: PIPELINE
) -> tuple[BatchSession, RecordingView]:
    view = RecordingView()
    return BatchSession(view, pipeline=pipeline, open_backend=opener), view


@asynccontextmanager
async def served(session: BatchSession) -> AsyncIterator[trio.Nursery]:
    """Serve ``session``; on exit close it and wait until serve returned."""
    async with trio.open_nursery() as nursery:
        await nursery.start(session.serve)
        try:
            yield nursery
        finally:
            session.request_close()
            await session.wait_closed()


async def start_running(session: BatchSession, server: InMemoryServer, batch: list[PlateRef]) -> InMemoryBackend:
    """Connect ``session``, start a run batch of ``batch`` and return the backend once every plate executes."""
    await session.wait_connection()
    assert session.start_batch(BatchKind.RUN, batch)
    await wait_state(session, BatchState.RUNNING)
    await trio.testing.wait_all_tasks_blocked()
    backend = server.backend
    assert backend is not None
    assert len(backend.live_executions()) == len(batch)
    return backend


async def wait_state(session: BatchSession, state: BatchState) -> None:
    service = session.service
    assert service is not None
    await service.batch_state.wait_value(state)


async def test_connect_shows_the_server_line_and_allows_a_batch(autojump_clock):
    server = InMemoryServer(workers=2)
    session, view = make_session(server.open)
    assert session.server_line() == "embedded local server · server connecting"
    assert not session.can_start
    async with served(session):
        assert await session.wait_connection() is ConnectionState.CONNECTED
        if "workers busy" not in session.server_line():
            await session.wait_server_status()
        expected = "embedded local server · server connected: 0 queued, 0 running, 0/2 workers busy"
        assert session.server_line() == expected
        assert session.can_start and session.can_connect and not session.can_stop
        assert session.attached_rows() == []
    assert view.closed_calls == 1 and session.may_close


async def test_compile_then_run_show_states_progress_and_each_failure_once(autojump_clock):
    server = InMemoryServer(execute_delay=4.0, execute_failures={"P2": "ValueError: bad well"})
    session, view = make_session(server.open)
    batch = plates("P0", "P1", "P2")
    async with served(session):
        await session.wait_connection()
        summary = await session.run_batch(BatchKind.COMPILE, batch)
        assert summary.exit_code() == 0
        assert [session.plate_state(p.name) for p in batch] == [PlateState.COMPILED] * 3
        assert [session.plate_percent(p.name) for p in batch] == [100] * 3
        assert session.batch_progress() == (3, 3)

        seen: list[int] = []

        async def sample() -> None:
            while True:
                seen.append(session.plate_percent("P0"))
                await trio.sleep(0.25)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            summary = await session.run_batch(BatchKind.RUN, batch)
            nursery.cancel_scope.cancel()
        assert summary.exit_code() == 1
        assert [session.plate_state(p.name) for p in batch] == [PlateState.COMPLETED] * 2 + [PlateState.FAILED]
        assert session.plate_percent("P0") == 100
        assert any(0 < p < 100 for p in seen), seen
        assert all(b >= a for a, b in itertools.pairwise(seen)), "progress never goes back"
        assert session.batch_progress() == (3, 3)
        assert "plate P2 failed:\nValueError: bad well" in view.lines
        assert not [line for line in view.lines if line.startswith("error: plate P2")], "the failure is shown once"
        assert "run batch finished: 2 completed, 1 failed" in view.lines  # not a server status: the log
        assert "batch finished" not in session.server_line()
        assert session.last_summary is summary
        assert session.can_start
        assert view.scheduled > 0 and view.refreshed > 0  # repaints scheduled while it ran, one forced at its end


async def test_refusals_leave_the_session_usable(autojump_clock):
    server = InMemoryServer(execute_delay=100.0)
    broken = [False]

    def pipeline() -> str:
        if broken[0]:
            raise PipelineError("cannot read pipeline file 'mine.toml': choose another pipeline")
        return PIPELINE

    session, _view = make_session(server.open, pipeline=pipeline)
    with pytest.raises(ServerUnreachableError, match="connect first"):
        await session.run_batch(BatchKind.RUN, plates("P0"))
    async with served(session):
        await session.wait_connection()
        with pytest.raises(InputError, match="no plates"):
            await session.run_batch(BatchKind.RUN, [])
        broken[0] = True
        with pytest.raises(PipelineError, match=r"mine\.toml"):
            await session.run_batch(BatchKind.COMPILE, plates("P0"))
        assert session.can_start  # a refused batch leaves the session usable
        broken[0] = False
        assert session.start_batch(BatchKind.RUN, plates("P0", "P1"))
        assert not session.can_start and not session.can_connect  # busy before the service even flipped its state
        assert not session.start_batch(BatchKind.RUN, plates("P0"))  # the double click
        assert not session.connect("tcp://127.0.0.1:1")
        await wait_state(session, BatchState.RUNNING)
        with pytest.raises(BatchAlreadyRunningError):
            await session.run_batch(BatchKind.COMPILE, plates("P2"))
        session.stop()
        await wait_state(session, BatchState.IDLE)


async def test_stop_is_one_call_and_cancels_every_execution_on_the_server(autojump_clock):
    server = InMemoryServer(execute_delay=100.0)
    session, view = make_session(server.open)
    batch = plates("P0", "P1", "P2")
    async with served(session):
        backend = await start_running(session, server, batch)
        assert session.can_stop and not session.can_start
        session.stop()  # one call
        assert session.batch_state is BatchState.STOPPING and not session.can_stop
        await wait_state(session, BatchState.IDLE)
        await trio.testing.wait_all_tasks_blocked()
        assert [session.plate_state(p.name) for p in batch] == [PlateState.CANCELLED] * 3
        assert backend.live_executions() == []
        assert backend.cancel_calls == 1
        assert session.last_summary is not None and session.last_summary.exit_code() == 130
        assert "stopping the batch…" in view.lines
        assert session.can_start and not session.can_stop


async def test_close_mid_run_stops_the_batch_and_serve_returns_once_the_server_confirmed(autojump_clock):
    server = InMemoryServer(execute_delay=100.0)
    session, view = make_session(server.open)
    batch = plates("P0", "P1")
    async with trio.open_nursery() as nursery:
        await nursery.start(session.serve)
        backend = await start_running(session, server, batch)
        assert not session.may_close
        session.request_close()
        assert not session.can_stop and not session.can_start
        await session.wait_closed()
        assert backend.live_executions() == []
    assert [session.plate_state(p.name) for p in batch] == [PlateState.CANCELLED] * 2
    assert "closing: stopping the batch and waiting for the server to confirm…" in view.lines
    assert view.closed_calls == 1 and session.may_close


async def test_cancelling_serve_mid_run_still_cancels_on_the_server(autojump_clock):
    # Ctrl-C cancels the runner's scope, not the session: the batch must be stopped before the connection drops.
    server = InMemoryServer(execute_delay=100.0)
    session, _view = make_session(server.open)
    batch = plates("P0", "P1")
    async with trio.open_nursery() as nursery:
        await nursery.start(session.serve)
        backend = await start_running(session, server, batch)
        nursery.cancel_scope.cancel()
    assert backend.cancel_log and backend.live_executions() == []
    assert [session.plate_state(p.name) for p in batch] == [PlateState.CANCELLED] * 2


async def test_a_lost_server_fails_the_plates_and_connect_starts_afresh(autojump_clock):
    server = InMemoryServer(execute_delay=100.0)
    session, view = make_session(server.open)
    batch = plates("P0", "P1")
    async with served(session):
        backend = await start_running(session, server, batch)
        backend.lose(ServerLostError("the in-memory server was killed"))
        assert await session.wait_connection(ConnectionState.LOST) is ConnectionState.LOST
        await wait_state(session, BatchState.IDLE)
        assert [session.plate_state(p.name) for p in batch] == [PlateState.FAILED] * 2
        assert view.text.count("the in-memory server was killed") == 2  # once per plate
        assert "lost" in session.server_line() and "press Connect" in session.server_line()
        assert not session.can_start and session.can_connect
        assert session.connect(None)
        assert await session.wait_connection(ConnectionState.CONNECTED) is ConnectionState.CONNECTED
        assert server.connections == 2 and server.backend is not backend
        assert session.can_start


async def test_executions_started_elsewhere_are_followed_and_stop_cancels_exactly_them(autojump_clock):
    async with open_in_memory_backend(execute_delay=100.0) as backend:
        done = await start_executions(backend, ["DONE"])
        await trio.sleep(200.0)
        ids = await start_executions(backend, ["A", "B"])
        await trio.sleep(1.0)
        session, view = make_session(opener_for(backend))
        async with served(session):
            await session.wait_connection()
            assert [(r.plate_name, r.state) for r in session.attached_rows()] == [("A", "running"), ("B", "running")]
            assert session.can_stop and session.can_start  # its own batch may still start
            session.stop()
            assert not session.can_stop  # one cancel in flight, no second
            await session.wait_attached_settled()
            await trio.testing.wait_all_tasks_blocked()
            assert {r.state for r in session.attached_rows()} == {"cancelled"}
            assert backend.cancel_log == [tuple(ids)]
            assert "cancel asked for 2 executions started elsewhere" in view.lines
            assert not session.can_stop
        assert backend.record(done[0]).state == "completed"


async def test_closing_leaves_executions_started_elsewhere_running(autojump_clock):
    async with open_in_memory_backend(execute_delay=100.0) as backend:
        ids = await start_executions(backend, ["A"])
        await trio.sleep(1.0)
        session, _view = make_session(opener_for(backend))
        async with served(session):
            await session.wait_connection()
            assert [r.execution_id for r in session.attached_rows()] == ids
        assert backend.live_executions() == ids
        assert backend.cancel_calls == 0


async def test_an_unreachable_server_is_shown_and_connect_stays_possible():
    url = f"tcp://127.0.0.1:{free_port()}"
    session = BatchSession(RecordingView(), pipeline=lambda: PIPELINE, server=url, connect_timeout=0.5)
    with trio.fail_after(30):
        async with served(session):
            assert session.connection is ConnectionState.CONNECTING
            assert await session.wait_connection() is ConnectionState.UNREACHABLE
            assert session.server_line().startswith(f"{url} · server unreachable · ")
            assert not session.can_start and not session.can_stop
            assert session.can_connect


async def test_an_unreadable_pipeline_at_connect_is_reported_and_the_session_connects(autojump_clock):
    def pipeline() -> str:
        raise PipelineError("cannot read pipeline file 'gone.toml': choose another pipeline")

    session, view = make_session(InMemoryServer().open, pipeline=pipeline)
    async with served(session):
        assert await session.wait_connection() is ConnectionState.CONNECTED
    assert "error: pipeline unavailable: cannot read pipeline file 'gone.toml': choose another pipeline" in view.lines


def test_the_session_loads_no_qt():
    code = "import sys, guest_mode.session; print(sorted(m for m in sys.modules if m.startswith('PyQt')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout
