"""plate_map.png: the plate's grid coloured by mean object count, written by the server for every completed plate."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hcs_batch.server.plate_map import (
    PLATE_MAP_FILE,
    numeric_columns,
    plate_format,
    render_plate_map,
    viridis,
    well_means,
    well_position,
    write_plate_map,
)
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import env


def test_format_is_the_smallest_standard_plate_holding_every_well() -> None:
    assert plate_format([]) == (8, 12)
    assert plate_format(["A01", "H12"]) == (8, 12)
    assert plate_format(["A01", "A13"]) == (16, 24)  # column 13 does not fit a 96-well plate
    assert plate_format(["I01"]) == (16, 24)  # row I neither
    assert plate_format(["P24"]) == (16, 24)
    assert plate_format(["Q01"]) == (32, 48)
    assert plate_format(["AF48", "junk"]) == (32, 48)
    assert well_position("B03") == (1, 2) and well_position("AF48") == (31, 47) and well_position("B3") == (1, 2)
    assert well_position("Z99") is None and well_position("well") is None and well_position("AG01") is None


def test_well_means_average_sites_and_channels_and_skip_non_numbers() -> None:
    rows = [
        {"well": "A01", "site": 1, "object_count": "4", "note": "x"},
        {"well": "A01", "site": 2, "object_count": "6", "note": "y"},
        {"well": "A02", "site": 1, "object_count": "", "note": ""},
        {"well": "B01", "site": 1, "object_count": "nan"},
    ]
    assert well_means(rows) == {"A01": 5.0}
    assert numeric_columns(rows) == ["object_count"]


def test_render_draws_a_picture_whose_colours_differ_by_value() -> None:
    low = render_plate_map("P", {"A01": 1.0, "A02": 9.0}, ["A01", "A02"], "count")
    assert low.startswith(b"\x89PNG")
    same = render_plate_map("P", {"A01": 9.0, "A02": 1.0}, ["A01", "A02"], "count")
    assert low != same  # the values, not only the grid, decide the picture


def test_render_colours_each_measured_well_by_its_value_and_names_the_plate() -> None:
    png = render_plate_map("Platte_Müller", {"A01": 0.0, "B02": 10.0}, ["A01", "B02", "C03"], "count")
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    pixels = [rgb.getpixel((x, y)) for y in range(rgb.height) for x in range(rgb.width)]
    low, high = (tuple(round(c * 255) for c in viridis(f)) for f in (0.0, 1.0))
    assert pixels.count(low) > 500 and pixels.count(high) > 500  # A01 at the low end, B02 at the high end
    assert viridis(-1.0) == viridis(0.0) and viridis(2.0) == viridis(1.0)  # clipped, as the GUI's scale is
    assert render_plate_map("Platte_Müller", {"A01": 0.0}, [], "count") != render_plate_map(
        "Platte_Meier", {"A01": 0.0}, [], "count"
    )  # the title is drawn


@pytest.mark.timeout(300)
def test_a_thousand_small_plates_complete_each_with_its_map(tmp_path: Path) -> None:
    """A screen of many small plates: the map of each (drawn on the server) must not starve the server's control
    loop. With matplotlib (~150 ms of server CPU per map) 1,000 one-well plates took minutes and some failed
    with "server lost: no reply to an execute request within 10 s"."""
    plates = make_plates(tmp_path / "plates", plates=1000, wells=1, size=32, seed=5)
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "run", *map(str, plates), "--output", str(out), "--json"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(out.glob(f"*/{PLATE_MAP_FILE}"))) == 1000


def test_write_never_fails_the_plate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    assert write_plate_map(missing, "P", [{"well": "A01", "object_count": 3}]) is None
    assert "could not write the plate map" in caplog.text
    written = write_plate_map(tmp_path, "P", [{"well": "A01", "object_count": 3}])
    assert written == tmp_path / PLATE_MAP_FILE and written.read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob("*.tmp"))


def test_headless_run_writes_the_plate_map(tmp_path: Path) -> None:
    plates = make_plates(tmp_path / "plates", plates=1, wells=14, size=64, seed=3)  # A01..A14: a 384-well grid
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "run", str(plates[0]), "--output", str(out)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    picture = out / plates[0].name / PLATE_MAP_FILE
    with Image.open(picture) as image:
        assert image.mode == "RGB" and image.width > 300
    with open(out / plates[0].name / "wells.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    means = well_means(rows)
    assert set(means) == {f"A{c:02d}" for c in range(1, 15)}
    # The same drawing from the same rows: the server drew the mean object count per well.
    expected = render_plate_map(plates[0].name, means, list(means), "mean object count per well")
    assert picture.read_bytes() == expected
