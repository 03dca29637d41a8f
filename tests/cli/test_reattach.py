"""Reattach: executions outlive the client that started them; ``hcs-batch status`` lists them and ``hcs-batch
attach`` follows them to their end. Real server process, real client processes killed with SIGKILL.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from hcs_batch.testing.plates import make_plates

from ..support.serverproc import GATE_PIPELINE, Server, env, gated_server, wait_for_pids
from ..support.slow_steps import release_gate


@pytest.fixture
async def server(gate_dir: Path) -> AsyncIterator[Server]:
    async with gated_server(gate_dir, stop_cleanly=True) as srv:
        yield srv


def hcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, env=env(), timeout=60
    )


async def start_orphans(server: Server, gate_dir: Path, tmp_path: Path, plates: int) -> None:
    """Start ``hcs-batch run`` against ``server``; once every plate's well is running, SIGKILL the client."""
    folders = make_plates(tmp_path / "plates", plates=plates, wells=1, sites=1, channels=1, size=16, seed=9)
    pipeline = tmp_path / "gated.toml"
    pipeline.write_text(GATE_PIPELINE.format(gate_dir=gate_dir))
    cmd = [sys.executable, "-m", "hcs_batch", "run", *map(str, folders), "--server", server.url, "--json"]
    cmd += ["--pipeline", str(pipeline), "--output", str(tmp_path / "out")]
    async with trio.open_nursery() as nursery:
        run = functools.partial(
            trio.run_process, cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        client = await nursery.start(run)
        await wait_for_pids(gate_dir, plates)
        client.send_signal(signal.SIGKILL)
    assert client.returncode == -signal.SIGKILL


@asynccontextmanager
async def process(cmd: list[str], **options: Any) -> AsyncIterator[trio.Process]:
    """A process for the block; killed (it is ours) if still running at the end, always waited for."""
    proc = await trio.lowlevel.open_process(cmd, env=env(), **options)
    try:
        yield proc
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    await stream.aclose()


async def read_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        assert chunk, f"stream ended after {data!r}"
        data += chunk
    return data.decode()


async def test_attach_follows_the_executions_of_a_killed_client_to_completion(
    server: Server, gate_dir: Path, tmp_path: Path
) -> None:
    with trio.fail_after(90):
        await start_orphans(server, gate_dir, tmp_path, plates=2)

        # The executions keep running without their client, and status lists them.
        status = await trio.to_thread.run_sync(hcs, "status", "--server", server.url, "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["server"]["running"] == 2
        running = {e["execution_id"]: e["plate"] for e in info["executions"] if e["state"] == "running"}
        assert sorted(running.values()) == ["plate_001", "plate_002"]
        text = await trio.to_thread.run_sync(hcs, "status", "--server", server.url)
        assert text.returncode == 0 and all(eid in text.stdout for eid in running), text.stdout

        cmd = [sys.executable, "-m", "hcs_batch", "attach", "--server", server.url, "--json"]
        async with process(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as attach:
            assert attach.stderr is not None and attach.stdout is not None
            # attach says what it follows before it waits: only then may the wells finish.
            assert (await read_line(attach.stderr)).startswith("following 2 live executions")
            release_gate(gate_dir)
            out = b""
            while chunk := await attach.stdout.receive_some():
                out += chunk
            await attach.wait()
    assert attach.returncode == 0
    followed = json.loads(out)["executions"]
    assert {e["execution_id"]: e["state"] for e in followed} == dict.fromkeys(running, "completed")
    for plate in ("plate_001", "plate_002"):
        assert (tmp_path / "out" / plate / "wells.csv").exists()


async def test_attach_with_nothing_live_exits_0_at_once(server: Server) -> None:
    with trio.fail_after(30):
        result = await trio.to_thread.run_sync(hcs, "attach", "--server", server.url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"executions": []}


async def test_attach_to_a_server_that_dies_exits_1_saying_server_lost(
    server: Server, gate_dir: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await start_orphans(server, gate_dir, tmp_path, plates=1)
        cmd = [sys.executable, "-m", "hcs_batch", "attach", "--server", server.url]
        async with process(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as attach:
            assert attach.stderr is not None
            assert (await read_line(attach.stderr)).startswith("following 1 live executions")
            os.kill(server.pid, signal.SIGKILL)
            err = b""
            while chunk := await attach.stderr.receive_some():
                err += chunk
            await attach.wait()
    assert attach.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "server lost" in lines[0] and "Traceback" not in lines[0], err


async def test_status_and_records_stay_answerable_with_thousands_of_executions(tmp_path: Path) -> None:
    # A long-lived server keeps up to 100,000 finished records. One reply must not outgrow the frame limit
    # (1 MiB): a dropped oversize reply left `hcs-batch status` and status polls waiting forever.
    from hcs_batch.client import open_connection
    from hcs_batch.server import open_embedded_server

    n = 3000
    folder = make_plates(tmp_path / "plates", plates=1, wells=1, sites=1, channels=1, size=16, seed=1)[0]
    noop = 'name = "noop"\n[[steps]]\nfunc = "hcs_batch.steps:noop"\n'
    with trio.fail_after(60):
        async with open_embedded_server(workers=1, warm_workers=False) as address:
            async with open_connection(address.control_url) as conn:
                compiled = await conn.compile(
                    plate_path=str(folder), plate_name="plate with a long descriptive name " * 3, pipeline=noop
                )
                ids = [await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out")) for _ in range(n)]
                records, unknown = await conn.status(ids)
                assert len(records) == n and not unknown
                info = await conn.server_info(records=True)
                assert info.executions and len(info.executions) + info.executions_omitted == n
                assert info.executions[-1].execution_id == ids[-1], "the newest records are the ones kept"


def test_the_largest_possible_status_reply_fits_in_a_frame() -> None:
    # STATUS_CHUNK records of the largest size a server can make (every field at its limit, 4-byte characters,
    # a huge error) must decode on the client, or a poll would be dropped and never answered.
    from hcs_batch import protocol as p
    from hcs_batch.client.connection import STATUS_CHUNK
    from hcs_batch.server.stores import Execution

    wide = "\U0001f600"
    execution = Execution(artifact_id="a" * 128, plate_name=wide * 128, wells_total=2**62, output=wide * 4096)
    execution.error = wide * 1_000_000
    execution.wells_done = execution.wells_skipped = 2**62
    reply = p.StatusReply(rid=2**63, executions=[execution.record()] * STATUS_CHUNK, unknown=[])
    assert p.decode_reply(p.encode(reply)) == reply
