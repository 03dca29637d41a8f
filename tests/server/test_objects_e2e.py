"""``hcs-batch run`` end to end through the real embedded server: objects.parquet agrees with wells.csv."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from hcs_batch.testing.plates import make_plates

from ..support.columns import WELLS_CSV_LEADING_COLUMNS
from ..support.serverproc import env


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", "run", *args], capture_output=True, text=True, env=env(), timeout=180
    )


def test_run_writes_objects_parquet_matching_wells_csv(tmp_path: Path) -> None:
    plates = make_plates(tmp_path / "plates", plates=1, wells=3, sites=2, channels=2, size=96, seed=5)
    out = tmp_path / "results"
    first = _run(str(plates[0]), "--output", str(out), "--json")
    assert first.returncode == 0, first.stderr
    plate_dir = out / plates[0].name
    with open(plate_dir / "wells.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames or [], list(reader)
    assert header[:9] == WELLS_CSV_LEADING_COLUMNS
    assert len(rows) == 3 * 2 * 2 and {r["timepoint"] for r in rows} == {"1"}
    truth = {
        (r["well"], r["site"], r["channel"]): r["object_count"]
        for r in csv.DictReader((tmp_path / "plates" / "ground_truth.csv").read_text().splitlines())
    }
    assert {(r["well"], r["site"], r["channel"]): r["object_count"] for r in rows} == truth

    table = pq.read_table(plate_dir / "objects.parquet")
    assert table.column_names[:4] == ["well", "site", "channel", "timepoint"]
    assert "Intensity_MeanIntensity_1" in table.column_names and "Intensity_MeanIntensity_2" in table.column_names
    objects = table.to_pydict()
    per_image = Counter(zip(objects["well"], objects["site"], objects["timepoint"], strict=True))
    for row in rows:
        assert per_image[(row["well"], int(row["site"]), int(row["timepoint"]))] == int(row["object_count"]), row
    assert sum(per_image.values()) == sum(int(r["object_count"]) for r in rows if r["channel"] == "1")
    assert set(objects["channel"]) == {1}
    # Channel 2 shows the same nuclei at half the brightness: measured inside channel 1's objects.
    means = {(r["well"], r["site"], r["channel"]): float(r["mean_intensity"]) for r in rows}
    for (well, site, channel), value in means.items():
        if channel == "2":
            assert 0.3 < (value - 200) / (means[(well, site, "1")] - 200) < 0.7
    manifest = json.loads((plate_dir / "manifest.json").read_text())
    assert manifest["segment_channel"] == 1
    assert not list(out.rglob("*.tmp"))

    # A second run skips every well (their json and object files exist) and writes the same objects again.
    before = pq.read_table(plate_dir / "objects.parquet")
    (plate_dir / "objects.parquet").unlink()
    second = _run(str(plates[0]), "--output", str(out), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads((plate_dir / "manifest.json").read_text())["wells_reused"] == 3
    assert pq.read_table(plate_dir / "objects.parquet").equals(before)
