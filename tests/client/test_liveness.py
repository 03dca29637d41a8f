"""Liveness against a real ``hcs-batch serve`` process: killed, frozen or restarted mid-batch, the batch's live
plates end ``failed`` within the liveness bound, saying "server lost" / "server restarted", never "cancelled".

The bound: the client counts the server lost ``liveness_timeout`` (default 5 s) after the last heartbeat or reply
it received; heartbeats come every second, so a kill is noticed at most 5 s after it happened (4 s at best).
A missed event is noticed at the next event (a heartbeat at the latest, 1 s) and triggers a status poll.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from hcs_batch import PlateRef, PlateState
from hcs_batch import protocol as p
from hcs_batch.backend import ConnectionLost, EventGap
from hcs_batch.client import ServerConnection, open_connection
from hcs_batch.client.connection import DEFAULT_LIVENESS_TIMEOUT
from hcs_batch.server import open_embedded_server
from hcs_batch.testing.plates import make_plates
from hcs_batch.workflow.service import BatchSummary, BatchWorkflowService

from ..support.procs import alive, descendants, survivors
from ..support.serverproc import (
    GATE_PIPELINE,
    Server,
    env,
    free_port_pair,
    gated_server,
    kill_pids,
    pids_in,
    reap,
    start_server,
    wait_for_pids,
)
from ..support.slow_steps import release_gate
from ..workflow.test_service import RecordingHost

SLACK = 2.0
"""Seconds allowed beyond the liveness bound for scheduling on a loaded 2-core machine."""


@pytest.fixture
def plate_refs(tmp_path: Path) -> list[PlateRef]:
    folders = make_plates(tmp_path / "plates", plates=3, wells=1, sites=1, channels=1, size=16, seed=5)
    return [PlateRef.from_path(f) for f in folders]


@pytest.fixture
async def server(gate_dir: Path) -> AsyncIterator[Server]:
    """A real server process with two workers; afterwards it and every worker blocked at the gate are killed."""
    async with gated_server(gate_dir, stop_cleanly=False) as srv:
        yield srv


async def run_and_fault(
    server: Server,
    plate_refs: list[PlateRef],
    gate_dir: Path,
    out: Path,
    fault: str,
    *,
    liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
) -> tuple[BatchSummary, RecordingHost, float, Server | None]:
    """Run the plates through the service on a real connection; once both workers hold a well, apply ``fault``.

    Returns the summary, the host, the seconds from the fault to the end of the batch, and a restarted server.
    """
    host = RecordingHost()
    restarted: Server | None = None
    result: list[BatchSummary] = []
    async with open_connection(server.url, liveness_timeout=liveness_timeout) as conn:
        service = BatchWorkflowService(
            host, conn, pipeline_text=GATE_PIPELINE.format(gate_dir=gate_dir), output_dir=out
        )
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                result.append(await service.run_plates(plate_refs))

            nursery.start_soon(run)
            await wait_for_pids(gate_dir, 2)
            assert all(host.transitions[r.name][-1] is PlateState.RUNNING for r in plate_refs)
            if fault == "kill":
                os.kill(server.pid, signal.SIGKILL)
            elif fault == "freeze":
                os.kill(server.pid, signal.SIGSTOP)
            elif fault == "term":
                os.kill(server.pid, signal.SIGTERM)
            faulted_at = trio.current_time()
            if fault == "restart":
                os.kill(server.pid, signal.SIGKILL)
                await trio.to_thread.run_sync(server.proc.wait)
                port = int(server.url.rsplit(":", 1)[1])
                restarted = await trio.to_thread.run_sync(functools.partial(start_server, workers=1, port=port))
        elapsed = trio.current_time() - faulted_at
    return result[0], host, elapsed, restarted


def assert_all_failed_with(summary: BatchSummary, host: RecordingHost, words: str) -> None:
    assert summary.counts == {"failed": len(summary.plates)}, summary.plates
    for outcome in summary.plates:
        assert words in outcome.error and "cancelled" not in outcome.error, outcome.error
    assert all(n == 1 for n in host.terminal_counts().values()), host.transitions
    assert len(host.all_done) == 1
    assert summary.exit_code() == 1


async def test_killed_server_fails_every_live_plate_as_lost_within_the_bound(
    server: Server, plate_refs: list[PlateRef], gate_dir: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        summary, host, elapsed, _ = await run_and_fault(server, plate_refs, gate_dir, tmp_path / "out", "kill")
    assert_all_failed_with(summary, host, "server lost")
    assert elapsed <= DEFAULT_LIVENESS_TIMEOUT + SLACK


async def test_a_killed_server_leaves_only_the_workers_busy_in_a_well(
    plate_refs: list[PlateRef], gate_dir: Path, tmp_path: Path
) -> None:
    # Workers of a SIGKILLed server are orphans: an idle one sees its job pipe close and exits; one busy in a well
    # finishes that well (writing its result file atomically) and then exits. Here the busy ones are held at the
    # gate; once released they must go too.
    pipeline = GATE_PIPELINE.format(gate_dir=gate_dir)
    server = await trio.to_thread.run_sync(functools.partial(start_server, workers=3))
    try:
        await _kill_with_busy_workers(server, plate_refs[:2], gate_dir, pipeline, tmp_path / "out")
    finally:
        await trio.to_thread.run_sync(reap, server)
        kill_pids(pids_in(gate_dir))
    written = sorted((tmp_path / "out").glob("*/wells/A01.json"))
    assert len(written) == 2, "a well released after the kill still writes its result"


def _is_resource_tracker(pid: int) -> bool:
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def _kill_with_busy_workers(
    server: Server, plate_refs: list[PlateRef], gate_dir: Path, pipeline: str, out: Path
) -> None:
    with trio.fail_after(60):
        async with open_connection(server.url) as conn:
            for ref in plate_refs:
                compiled = await conn.compile(plate_path=str(ref.path), plate_name=ref.name, pipeline=pipeline)
                await conn.execute(compiled.artifact_id, output_dir=str(out))
            held = await wait_for_pids(gate_dir, 2)
            # The third worker is warmed up at start: wait until the pool has all three processes.
            while len(workers := descendants(server.pid)) < 4:  # noqa: ASYNC110
                await trio.sleep(0.02)
            assert held <= workers
            os.kill(server.pid, signal.SIGKILL)
            await trio.to_thread.run_sync(server.proc.wait)
        # multiprocessing's resource tracker lives as long as any worker holds its pipe: it goes with the last.
        tracker = {pid for pid in workers if _is_resource_tracker(pid)}
        idle = workers - held - tracker
        assert idle, "the pool had idle workers when the server was killed"
        assert await trio.to_thread.run_sync(functools.partial(survivors, idle, grace=10.0)) == {}
        assert all(alive(pid) for pid in held)
        release_gate(gate_dir)
        assert await trio.to_thread.run_sync(functools.partial(survivors, held | tracker, grace=10.0)) == {}


async def test_frozen_server_fails_every_live_plate_as_lost_within_the_bound(
    server: Server, plate_refs: list[PlateRef], gate_dir: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        summary, host, elapsed, _ = await run_and_fault(server, plate_refs, gate_dir, tmp_path / "out", "freeze")
    assert_all_failed_with(summary, host, "server lost")
    # A frozen process keeps its sockets open: only the heartbeat watchdog can notice, and it must.
    assert DEFAULT_LIVENESS_TIMEOUT - 1.5 <= elapsed <= DEFAULT_LIVENESS_TIMEOUT + SLACK


async def test_server_restarted_on_the_same_port_fails_live_plates_as_restarted(
    plate_refs: list[PlateRef], gate_dir: Path, tmp_path: Path
) -> None:
    # An explicit port, so the restarted server listens where the client's sockets reconnect (events on P+1).
    port = await trio.to_thread.run_sync(free_port_pair)
    first = await trio.to_thread.run_sync(functools.partial(start_server, workers=2, port=port))
    restarted: Server | None = None
    try:
        with trio.fail_after(60):
            # A long liveness bound: the new instance id in the first heartbeat, not silence, must end the batch.
            summary, host, _, restarted = await run_and_fault(
                first, plate_refs, gate_dir, tmp_path / "out", "restart", liveness_timeout=60.0
            )
        assert_all_failed_with(summary, host, "server restarted")
    finally:
        await trio.to_thread.run_sync(reap, first)
        if restarted is not None:
            await trio.to_thread.run_sync(reap, restarted)
        kill_pids(pids_in(gate_dir))


async def test_cli_run_against_a_killed_server_exits_1_with_failed_plates(
    server: Server, plate_refs: list[PlateRef], gate_dir: Path, tmp_path: Path
) -> None:
    pipeline = tmp_path / "gated.toml"
    pipeline.write_text(GATE_PIPELINE.format(gate_dir=gate_dir))
    cmd = [sys.executable, "-m", "hcs_batch", "run", *(str(r.path) for r in plate_refs), "--server", server.url]
    cmd += ["--pipeline", str(pipeline), "--output", str(tmp_path / "out"), "--json"]
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with trio.fail_after(60), stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        async with trio.open_nursery() as nursery:
            run = functools.partial(trio.run_process, cmd, env=env(), stdout=stdout, stderr=stderr, check=False)
            proc = await nursery.start(run)
            await wait_for_pids(gate_dir, 2)
            os.kill(server.pid, signal.SIGKILL)
            killed_at = trio.current_time()
        elapsed = trio.current_time() - killed_at
    assert proc.returncode == 1, stderr_path.read_text()
    summary = json.loads(stdout_path.read_text())
    assert summary["counts"] == {"failed": 3}
    assert all("server lost" in plate["error"] for plate in summary["plates"]), summary
    # Process exit included (the CLI's clean-up and interpreter shutdown).
    assert elapsed <= DEFAULT_LIVENESS_TIMEOUT + SLACK + 1.0


async def test_a_missed_event_on_a_real_socket_triggers_a_poll_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The client's SUB drops every terminal state event: only the status poll that the gap triggers can tell the
    # service the plates ended. The regular poll interval is 60 s, so without that poll the batch would hang.
    dropped: list[int] = []
    original = ServerConnection._on_event

    def lossy(self: ServerConnection, frames: list[bytes]) -> None:
        event = p.decode_event(frames[-1])
        if isinstance(event, p.StateEvent) and event.state in ("completed", "failed", "cancelled"):
            dropped.append(event.seq)
            return
        original(self, frames)

    monkeypatch.setattr(ServerConnection, "_on_event", lossy)
    folders = make_plates(tmp_path / "plates", plates=3, wells=2, sites=1, channels=1, size=16, seed=2)
    noop = 'name = "noop"\n[[steps]]\nfunc = "hcs_batch.steps:noop"\n'
    with trio.fail_after(20):
        async with open_embedded_server(workers=1, warm_workers=False) as address:
            async with open_connection(address.control_url) as conn:
                host = RecordingHost()
                service = BatchWorkflowService(
                    host, conn, pipeline_text=noop, output_dir=tmp_path / "out", poll_interval=60, max_poll_interval=60
                )
                start = trio.current_time()
                summary = await service.run_plates([PlateRef.from_path(f) for f in folders])
                elapsed = trio.current_time() - start
    assert summary.counts == {"completed": 3}
    assert len(dropped) == 3
    assert elapsed < 10, "the gap (seen at the next heartbeat, within 1 s) must trigger a poll"


async def test_a_burst_of_progress_events_never_loses_a_terminal_state(tmp_path: Path) -> None:
    # The anchors' publisher overflowed on bursts and lost the terminal record. Inline noop plates publish one
    # progress event per (well, step) in one synchronous burst: 4 plates x 384 wells x 25 steps = 38,400 events
    # within milliseconds, then the terminal state. Every one must arrive, with no gap.
    steps = 25
    pipeline = 'name = "burst"\n' + '[[steps]]\nfunc = "hcs_batch.steps:noop"\n' * steps
    folders = make_plates(tmp_path / "plates", plates=4, wells=384, sites=1, channels=1, size=16, seed=1)
    with trio.fail_after(60):
        async with open_embedded_server(workers=1, warm_workers=False) as address:
            async with open_connection(address.control_url) as conn, conn.open_event_stream() as events:
                ids = set()
                for folder in folders:
                    compiled = await conn.compile(plate_path=str(folder), plate_name=folder.name, pipeline=pipeline)
                    ids.add(await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out")))
                progress = 0
                finished: set[str] = set()
                async for item in events:
                    assert not isinstance(item, EventGap | ConnectionLost), item
                    if isinstance(item, p.ProgressEvent):
                        progress += 1
                    elif isinstance(item, p.StateEvent) and item.state == "completed":
                        finished.add(item.execution_id)
                        if finished == ids:
                            break
    assert progress == 4 * 384 * steps
