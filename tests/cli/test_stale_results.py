"""Resume never serves stale numbers: a well whose images changed is computed again, the others are reused, and
the summary says how many were reused (the issue-12 case, as a user runs it)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from hcs_batch.testing.plates import make_plates

from ..support.serverproc import env


def _hcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, env=env(), timeout=120
    )


def _truth(root: Path) -> dict[str, int]:
    rows = csv.DictReader((root / "ground_truth.csv").read_text().splitlines())
    return {r["well"]: int(r["object_count"]) for r in rows}


def _counts(wells_csv: Path) -> dict[str, int]:
    return {r["well"]: int(r["object_count"]) for r in csv.DictReader(wells_csv.read_text().splitlines())}


def test_a_regenerated_image_is_recomputed_and_the_summary_counts_reused_wells(tmp_path: Path) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=3, size=96, seed=1)[0]
    # Another plate whose A01 holds a different number of nuclei: its image replaces ours.
    other_root = tmp_path / "other"
    seed = 2
    while True:
        other = make_plates(other_root, plates=1, wells=3, size=96, seed=seed)[0]
        if _truth(other_root)["A01"] != _truth(tmp_path / "plates")["A01"]:
            break
        seed += 1
    out = tmp_path / "results"

    first = _hcs("run", str(plate), "--output", str(out), "--json")
    assert first.returncode == 0, first.stderr
    assert _counts(out / plate.name / "wells.csv")["A01"] == _truth(tmp_path / "plates")["A01"]
    assert json.loads(first.stdout)["plates"][0]["wells_reused"] == 0

    shutil.copyfile(other / "A01_s1_w1.tif", plate / "A01_s1_w1.tif")  # same size (same shape), new content

    second = _hcs("run", str(plate), "--output", str(out), "--json")
    assert second.returncode == 0, second.stderr
    counts = _counts(out / plate.name / "wells.csv")
    assert counts["A01"] == _truth(other_root)["A01"]  # the new image's count, not the old one
    summary = json.loads(second.stdout)
    assert summary["plates"][0]["wells_reused"] == 2
    assert summary["plates"][0]["wells_total"] == 3
    assert "1 well(s) computed, 2 reused" in second.stderr
    manifest = json.loads((out / plate.name / "manifest.json").read_text())
    assert (manifest["wells_computed"], manifest["wells_reused"]) == (1, 2)
