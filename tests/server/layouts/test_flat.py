"""The flat layout: today's ``<well>_s<site>_w<channel>.tif`` names, omitted tokens, ``_z``/``_t``, 1,536 wells."""

from __future__ import annotations

from pathlib import Path

import pytest

from hcs_batch.errors import PlateError
from hcs_batch.server.layouts import read_plate
from hcs_batch.server.layouts.flat import index_from_names, parse_name
from hcs_batch.testing.plates import make_plates


def test_todays_synthetic_plates_are_flat(tmp_path: Path) -> None:
    (plate,) = make_plates(tmp_path, plates=1, wells=3, sites=2, channels=2, size=16)
    index = read_plate(plate)
    assert index.layout == "flat" and index.name == "plate_001"
    assert list(index.wells) == ["A01", "A02", "A03"]
    assert index.wells["A02"][1] == (2, 1, ((1, ("A02_s2_w1.tif",)), (2, ("A02_s2_w2.tif",))))
    assert index.warnings == ()


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("A01_s1_w1.tif", ("A01", 1, 1, 1, 1)),
        ("a01.TIF", ("A01", 1, 1, 1, 1)),
        ("B12_w2_z3.tiff", ("B12", 1, 2, 3, 1)),
        ("AF48_s2_t5.tif", ("AF48", 2, 1, 1, 5)),
        ("C03_t2_z1_w3_s4.tif", ("C03", 4, 3, 1, 2)),
        ("A01_s1_s2.tif", None),  # a token twice
        ("AG01.tif", None),  # beyond row AF
        ("A49.tif", None),  # beyond column 48
        ("A01_s0.tif", None),
        ("A01_x1.tif", None),
        ("A01.png", None),
    ],
)
def test_names(name: str, parsed: tuple[str, int, int, int, int] | None) -> None:
    assert parse_name(name) == parsed


def test_z_planes_and_timepoints_group_into_image_sets(tmp_path: Path) -> None:
    names = ["A01_w1_z2_t1.tif", "A01_w1_z1_t1.tif", "A01_w1_z1_t2.tif", "A01_w2_z1_t1.tif", "notes.txt", ".DS_Store"]
    index = index_from_names(tmp_path, names)
    assert dict(index.wells) == {
        "A01": (
            (1, 1, ((1, ("A01_w1_z1_t1.tif", "A01_w1_z2_t1.tif")), (2, ("A01_w2_z1_t1.tif",)))),
            (1, 2, ((1, ("A01_w1_z1_t2.tif",)),)),
        )
    }
    assert index.z_planes == 2 and index.timepoints == (1, 2)
    # Not understood: reported (hidden files are not), never silently dropped.
    assert index.ignored == ("notes.txt",)
    assert index.warnings == (
        "4 image(s) missing where the plate's other images have them (it runs without them): A01_s1_w2_z2_t1, "
        "A01_s1_w1_z2_t2, A01_s1_w2_z1_t2, A01_s1_w2_z2_t2",
        "1 file(s) not understood by the flat layout were ignored: notes.txt",
    )


def test_the_same_image_twice_is_a_warning() -> None:
    index = index_from_names("/p", ["A01.tif", "A01_s1_w1.tif"])
    assert len(index.wells["A01"]) == 1
    assert "1 image(s) repeat a well/site/channel/plane" in index.warnings[0]


def test_no_image_is_a_plate_error_naming_what_is_there(tmp_path: Path) -> None:
    with pytest.raises(PlateError, match=r"holds no images named <well>_s<site>_w<channel>.tif.*readme.md"):
        index_from_names(tmp_path, ["readme.md"])
    with pytest.raises(PlateError, match="does not exist"):
        read_plate(tmp_path / "nope")


def test_a_site_missing_in_one_well_is_a_warning_naming_it(tmp_path: Path) -> None:
    (plate,) = make_plates(tmp_path, plates=1, wells=3, sites=2, channels=1, size=16)
    (plate / "A02_s2_w1.tif").unlink()
    index = read_plate(plate)
    assert index.warnings == (
        "1 image(s) missing where the plate's other images have them (it runs without them): A02_s2_w1",
    )
    assert len(index.wells["A02"]) == 1 and len(index.wells["A01"]) == 2
