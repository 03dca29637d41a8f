"""Classic MetaXpress exports: HTD, plate prefix, GUIDs, thumbnails, TimePoint/ZStep folders, omitted tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs_batch.errors import PlateError
from hcs_batch.server.layouts import choose_layout, plate_name, plate_root, read_plate
from tests.support.vendor_plates import make_metaxpress_plate, write_htd

GUID = "0C1D2E3F-4A5B-4C6D-8E9F-A0B1C2D3E4F5"


def test_export_with_guids_thumbnails_timepoints_and_zsteps(tmp_path: Path) -> None:
    truth = make_metaxpress_plate(tmp_path / "12345", wells=("A01", "C07"), sites=2, waves=2, timepoints=2, zsteps=3)
    index = read_plate(tmp_path / "12345")
    assert index.layout == "imagexpress"
    assert index.name == "Plate1"  # the HTD's name, not the folder's
    assert list(index.wells) == ["A01", "C07"]
    assert index.sites == (1, 2) and index.channels == (1, 2) and index.timepoints == (1, 2)
    assert index.z_planes == 3
    assert dict(index.channel_names) == {1: "DAPI", 2: "FITC"}
    assert index.warnings == () and index.ignored == ()
    # Per (well, site, t, wave): 1 thumbnail + the instrument's projection are skipped, 3 ZStep planes used.
    assert len(index.skipped) == 2 * len(truth)
    assert index.image_count == 3 * len(truth)
    site, timepoint, channels = index.wells["C07"][3]
    assert (site, timepoint) == (2, 2)
    channel, sources = channels[1]
    assert channel == 2
    assert [s.split("/")[:2] for s in sources] == [["TimePoint_2", f"ZStep_{z}"] for z in (1, 2, 3)]
    assert all(s.startswith("TimePoint_2/ZStep_") and "_C07_s2_w2" in s and "thumb" not in s for s in sources)


def test_omitted_site_and_wave_tokens_and_images_in_the_root(tmp_path: Path) -> None:
    plate = tmp_path / "exp"
    plate.mkdir()
    write_htd(plate / "Screen_07.HTD", wells=["B03", "H12"], sites=1, waves=1)
    image = np.zeros((8, 8), np.uint16)
    tifffile.imwrite(plate / f"Screen_07_B03{GUID}.TIF", image)  # any case of tif
    tifffile.imwrite(plate / "Screen_07_H12.tiff", image)
    tifffile.imwrite(plate / f"Screen_07_H12_thumb{GUID}.tif", image)
    index = read_plate(plate)
    assert index.name == "Screen_07"
    assert dict(index.wells) == {
        "B03": ((1, 1, ((1, (f"Screen_07_B03{GUID}.TIF",)),)),),
        "H12": ((1, 1, ((1, ("Screen_07_H12.tiff",)),)),),
    }
    assert index.skipped == (f"Screen_07_H12_thumb{GUID}.tif",)
    assert index.warnings == ()


def test_prefix_with_underscores_and_two_digit_sites(tmp_path: Path) -> None:
    plate = tmp_path / "p"
    (plate / "TimePoint_1").mkdir(parents=True)
    write_htd(plate / "My_Exp_01.HTD", wells=["D04"], sites=12, waves=3)
    image = np.zeros((8, 8), np.uint16)
    for site in (1, 10, 12):
        tifffile.imwrite(plate / "TimePoint_1" / f"My_Exp_01_D04_s{site}_w3{GUID}.tif", image)
    index = read_plate(plate)
    assert index.sites == (1, 10, 12) and index.channels == (3,)
    # The HTD promised 12 sites x 3 waves: 33 missing images, a warning that names some.
    (warning,) = index.warnings
    assert warning.startswith("33 image(s) promised by My_Exp_01.HTD are missing: D04 site 1 channel 1")


def test_1536_well_plate(tmp_path: Path) -> None:
    wells = ("A01", "P24", "Z48", "AA01", "AF48")
    make_metaxpress_plate(tmp_path / "p", wells=wells, sites=1, waves=1, x_wells=48, y_wells=32, size=32)
    index = read_plate(tmp_path / "p")
    assert list(index.wells) == list(wells)  # row order A..Z, AA..AF
    assert index.warnings == ()


def test_htd_promising_more_sites_than_present_is_a_warning_naming_them(tmp_path: Path) -> None:
    make_metaxpress_plate(tmp_path / "p", wells=("A01",), sites=2, waves=1, htd_sites=4, size=32)
    index = read_plate(tmp_path / "p")
    assert index.sites == (1, 2)
    (warning,) = index.warnings
    assert "2 image(s) promised by Plate1.HTD are missing" in warning
    assert "A01 site 3 channel 1" in warning and "A01 site 4 channel 1" in warning


def test_htd_selected_well_without_images_and_unknown_files_are_reported(tmp_path: Path) -> None:
    plate = tmp_path / "p"
    make_metaxpress_plate(plate, wells=("A01",), sites=1, waves=1, size=32)
    write_htd(plate / "Plate1.HTD", wells=["A01", "B02"], sites=1, waves=1)
    (plate / "TimePoint_1" / "notes.txt").write_text("x")
    (plate / "TimePoint_1" / "Plate1_A01.png").write_text("x")
    (plate / "stray").mkdir()
    index = read_plate(plate)
    assert index.ignored == ("TimePoint_1/Plate1_A01.png", "TimePoint_1/notes.txt", "stray/")
    text = "\n".join(index.warnings)
    assert "selects 1 well(s) with no image: B02" in text
    assert "3 file(s) not understood by the imagexpress layout were ignored" in text
    assert "notes.txt" in text


def test_missing_htd_is_a_warning_and_a_timepoint_folder_is_never_the_plate(tmp_path: Path) -> None:
    plate = tmp_path / "2024-05-01" / "4711"
    make_metaxpress_plate(plate, wells=("A01",), sites=1, waves=1, size=32)
    assert plate_root(plate / "TimePoint_1") == plate
    assert plate_name(plate_root(plate / "TimePoint_1")) == "Plate1"
    (plate / "Plate1.HTD").unlink()
    index = read_plate(plate)
    assert index.layout == "imagexpress" and index.name == "4711"
    assert any("no .HTD file" in w for w in index.warnings)


def test_metaseries_tags_are_kept_per_channel(tmp_path: Path) -> None:
    make_metaxpress_plate(tmp_path / "p", wells=("A01",), sites=1, waves=2, metaseries=True, size=32)
    metaseries = read_plate(tmp_path / "p").metadata["metaseries"]
    assert metaseries["1"] == {"pixel_size_x": 0.65, "pixel_size_y": 0.65, "pixel_size_unit": "um", "wavelength": 452}
    assert metaseries["2"]["wavelength"] == 520


def test_layout_override_and_unknown_layout(tmp_path: Path) -> None:
    names = ["Plate1.HTD", "A01_s1_w1.tif"]
    assert choose_layout(names).NAME == "imagexpress"
    assert choose_layout(names, "flat").NAME == "flat"
    with pytest.raises(PlateError, match="unknown plate layout 'cellomics'; choose one of omezarr, phenix"):
        choose_layout(names, "cellomics")
