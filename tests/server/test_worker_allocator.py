"""Worker processes tune malloc for images (hcs_batch.server.allocator): small blocks freed are reused, not unmapped
and faulted in again, and a freed image-sized buffer stays for the next image. Checked in real worker
processes of the embedded server of ``hcs-batch run``."""

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


def test_workers_reuse_small_blocks_and_image_buffers(tmp_path: Path) -> None:
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
        rows = list(csv.DictReader(fh))
    faults, kept = [int(row["refaults"]) for row in rows], [int(row["kept_kib"]) for row in rows]
    grown = [int(row["grown_kib"]) for row in rows]
    # Without the tuning glibc's default gives the small blocks back and faults them in again (~1,500 pages
    # here), maps a process's first image afresh and unmaps it when freed (kept ~0), and only then raises its
    # thresholds, so the next image grows the heap by one more (grown ~16,384 KiB). Tuned, the first well's freed
    # image stays resident (the wells after it find it there) and every later image reuses it.
    assert len(faults) == 3 and max(faults) < 200, faults
    assert max(kept) > 12_000, kept
    assert max(grown) < 1024, grown
