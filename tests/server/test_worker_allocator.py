"""Worker processes keep their C heap between images (hcs_batch.server.allocator): a freed image buffer is reused,
not unmapped and faulted in again. Checked in real worker processes of the embedded server of ``hcs-batch run``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from hcs_batch.testing.plates import make_plates
from tests.support.serverproc import env

pytestmark = pytest.mark.slow

PIPELINE = """
name = "refaults"
[[steps]]
func = "tests.support.pid_steps:refaults"
"""


def test_workers_reuse_freed_image_buffers(tmp_path: Path) -> None:
    [plate] = make_plates(tmp_path / "plates", plates=1, wells=3, size=16, seed=2)
    (tmp_path / "pipeline.toml").write_text(PIPELINE)
    cmd = [sys.executable, "-m", "hcs_batch", "run", str(plate), "--pipeline", str(tmp_path / "pipeline.toml")]
    done = subprocess.run(
        [*cmd, "--output", str(tmp_path / "out"), "--workers", "1"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "out" / plate.name / "wells.csv", newline="") as fh:
        faults = [int(row["refaults"]) for row in csv.DictReader(fh)]
    # Without the tuning glibc gives freed buffers back and faults ~2,500-3,000 pages in again for two images.
    assert len(faults) == 3 and max(faults) < 500, faults
