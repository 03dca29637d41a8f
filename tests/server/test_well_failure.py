"""Per-well failure, nothing lost, on real processes: ``hcs-batch run`` (an embedded server with worker
processes) on a plate with one corrupt image among good ones; a step that raises for one well; and the pairing of
``wells.csv`` with ``manifest.json`` when the disk fills up (a real tmpfs when the tests run as root).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tifffile
import trio

from hcs_batch.connect import open_backend
from hcs_batch.server import results
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import env
from .helpers import wait_terminal


def _run(*args: str, cwd: Path) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "run", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env(),
        cwd=cwd,
    )
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr


def _pair(plate_out: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The manifest and the table, checked to be one set with the object table (the files the manifest
    describes)."""
    manifest = json.loads((plate_out / "manifest.json").read_text())
    table = (plate_out / "wells.csv").read_bytes()
    assert hashlib.sha256(table).hexdigest() == manifest["wells_csv_sha256"], "wells.csv is not the manifest's"
    objects = (plate_out / "objects.parquet").read_bytes()
    assert hashlib.sha256(objects).hexdigest() == manifest["objects_parquet_sha256"], "objects.parquet is not its"
    assert not list(plate_out.glob(".*.tmp")), "no temporary file stays behind"
    return manifest, list(csv.DictReader(table.decode().splitlines()))


def test_a_corrupt_image_fails_its_well_alone_and_a_rerun_computes_only_it(tmp_path: Path) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=8, sites=1, channels=1, size=32, seed=4)[0]
    good = (plate / "A03_s1_w1.tif").read_bytes()
    (plate / "A03_s1_w1.tif").write_bytes(b"this is not a TIFF file")
    out = tmp_path / "out"
    code, summary, stderr = _run(str(plate), "--output", str(out), cwd=tmp_path)
    assert code == 1, stderr
    outcome = summary["plates"][0]
    assert outcome["state"] == "failed"
    # The exact words; the server's own path to the file stays out of the message.
    assert outcome["error"].startswith("1 of 8 wells failed: A03: cannot read A03_s1_w1.tif: "), outcome["error"]
    assert "not a TIFF" in outcome["error"] and str(plate) not in outcome["error"]
    manifest, rows = _pair(out / plate.name)
    assert manifest["failed_wells"] == ["A03"] and "cannot read" in manifest["well_errors"]["A03"]
    assert manifest["execution_id"] == outcome["execution_id"]
    assert sorted({row["well"] for row in rows}) == ["A01", "A02", "A04", "A05", "A06", "A07", "A08"]
    assert all(row["object_count"] != "" for row in rows), "the good wells were measured"

    (plate / "A03_s1_w1.tif").write_bytes(good)
    code, summary, stderr = _run(str(plate), "--output", str(out), cwd=tmp_path)
    assert code == 0, stderr
    manifest, rows = _pair(out / plate.name)
    assert (manifest["wells_computed"], manifest["wells_reused"], manifest["failed_wells"]) == (1, 7, [])
    assert manifest["execution_id"] == summary["plates"][0]["execution_id"] != outcome["execution_id"]
    assert len({row["well"] for row in rows}) == 8


async def test_a_step_that_raises_for_one_well_fails_that_well_only(tmp_path: Path) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=4, sites=1, channels=1, size=32, seed=4)[0]
    tifffile.imwrite(plate / "A02_s1_w1.tif", tifffile.imread(plate / "A02_s1_w1.tif")[:20, :20])
    pipeline = (
        f"[[steps]]\nfunc = 'tests.support.slow_steps:by_size'\ngate_dir = '{tmp_path}'\nfail_size = 20\n"
        "[[steps]]\nfunc = 'hcs_batch.steps:mean_intensity'\n"
    )
    async with open_backend(None, workers=2) as conn:
        with trio.fail_after(90):
            compiled = await conn.compile(plate_path=str(plate), plate_name="p", pipeline=pipeline)
            execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
            record = (await wait_terminal(conn, [execution_id]))[execution_id]
    assert record.state == "failed" and record.wells_done == 3
    assert record.error.startswith("1 of 4 wells failed: A02: ") and "planned failure for 20px" in record.error
    manifest, rows = _pair(tmp_path / "out" / "p")
    assert manifest["failed_wells"] == ["A02"] and [row["well"] for row in rows] == ["A01", "A03", "A04"]


# ---------------------------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only; otherwise the test is skipped and the simulated ENOSPC test below stands)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte (big writes, then ever smaller ones)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_never_pairs_a_new_table_with_an_old_manifest(small_disk: Path, tmp_path: Path) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=6, sites=1, channels=1, size=32, seed=4)[0]
    out = small_disk / "out"
    code, first, stderr = _run(str(plate), "--output", str(out), cwd=tmp_path)
    assert code == 0, stderr
    before, _ = _pair(out / plate.name)
    assert before["execution_id"] == first["plates"][0]["execution_id"]

    filler = _fill(small_disk)
    code, summary, stderr = _run(str(plate), "--output", str(out), "--force", cwd=tmp_path)
    assert code == 1, stderr
    assert summary["plates"][0]["state"] == "failed"
    after, _ = _pair(out / plate.name)
    assert after == before, "the previous pair stays exactly as it was"

    filler.unlink()
    code, summary, stderr = _run(str(plate), "--output", str(out), "--force", cwd=tmp_path)
    assert code == 0, stderr
    latest, rows = _pair(out / plate.name)
    assert latest["execution_id"] == summary["plates"][0]["execution_id"] != before["execution_id"]
    assert len(rows) == 6


@pytest.mark.parametrize("failing", [0, 1])
def test_a_simulated_enospc_on_either_file_leaves_the_previous_pair(
    failing: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plate_dir = tmp_path / "p"
    results.write_plate_results(plate_dir, [{"well": "A01", "site": 1, "channel": 1}], {"execution_id": "one"})
    before = (plate_dir / "wells.csv").read_bytes(), (plate_dir / "manifest.json").read_bytes()
    real, calls = results._write_temp, []

    def write_temp(path: Path, data: bytes) -> Path:
        calls.append(path.name)
        if len(calls) - 1 == failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(results, "_write_temp", write_temp)
    with pytest.raises(OSError, match="No space left"):
        results.write_plate_results(plate_dir, [{"well": "B01", "site": 1, "channel": 1}], {"execution_id": "two"})
    assert ((plate_dir / "wells.csv").read_bytes(), (plate_dir / "manifest.json").read_bytes()) == before
    assert sorted(p.name for p in plate_dir.iterdir()) == ["manifest.json", "wells.csv"]


def _objects_plate(plate_dir: Path, well: str, execution_id: str) -> None:
    """One finished well with two objects, then the plate's result set (with ``objects.parquet``)."""
    objects = {"well": [well] * 2, "site": [1, 1], "channel": [1, 1], "timepoint": [1, 1], "area": [3.0, 5.0]}
    row = {"well": well, "site": 1, "channel": 1, "timepoint": 1, "object_count": 2}
    results.write_well_result(plate_dir, well, "key", [row], [objects])
    results.write_plate_results(plate_dir, [row], {"execution_id": execution_id}, objects=True)


@pytest.mark.parametrize("failing", ["_write_temp", "_write_parquet_temp"])
def test_objects_parquet_joins_the_set_a_failed_write_leaves_the_previous_set(
    failing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    plate_dir = tmp_path / "p"
    _objects_plate(plate_dir, "A01", "one")
    manifest, _ = _pair(plate_dir)
    assert manifest["execution_id"] == "one" and pq.read_table(plate_dir / "objects.parquet").num_rows == 2
    before = {name: (plate_dir / name).read_bytes() for name in ("wells.csv", "objects.parquet", "manifest.json")}

    real = getattr(results, failing)

    def full_disk(*args: Any) -> Path:
        if failing == "_write_parquet_temp" or args[0].name == "manifest.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return Path(real(*args))

    monkeypatch.setattr(results, failing, full_disk)
    with pytest.raises(OSError, match="No space left"):
        _objects_plate(plate_dir, "B01", "two")
    assert {name: (plate_dir / name).read_bytes() for name in before} == before
    assert not list(plate_dir.glob(".*.tmp"))


def test_a_plate_without_objects_removes_an_earlier_objects_parquet(tmp_path: Path) -> None:
    plate_dir = tmp_path / "p"
    _objects_plate(plate_dir, "A01", "one")
    results.write_plate_results(plate_dir, [{"well": "A01", "site": 1, "channel": 1}], {"execution_id": "inline"})
    manifest = json.loads((plate_dir / "manifest.json").read_text())
    assert manifest["execution_id"] == "inline" and "objects_parquet_sha256" not in manifest
    assert not (plate_dir / "objects.parquet").exists(), "a stale objects.parquet would describe another run"
