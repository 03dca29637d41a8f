"""OME-Zarr HCS plates written by ome-zarr on the zarr library, NGFF 0.4 and 0.5."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hcs_batch.errors import PlateError
from hcs_batch.server.images import ImageError, load_plane
from hcs_batch.server.layouts import read_plate
from tests.support.vendor_plates import make_zarr_plate


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_plate_is_indexed_and_planes_load(tmp_path: Path, version: str) -> None:
    plate = tmp_path / "screen.ome.zarr"
    make_zarr_plate(plate, version=version, wells=("A/1", "B/12"), fields=2, channels=2, planes=3)
    assert (plate / ("zarr.json" if version == "0.5" else ".zattrs")).exists()
    index = read_plate(plate)
    assert index.layout == "omezarr" and index.name == "ZarrPlate"
    assert index.metadata["ngff_version"] == version
    assert list(index.wells) == ["A01", "B12"]
    assert index.sites == (1, 2) and index.channels == (1, 2) and index.z_planes == 3 and index.timepoints == (1,)
    assert dict(index.channel_names) == {1: "Hoechst", 2: "Tubulin"}
    site, timepoint, channels = index.wells["B12"][1]
    assert (site, timepoint) == (2, 1)
    channel, sources = channels[1]
    assert (channel, sources) == (2, tuple(f"zarr:B/12/1/s0#1,{z}" for z in range(3)))
    import zarr

    stack = np.asarray(zarr.open_array(str(plate / "B/12/1/s0"), mode="r"))[1]
    assert np.array_equal(load_plane(index.path, sources), stack.max(axis=0))
    assert np.array_equal(load_plane(index.path, sources[:1]), stack[0])


def test_missing_well_group_is_a_warning_and_the_good_wells_remain(tmp_path: Path) -> None:
    plate = tmp_path / "p.zarr"
    make_zarr_plate(plate, version="0.5", wells=("A/1", "B/3", "C/5"), fields=1, channels=1)
    shutil.rmtree(plate / "B" / "3")
    index = read_plate(plate)
    assert list(index.wells) == ["A01", "C05"]
    (warning,) = index.warnings
    assert "B/3 (missing well group)" in warning and str(plate) in warning


def test_hostile_paths_in_metadata_are_refused(tmp_path: Path) -> None:
    plate = tmp_path / "p.zarr"
    make_zarr_plate(plate, version="0.4", wells=("A/1",), fields=1, channels=1)
    attrs = json.loads((plate / ".zattrs").read_text())
    attrs["plate"]["wells"].append({"path": "../../etc", "rowIndex": 0, "columnIndex": 0})
    (plate / ".zattrs").write_text(json.dumps(attrs))
    well_attrs = json.loads((plate / "A/1/.zattrs").read_text())
    well_attrs["well"]["images"].append({"path": "/abs"})
    (plate / "A/1/.zattrs").write_text(json.dumps(well_attrs))
    index = read_plate(plate)
    assert list(index.wells) == ["A01"]
    assert "'../../etc'" in index.warnings[0] and "'/abs'" in index.warnings[0]
    with pytest.raises(ImageError, match="outside the plate folder"):
        load_plane(index.path, ["zarr:../p.zarr/A/1/0/s0#0,0"])


def test_a_zarr_group_without_plate_metadata_is_a_plate_error(tmp_path: Path) -> None:
    import zarr

    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(PlateError, match="without OME-Zarr plate metadata"):
        read_plate(tmp_path / "g.zarr")


def test_a_time_axis_becomes_timepoints(tmp_path: Path) -> None:
    plate = tmp_path / "t.zarr"
    truth = make_zarr_plate(plate, version="0.4", wells=("C/4",), fields=1, channels=2, planes=2, timepoints=3)
    index = read_plate(plate)
    assert index.timepoints == (1, 2, 3) and index.channels == (1, 2) and index.z_planes == 2
    assert len(truth) == 3 * 2
    site, timepoint, channels = index.wells["C04"][2]
    assert (site, timepoint) == (1, 3)
    assert channels[1] == (2, ("zarr:C/4/0/s0#2,1,0", "zarr:C/4/0/s0#2,1,1"))
