"""An embedded server in a process of its own (``open_backend(None, embedded="process")``, the GUI's default):
it runs plates like the inline one, only its own client may shut it down, it refuses options it does not know, and
it never outlives its parent (it stops when its stdin closes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.connect import open_backend
from hcs_batch.errors import InputError, SecurityError
from hcs_batch.model import ExecutionState
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.testing.plates import make_plates

from ..support.procs import descendants, reap_process, survivors
from .helpers import wait_terminal


def _child_servers() -> set[int]:
    """Our descendants running ``hcs_batch.server.child``."""
    found = set()
    for pid in descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hcs_batch.server.child" in cmdline:
            found.add(pid)
    return found


async def test_a_child_server_runs_a_plate_and_leaves_no_process_behind(tmp_path: Path) -> None:
    [plate] = make_plates(tmp_path / "plates", plates=1, wells=2, size=16, seed=3)
    before = descendants(os.getpid())
    with trio.fail_after(90):
        async with open_backend(
            None, workers=1, embedded="process", data_roots=[tmp_path], output_roots=[tmp_path]
        ) as backend:
            # The server is another process, not this Trio run (a child server of an earlier test still exiting
            # on a loaded machine is no concern of this one).
            [server_pid] = _child_servers() - before
            reply = await backend.compile(plate_path=str(plate), plate_name=plate.name, pipeline=noop_pipeline_text())
            execution_id = await backend.execute(reply.artifact_id, output_dir=str(tmp_path / "out"))
            records = await wait_terminal(backend, [execution_id])
            assert records[execution_id].state is ExecutionState.COMPLETED
            assert (tmp_path / "out" / plate.name).is_dir()
            spawned = descendants(os.getpid()) - before
            assert server_pid in spawned
    assert not survivors(spawned), "the child server or its workers outlived the block"


async def test_only_the_parent_may_shut_a_child_server_down(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with open_backend(None, workers=1, embedded="process", data_roots=[tmp_path]) as own:
            async with open_connection(own.url) as stranger:
                with pytest.raises(SecurityError):
                    await stranger.shutdown()
                await own.shutdown()


async def test_bad_embedded_options_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="embedded must be one of inline, process"):
        async with open_backend(None, embedded="thread"):
            pass  # pragma: no cover
    with trio.fail_after(60), pytest.raises(InputError, match="is not an existing folder"):
        async with open_backend(None, embedded="process", data_roots=[tmp_path / "missing"]):
            pass  # pragma: no cover


def test_the_child_refuses_options_it_does_not_know() -> None:
    # Only the parent starts it, but its command line is still input: a bind address or a keys folder slipped in
    # here must not open the server beyond loopback or change its trust.
    for options in ('{"bind": "tcp://0.0.0.0:7700"}', '{"allow_remote_shutdown": true}', "[1]", "not json"):
        done = subprocess.run(
            [sys.executable, "-m", "hcs_batch.server.child", options],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, options
        assert "bad options for the embedded server" in json.loads(done.stdout)["error"]


def test_the_child_stops_when_its_stdin_closes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcs_batch.server.child", json.dumps({"workers": 1, "data_roots": [str(tmp_path)]})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["control_url"].startswith("tcp://127.0.0.1:")
        assert ready["shutdown_token"]
        workers = descendants(proc.pid)
        proc.stdin.close()  # what the parent's death looks like from here
        assert proc.wait(timeout=60) == 0
        assert not survivors(workers)
    finally:
        reap_process(proc)
