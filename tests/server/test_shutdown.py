"""Shutdown against a real ``hcs-batch serve`` process: SIGTERM publishes a ``shutdown`` event first, so clients
fail their live plates at once with "server shut down" (never "cancelled", never after the 5 s heartbeat bound);
a shutdown request needs the operator's authority.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

from hcs_batch import PlateRef
from hcs_batch.client import open_connection
from hcs_batch.client.connection import DEFAULT_LIVENESS_TIMEOUT
from hcs_batch.connect import open_backend
from hcs_batch.errors import SecurityError, ServerShutDownError
from hcs_batch.testing.plates import make_plates

from ..client.test_liveness import assert_all_failed_with, run_and_fault
from ..support.serverproc import Server, gated_server, reap, start_server


@pytest.fixture
def plate_refs(tmp_path: Path) -> list[PlateRef]:
    folders = make_plates(tmp_path / "plates", plates=3, wells=1, sites=1, channels=1, size=16, seed=5)
    return [PlateRef.from_path(f) for f in folders]


async def test_sigterm_fails_every_live_plate_as_shut_down_at_once(
    plate_refs: list[PlateRef], gate_dir: Path, tmp_path: Path
) -> None:

    async with gated_server(gate_dir, stop_cleanly=False) as server:
        with trio.fail_after(60):
            summary, host, elapsed, _ = await run_and_fault(server, plate_refs, gate_dir, tmp_path / "out", "term")
        exit_code = await trio.to_thread.run_sync(functools.partial(server.proc.wait, timeout=30))
    assert_all_failed_with(summary, host, "server shut down")
    # Told, not inferred from silence: well inside the heartbeat bound (4-5 s for a killed server).
    assert elapsed < DEFAULT_LIVENESS_TIMEOUT - 2.0, elapsed
    assert exit_code == 0


async def _server(*extra: str) -> Server:
    return await trio.to_thread.run_sync(functools.partial(start_server, workers=1, extra=extra))


async def test_a_client_may_not_shut_the_server_down_unless_the_operator_allows_it() -> None:
    server = await _server()
    try:
        with trio.fail_after(60):
            async with open_connection(server.url) as conn:
                with pytest.raises(SecurityError, match="only the server's operator may stop it"):
                    await conn.shutdown()
                conn.shutdown_token = "guessed"
                with pytest.raises(SecurityError):
                    await conn.shutdown()
                assert (await conn.status(["x"])) == ([], ["x"])  # still serving
        assert server.proc.poll() is None
    finally:
        await trio.to_thread.run_sync(reap, server)


async def test_allow_remote_shutdown_lets_a_client_stop_it_and_others_hear_it_at_once() -> None:
    server = await _server("--allow-remote-shutdown")
    try:
        with trio.fail_after(60):
            async with open_connection(server.url) as watcher, open_connection(server.url) as conn:
                async with watcher.open_event_stream() as events:
                    await conn.shutdown()
                    async for _ in events:
                        pass  # the stream ends with the shutdown
                assert isinstance(watcher.lost, ServerShutDownError) and "server shut down" in str(watcher.lost)
            assert await trio.to_thread.run_sync(functools.partial(server.proc.wait, timeout=30)) == 0
    finally:
        await trio.to_thread.run_sync(reap, server)


async def test_an_embedded_servers_own_client_may_shut_it_down_another_may_not() -> None:
    with trio.fail_after(60):
        async with open_backend(None, workers=1) as own:
            async with open_connection(own.url) as stranger:
                with pytest.raises(SecurityError):
                    await stranger.shutdown()
                async with stranger.open_event_stream() as events:
                    await own.shutdown()
                    async for _ in events:
                        pass  # the stream ends with the shutdown
                assert isinstance(stranger.lost, ServerShutDownError)
