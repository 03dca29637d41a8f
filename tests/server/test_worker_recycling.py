"""Worker recycling (``--max-wells-per-worker N``): a worker process ends after N wells and a fresh one takes over.

Real servers, real worker processes: a step records the worker's pid in every row of ``wells.csv``; with one
worker the wells run in order, so the pids must change exactly every N wells. Both ways a user starts a server are
covered: ``hcs-batch serve`` (a client runs against it) and the embedded server of ``hcs-batch run``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcs_batch.testing.plates import make_plates
from tests.support.serverproc import LINE, env

pytestmark = pytest.mark.slow

PIPELINE = """
name = "which_worker"
[[steps]]
func = "tests.support.pid_steps:worker_pid"
"""
WELLS = 5


@pytest.fixture
def plate(tmp_path: Path) -> Path:
    [folder] = make_plates(tmp_path / "plates", plates=1, wells=WELLS, size=16, seed=1)
    (tmp_path / "pipeline.toml").write_text(PIPELINE)
    return folder


def _run(tmp_path: Path, plate: Path, *extra: str) -> list[int]:
    """``hcs-batch run`` the plate; the worker pid of each well, in well order."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hcs_batch", "run", str(plate), "--pipeline", str(tmp_path / "pipeline.toml")]
    done = subprocess.run([*cmd, "--output", str(out), *extra], env=env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out / plate.name / "wells.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["well"])
    assert len(rows) == WELLS
    return [int(r["worker_pid"]) for r in rows]


@pytest.fixture
def server_with_recycling() -> Iterator[str]:
    """``hcs-batch serve --workers 1 --max-wells-per-worker 2``; its control URL."""
    cmd = [sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", "1"]
    proc = subprocess.Popen(
        [*cmd, "--max-wells-per-worker", "2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env()
    )
    assert proc.stdout is not None
    try:
        match = LINE.match(proc.stdout.readline().strip())
        assert match is not None, "hcs-batch serve did not print its listening line"
        yield match.group(1)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_served_worker_is_replaced_after_every_two_wells(
    tmp_path: Path, plate: Path, server_with_recycling: str
) -> None:
    pids = _run(tmp_path, plate, "--server", server_with_recycling)
    # One worker, wells in order: A01 A02 | A03 A04 | A05, each pair on a process of its own.
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert len(set(pids)) == 3


def test_embedded_server_recycles_and_never_does_by_default(tmp_path: Path, plate: Path) -> None:
    pids = _run(tmp_path, plate, "--workers", "1", "--max-wells-per-worker", "3")
    assert pids[:3] == [pids[0]] * 3 and pids[3:] == [pids[3]] * 2 and pids[0] != pids[3]
    (tmp_path / "out").rename(tmp_path / "out-recycled")
    assert len(set(_run(tmp_path, plate, "--workers", "1"))) == 1


def test_recycling_options_are_checked(tmp_path: Path, plate: Path) -> None:
    cmd = [sys.executable, "-m", "hcs_batch", "run", str(plate), "--max-wells-per-worker"]
    bad = subprocess.run([*cmd, "0"], env=env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr
    remote = subprocess.run(
        [*cmd, "2", "--server", "tcp://127.0.0.1:9"], env=env(), capture_output=True, text=True, timeout=60
    )
    assert remote.returncode == 2 and "--max-wells-per-worker: for the embedded server only" in remote.stderr
