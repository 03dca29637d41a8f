"""One execution at a time writes a plate's output folder: the lock file names its owner, a second execution of
the same plate into the same folder is refused (never computed twice), a stale lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.errors import PlateBusyError
from hcs_batch.server import ServerAddress
from hcs_batch.server.plate_lock import LOCK_NAME, acquire_plate_lock, release_plate_lock
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import wait_for_pids
from ..support.slow_steps import release_gate
from .helpers import wait_terminal


def test_a_second_owner_is_refused_with_the_first_named(tmp_path: Path) -> None:
    lock = acquire_plate_lock(tmp_path / "p", execution_id="first", server="srv-a")
    owner = json.loads(lock.read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    assert (owner["server"], owner["execution_id"]) == ("srv-a", "first") and owner["started_at"].endswith("+00:00")
    with pytest.raises(PlateBusyError, match=rf"in use by execution first \(pid {os.getpid()} on .*server srv-a"):
        acquire_plate_lock(tmp_path / "p", execution_id="second", server="srv-b")
    release_plate_lock(lock, execution_id="second")  # not the owner: nothing happens
    assert lock.exists()
    release_plate_lock(lock, execution_id="first")
    assert not lock.exists()
    acquire_plate_lock(tmp_path / "p", execution_id="second", server="srv-b")


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "p"
    folder.mkdir()
    stale = {"pid": int(dead.stdout), "host": socket.gethostname(), "server": "gone", "execution_id": "old"}
    (folder / LOCK_NAME).write_text(json.dumps(stale))
    lock = acquire_plate_lock(folder, execution_id="new", server="srv")
    assert json.loads(lock.read_text())["execution_id"] == "new"


def test_a_live_process_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    other = {"pid": 1, "host": "another-host.example", "server": "far", "execution_id": "theirs"}
    (folder / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(PlateBusyError, match=r"another-host\.example"):
        acquire_plate_lock(folder, execution_id="mine", server="srv")


GATED = """
name = "gated"
[[steps]]
func = "tests.support.slow_steps:gate"
gate_dir = "{gate_dir}"
[[steps]]
func = "hcs_batch.steps:mean_intensity"
"""


async def test_the_same_plate_twice_at_once_into_one_folder_runs_once(tmp_path: Path, server: ServerAddress) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=2, size=16, seed=2)[0]
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    out = tmp_path / "out"
    with trio.fail_after(60):
        async with open_connection(server.control_url) as conn:
            compiled = await conn.compile(
                plate_path=str(plate), plate_name=plate.name, pipeline=GATED.format(gate_dir=gate_dir)
            )
            first = await conn.execute(compiled.artifact_id, output_dir=str(out))
            await wait_for_pids(gate_dir, 1)  # the first execution is inside a well, holding the lock
            second = await conn.execute(compiled.artifact_id, output_dir=str(out))
            ended = await wait_terminal(conn, [second])
            assert ended[second].state == "failed"
            assert f"in use by execution {first}" in ended[second].error
            await trio.to_thread.run_sync(release_gate, gate_dir)
            ended = await wait_terminal(conn, [first])
    assert ended[first].state == "completed"
    assert not (out / plate.name / LOCK_NAME).exists(), "released at the end"


def test_a_garbled_lock_or_a_symlink_is_taken_over_and_nothing_outside_is_touched(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("{not json")
    lock = acquire_plate_lock(folder, execution_id="a", server="srv")
    release_plate_lock(lock, execution_id="a")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    (folder / LOCK_NAME).symlink_to(precious)
    lock = acquire_plate_lock(folder, execution_id="b", server="srv")
    assert not lock.is_symlink() and json.loads(lock.read_text())["execution_id"] == "b"
    assert precious.read_text() == "keep"
