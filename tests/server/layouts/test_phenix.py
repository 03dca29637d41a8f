"""Opera Phenix / Operetta (Harmony) exports, and hostile Index XML."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs_batch.errors import PlateError
from hcs_batch.server.layouts import plate_name, read_plate
from tests.support.vendor_plates import make_phenix_plate, phenix_index_xml


def test_export_with_images_folder(tmp_path: Path) -> None:
    truth = make_phenix_plate(tmp_path / "PHX__2026-01-01", wells=((1, 1), (16, 24)), fields=2, planes=3, timepoints=2)
    index = read_plate(tmp_path / "PHX__2026-01-01")
    assert index.layout == "phenix" and index.name == "PHX-0001"
    assert list(index.wells) == ["A01", "P24"]
    assert index.sites == (1, 2) and index.channels == (1, 2) and index.timepoints == (1, 2)
    assert index.z_planes == 3
    assert dict(index.channel_names) == {1: "Hoechst 33342", 2: "Alexa 488"}
    assert index.image_count == 3 * len(truth)
    site, timepoint, channels = index.wells["P24"][-1]
    assert (site, timepoint) == (2, 2)
    assert channels[0] == (
        1,
        tuple(f"Images/r16c24f02p0{z}-ch1sk2fk1fl1.tiff" for z in (1, 2, 3)),
    )
    assert index.warnings == ()


def test_index_in_the_plate_folder_named_index_xml(tmp_path: Path) -> None:
    make_phenix_plate(tmp_path / "m", fields=1, channels=1)
    plate = tmp_path / "flat_export"
    shutil.copytree(tmp_path / "m" / "Images", plate)
    (plate / "Index.idx.xml").rename(plate / "Index.xml")
    index = read_plate(plate)
    assert index.layout == "phenix"
    assert index.wells["A01"][0][2][0][1] == ("r01c01f01p01-ch1sk1fk1fl1.tiff",)


@pytest.mark.parametrize("place", ["root", "Images"])
@pytest.mark.parametrize("index_name", ["Index.idx.xml", "Index.ref.xml", "Index.xml"])
def test_every_index_name_is_found_in_the_plate_folder_or_in_images(
    tmp_path: Path, index_name: str, place: str
) -> None:
    make_phenix_plate(tmp_path / "m", wells=((2, 3),), fields=2, channels=1)
    plate = tmp_path / "export"
    if place == "root":  # images and index side by side in the plate folder
        shutil.copytree(tmp_path / "m" / "Images", plate)
        folder, prefix = plate, ""
    else:
        shutil.copytree(tmp_path / "m", plate)
        folder, prefix = plate / "Images", "Images/"
    (folder / "Index.idx.xml").rename(folder / index_name)
    index = read_plate(plate)
    assert (index.layout, index.name, list(index.wells), index.sites) == ("phenix", "PHX-0001", ["B03"], (1, 2))
    assert index.wells["B03"][1][2] == ((1, (f"{prefix}r02c03f02p01-ch1sk1fk1fl1.tiff",)),)
    assert index.warnings == () and index.ignored == ()


def test_missing_and_unlisted_files_are_reported(tmp_path: Path) -> None:
    make_phenix_plate(tmp_path / "p", fields=1, channels=2)
    images = tmp_path / "p" / "Images"
    (images / "r02c03f01p01-ch2sk1fk1fl1.tiff").unlink()
    tifffile.imwrite(images / "r09c09f01p01-ch1sk1fk1fl1.tiff", np.zeros((4, 4), np.uint16))
    index = read_plate(tmp_path / "p")
    assert index.wells["B03"][0][2] == ((1, ("Images/r02c03f01p01-ch1sk1fk1fl1.tiff",)),)
    text = "\n".join(index.warnings)
    assert "1 image(s) listed in" in text and "r02c03f01p01-ch2sk1fk1fl1.tiff" in text
    assert index.ignored == ("Images/r09c09f01p01-ch1sk1fk1fl1.tiff",)


def test_corrupt_index_is_a_plate_error_naming_the_file(tmp_path: Path) -> None:
    make_phenix_plate(tmp_path / "p", fields=1, channels=1)
    index_file = tmp_path / "p" / "Images" / "Index.idx.xml"
    index_file.write_text(index_file.read_text()[:300])
    with pytest.raises(
        PlateError, match=r"Index.idx.xml is not a usable Index XML: malformed XML: no element found at line 2"
    ):
        read_plate(tmp_path / "p")
    with pytest.raises(PlateError, match=r"Index\.idx\.xml"):
        plate_name(tmp_path / "p")


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',  # billion laughs
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',  # external entity
        '<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd">',
    ],
)
def test_dtds_and_entities_are_refused(tmp_path: Path, prolog: str) -> None:
    make_phenix_plate(tmp_path / "p", fields=1, channels=1)
    index_file = tmp_path / "p" / "Images" / "Index.idx.xml"
    text = index_file.read_text().replace("<PlateID>PHX-0001</PlateID>", "<PlateID>&b;</PlateID>")
    head, _, body = text.partition("\n")
    index_file.write_text(f"{head}\n{prolog}\n{body}")
    with pytest.raises(PlateError, match="DTD or entity declarations is refused"):
        read_plate(tmp_path / "p")


def test_urls_leaving_the_folder_are_refused(tmp_path: Path) -> None:
    plate = tmp_path / "p" / "Images"
    plate.mkdir(parents=True)
    secret = tmp_path / "secret.tiff"
    tifffile.imwrite(secret, np.zeros((4, 4), np.uint16))
    tifffile.imwrite(plate / "r01c01f01p01-ch1sk1fk1fl1.tiff", np.zeros((4, 4), np.uint16))
    common = {"row": 1, "col": 1, "field": 1, "plane": 1, "timepoint": 0}
    entries = [
        {**common, "url": "r01c01f01p01-ch1sk1fk1fl1.tiff", "channel": 1},
        {**common, "url": "../../secret.tiff", "channel": 2},
        {**common, "url": str(secret), "channel": 3},
        {**common, "url": "C:\\secret.tiff", "channel": 4},
    ]
    (plate / "Index.idx.xml").write_text(phenix_index_xml(entries))
    index = read_plate(tmp_path / "p")
    assert index.channels == (1,)
    (warning,) = index.warnings
    assert warning.startswith("3 Image entries of") and "../../secret.tiff" in warning


def test_a_plate_whose_index_is_unreadable_is_named_by_its_folder(tmp_path: Path) -> None:
    from hcs_batch.server.layouts import plate_ref

    make_phenix_plate(tmp_path / "m1", fields=1, channels=1)
    assert plate_ref(tmp_path / "m1").name == "PHX-0001"
    (tmp_path / "m1" / "Images" / "Index.idx.xml").write_text("<EvaluationInputData>")
    ref = plate_ref(tmp_path / "m1")
    assert (ref.name, ref.path) == ("m1", tmp_path / "m1")
