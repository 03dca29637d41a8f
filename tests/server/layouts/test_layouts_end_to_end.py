"""``hcs-batch run`` / ``compile`` / ``inspect`` on vendor layouts, through the real embedded server and workers."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from tests.support.columns import WELLS_CSV_LEADING_COLUMNS
from tests.support.serverproc import env
from tests.support.vendor_plates import Truth, make_metaxpress_plate, make_phenix_plate, make_zarr_plate


def _hcs(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    environment = env()
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


def _counts(wells_csv: Path) -> Truth:
    rows = csv.DictReader(wells_csv.read_text().splitlines())
    return {(r["well"], int(r["site"]), int(r["channel"]), int(r["timepoint"])): int(r["object_count"]) for r in rows}


CELLPROFILER_ONE_CHANNEL = [  # issue 11's names, in its order, for a one-channel plate
    "well", "site", "channel", "timepoint", "ObjectNumber", "Location_Center_X", "Location_Center_Y",
    "AreaShape_Area", "AreaShape_Perimeter", "AreaShape_Eccentricity", "AreaShape_Solidity",
    "AreaShape_MajorAxisLength", "AreaShape_MinorAxisLength", "Intensity_MeanIntensity",
    "Intensity_IntegratedIntensity", "Intensity_MaxIntensity",
]  # fmt: skip


def _objects_match_wells_csv(plate_dir: Path) -> list[str]:
    """Check that for every row of wells.csv (one image set: well, site, channel, timepoint) objects.parquet holds
    object_count objects of that well, site and timepoint, and that the manifest names the table's checksum;
    return the table's column names."""
    import hashlib

    rows = list(csv.DictReader((plate_dir / "wells.csv").read_text().splitlines()))
    table = pq.read_table(plate_dir / "objects.parquet")
    objects = table.to_pydict()
    per_image = Counter(zip(objects["well"], objects["site"], objects["timepoint"], strict=True))
    assert rows and table.num_rows > 0
    for row in rows:
        assert per_image[(row["well"], int(row["site"]), int(row["timepoint"]))] == int(row["object_count"]), row
    assert set(per_image) == {(r["well"], int(r["site"]), int(r["timepoint"])) for r in rows}
    manifest = json.loads((plate_dir / "manifest.json").read_text())
    digest = hashlib.sha256((plate_dir / "objects.parquet").read_bytes()).hexdigest()
    assert manifest["objects_parquet_sha256"] == digest
    return list(table.column_names)


def test_run_metaxpress_phenix_and_zarr_plates_counts_match_truth(tmp_path: Path) -> None:
    # A real-looking MetaXpress export: plate prefix, GUIDs, thumbnails, two timepoints of three ZSteps (the
    # instrument's projections beside them), an LZW-compressed file set, and an HTD promising a third site.
    mx = tmp_path / "2026-12-04" / "4711"
    mx_truth = make_metaxpress_plate(
        mx,
        name="Screen A",
        wells=("B02", "C03"),
        sites=2,
        waves=2,
        timepoints=2,
        zsteps=3,
        size=96,
        htd_sites=3,
        compression="lzw",
        metaseries=True,
        seed=11,
    )
    phx = tmp_path / "PHX__Measurement 1"
    phx_truth = make_phenix_plate(phx, wells=((1, 2), (4, 5)), fields=2, planes=2, channels=1, size=96, seed=12)
    zarr_plate = tmp_path / "zplate.ome.zarr"
    zarr_truth = make_zarr_plate(
        zarr_plate, version="0.5", wells=("A/1", "B/2"), fields=1, channels=2, size=96, seed=13
    )
    # An OME-Zarr plate whose metadata names a well group the store lacks: a warning naming it, the others run.
    gapped = tmp_path / "gapped.ome.zarr"
    gapped_truth = make_zarr_plate(
        gapped, version="0.4", wells=("A/1", "B/3", "C/5"), fields=1, channels=1, size=64, seed=14, name="Gapped"
    )
    shutil.rmtree(gapped / "B" / "3")
    out = tmp_path / "results"
    # The MetaXpress plate is named through its TimePoint_1 folder: it must still be "Screen A".
    plates = (str(mx / "TimePoint_1"), str(phx), str(zarr_plate), str(gapped))
    result = _hcs("run", *plates, "--output", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [p["plate"] for p in summary["plates"]] == ["Screen A", "PHX-0001", "ZarrPlate", "Gapped"]
    assert summary["counts"] == {"completed": 4}
    (mx_outcome, phx_outcome, zarr_outcome, gapped_outcome) = summary["plates"]
    (gap_warning,) = gapped_outcome["warnings"]
    assert "B/3 (missing well group)" in gap_warning and str(gapped) in gap_warning
    assert _counts(out / "Gapped" / "wells.csv") == {k: v for k, v in gapped_truth.items() if k[0] != "B03"}
    # The HTD promised site 3: a warning naming the missing images, in the JSON and on stderr; the plate still ran.
    (warning,) = mx_outcome["warnings"]
    assert "8 image(s) promised by Screen A.HTD are missing: B02 site 3 channel 1 timepoint 1" in warning
    assert "Screen A: warning: 8 image(s) promised" in result.stderr
    assert phx_outcome["warnings"] == zarr_outcome["warnings"] == []
    assert _counts(out / "Screen A" / "wells.csv") == mx_truth
    assert _counts(out / "PHX-0001" / "wells.csv") == phx_truth
    assert _counts(out / "ZarrPlate" / "wells.csv") == zarr_truth
    header = (out / "Screen A" / "wells.csv").read_text().splitlines()[0].split(",")
    assert header[:9] == WELLS_CSV_LEADING_COLUMNS
    manifest = json.loads((out / "Screen A" / "manifest.json").read_text())
    assert manifest["layout"] == "imagexpress" and manifest["plate_path"] == str(mx)
    assert manifest["z_planes"] == 3 and manifest["timepoints"] == 2 and manifest["projection"] == "max"
    assert manifest["channel_names"] == {"1": "DAPI", "2": "FITC"}
    assert manifest["image_metadata"]["metaseries"]["2"]["wavelength"] == 520
    assert manifest["compile_warnings"] == [warning]
    # objects.parquet agrees with wells.csv image set by image set (two timepoints, z max-projected, two sites).
    mx_columns = _objects_match_wells_csv(out / "Screen A")
    assert "Intensity_MeanIntensity_DAPI" in mx_columns and "Intensity_MeanIntensity_FITC" in mx_columns
    assert "Intensity_MeanIntensity" not in mx_columns
    phx_columns = _objects_match_wells_csv(out / "PHX-0001")  # one channel: the names without a suffix
    assert [c for c in phx_columns if c in CELLPROFILER_ONE_CHANNEL] == CELLPROFILER_ONE_CHANNEL
    assert _objects_match_wells_csv(out / "ZarrPlate") and _objects_match_wells_csv(out / "Gapped")


def test_compile_with_a_layout_override_and_a_projection(tmp_path: Path) -> None:
    mx = tmp_path / "plate"
    make_metaxpress_plate(mx, wells=("A01",), sites=1, waves=1, zsteps=2, size=64, seed=3)
    # Forced flat, a MetaXpress export has no flat images: a compile failure that names the folder.
    result = _hcs("compile", str(mx), "--layout", "flat", "--json")
    assert result.returncode == 1
    (plate,) = json.loads(result.stdout)["plates"]
    assert plate["state"] == "failed" and "holds no images named <well>_s<site>_w<channel>.tif" in plate["error"]
    # The projection reaches the workers: the mean of a bright plane and a dimmer copy is dimmer than their max.
    means = {}
    for projection in ("max", "mean"):
        out = tmp_path / projection
        ran = _hcs("run", str(mx), "--layout", "imagexpress", "--projection", projection, "--output", str(out))
        assert ran.returncode == 0, ran.stderr
        assert json.loads((out / "Plate1" / "manifest.json").read_text())["projection"] == projection
        (row,) = csv.DictReader((out / "Plate1" / "wells.csv").read_text().splitlines())
        means[projection] = float(row["mean_intensity"])
    assert means["mean"] < 0.9 * means["max"], means
    bad = _hcs("compile", str(mx), "--layout", "nope")
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_inspect_prints_what_the_layout_found(tmp_path: Path) -> None:
    mx = tmp_path / "4711"
    make_metaxpress_plate(mx, wells=("A01", "B02"), sites=2, waves=2, zsteps=3, timepoints=2, size=32)
    (mx / "TimePoint_1" / "notes.txt").write_text("x")
    result = _hcs("inspect", str(mx), "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert {k: found[k] for k in ("layout", "plate", "wells", "sites", "channels", "z_planes", "timepoints")} == {
        "layout": "imagexpress",
        "plate": "Plate1",
        "wells": ["A01", "B02"],
        "sites": [1, 2],
        "channels": [1, 2],
        "z_planes": 3,
        "timepoints": [1, 2],
    }
    assert found["ignored"] == ["TimePoint_1/notes.txt"] and len(found["skipped"]) == 2 * 2 * 2 * 2 * 2
    text = _hcs("inspect", str(mx))
    assert text.returncode == 0
    for line in (
        "plate      Plate1  (",
        "layout     imagexpress",
        "wells      2 (A01, B02)",
        "sites      2 (1, 2)",
        "channels   2 (1 DAPI, 2 FITC)",
        "z-planes   3",
        "timepoints 2 (1, 2)",
        "images     48",  # 2 wells x 2 sites x 2 channels x 2 timepoints x 3 z-planes
        "skipped    32 (",  # a thumbnail and the instrument's projection per image set
        "ignored    1 (TimePoint_1/notes.txt)",
    ):
        assert f"\n{line}" in f"\n{text.stdout}", line
    assert "warning: 1 file(s) not understood by the imagexpress layout were ignored: TimePoint_1/notes.txt" in (
        text.stdout
    )
    # --layout NAME overrides the detection: forced flat, the export holds no flat images (exit 2, one line naming
    # the folder); named through its TimePoint_1 folder with the right layout, it is still the plate Plate1.
    forced = _hcs("inspect", str(mx), "--layout", "flat")
    assert forced.returncode == 2 and forced.stderr.count("\n") == 1 and forced.stdout == ""
    assert f"plate folder {mx} holds no images named <well>_s<site>_w<channel>.tif" in forced.stderr
    chosen = _hcs("inspect", str(mx / "TimePoint_1"), "--layout", "imagexpress", "--json")
    assert chosen.returncode == 0, chosen.stderr
    assert {k: json.loads(chosen.stdout)[k] for k in ("layout", "plate", "path")} == {
        "layout": "imagexpress",
        "plate": "Plate1",
        "path": str(mx),
    }
    missing = _hcs("inspect", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr


def test_a_corrupt_index_fails_its_plate_alone(tmp_path: Path) -> None:
    bad = tmp_path / "bad_export"
    make_phenix_plate(bad, wells=((1, 1),), fields=1, channels=1, size=16)
    index_file = bad / "Images" / "Index.idx.xml"
    index_file.write_text(index_file.read_text()[:200])
    good = tmp_path / "good"
    make_metaxpress_plate(good, wells=("A01",), sites=1, waves=1, size=16)
    result = _hcs("compile", str(bad), str(good), "--json")
    assert result.returncode == 1, result.stderr
    bad_outcome, good_outcome = json.loads(result.stdout)["plates"]
    assert bad_outcome["plate"] == "bad_export" and bad_outcome["state"] == "failed"
    assert f"{index_file} is not a usable Index XML: malformed XML" in bad_outcome["error"]
    assert good_outcome["plate"] == "Plate1" and good_outcome["state"] == "compiled"


def test_two_exports_carrying_one_plate_name_keep_their_folder_names(tmp_path: Path) -> None:
    for folder in ("run_a", "run_b"):
        make_metaxpress_plate(tmp_path / folder, name="Plate1", wells=("A01",), sites=1, waves=1, size=16)
    result = _hcs("compile", str(tmp_path / "run_a" / "TimePoint_1"), str(tmp_path / "run_b"), "--json")
    assert result.returncode == 0, result.stderr
    assert [p["plate"] for p in json.loads(result.stdout)["plates"]] == ["run_a", "run_b"]


def test_a_1536_well_plate_runs_every_well_and_names_what_it_ignored(tmp_path: Path) -> None:
    # Issue 10: 1,152 of a 1,536-well plate's wells (rows Q-AF, columns 25-48) were skipped silently, exit 0.
    from hcs_batch.testing.plates import make_plates

    plate = make_plates(tmp_path / "plates", plates=1, wells=1, sites=1, channels=1, size=48, seed=5)[0]
    image = (plate / "A01_s1_w1.tif").read_bytes()
    wells = ["A01", "A48", "P25", "Q01", "AF48"]
    for well in wells[1:]:
        (plate / f"{well}_s1_w1.tif").write_bytes(image)
    (plate / "AG01_s1_w1.tif").write_bytes(image)  # beyond row AF: not a well of any plate
    out = tmp_path / "out"
    result = _hcs("run", str(plate), "--output", str(out), "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)["plates"][0]
    assert outcome["wells_total"] == 5
    assert outcome["warnings"] == ["1 file(s) not understood by the flat layout were ignored: AG01_s1_w1.tif"]
    assert f"{plate.name}: warning: 1 file(s) not understood" in result.stderr
    rows = csv.DictReader((out / plate.name / "wells.csv").read_text().splitlines())
    assert sorted(row["well"] for row in rows) == sorted(wells)
