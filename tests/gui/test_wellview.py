"""The well view's loader: the server's plate index and image loader, so every layout shows (no Qt loop needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guest_mode.wellview import load_well_image, stretch, well_choices
from hcs_batch.server.images import ImageError, load_plane
from hcs_batch.server.layouts import read_plate
from tests.support.vendor_plates import make_phenix_plate, make_zarr_plate


def test_stretch_maps_percentiles_to_the_8_bit_range() -> None:
    plane = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    pixels, low, high = stretch(plane)
    assert pixels.dtype == np.uint8 and pixels.shape == (100, 100)
    assert pixels.min() == 0 and pixels.max() == 255
    assert 40 < low < 60 and 9_970 < high < 9_990
    flat, lo, hi = stretch(np.full((4, 4), 7, np.uint16))  # a flat plane: no division by zero
    assert hi > lo and flat.max() == 0


def test_an_ome_zarr_well_projects_its_z_planes_and_gets_its_own_objects(tmp_path: Path) -> None:
    plate = tmp_path / "screen.ome.zarr"
    make_zarr_plate(plate, wells=("A/1", "B/12"), fields=2, channels=2, planes=3)
    index = read_plate(plate)
    assert well_choices(index, "B12") == ([1, 2], [1, 2])
    objects = tmp_path / "objects.parquet"
    table = {
        "well": ["B12", "B12", "B12", "A01"],
        "site": [2, 2, 1, 2],
        "channel": [1, 1, 1, 1],
        "timepoint": [1, 1, 1, 1],
        "Location_Center_X": [3.0, 10.0, 20.0, 30.0],
        "Location_Center_Y": [4.0, 11.0, 21.0, 31.0],
        "AreaShape_EquivalentDiameter": [5.0, 6.0, 7.0, 8.0],
    }
    pq.write_table(pa.table(table), objects)
    image = load_well_image(index, "B12", 2, 2, objects_path=objects)
    _, _, channels = index.wells["B12"][1]
    expected, _, _ = stretch(load_plane(index.path, dict(channels)[2], "max"))
    assert np.array_equal(image.pixels, expected)
    assert (image.well, image.site, image.channel, image.timepoint) == ("B12", 2, 2, 1)
    assert image.objects.tolist() == [[3.0, 4.0, 5.0], [10.0, 11.0, 6.0]]  # this well and site only
    # No results yet: the image alone.
    assert load_well_image(index, "A01", 1, 1, objects_path=tmp_path / "missing.parquet").objects.shape == (0, 3)


def test_a_phenix_well_and_what_the_index_lacks(tmp_path: Path) -> None:
    make_phenix_plate(tmp_path / "phx", wells=((1, 1), (2, 3)), fields=2, channels=2)
    index = read_plate(tmp_path / "phx")
    image = load_well_image(index, "B03", 2, 1)
    assert image.pixels.shape == (64, 64) and image.objects.shape == (0, 3)
    with pytest.raises(KeyError, match="well H12 has no images"):
        load_well_image(index, "H12", 1, 1)
    with pytest.raises(KeyError, match="no site 9"):
        load_well_image(index, "B03", 9, 1)
    with pytest.raises(KeyError, match="no channel 5"):
        load_well_image(index, "B03", 1, 5)
    source = next(iter(dict(index.wells["B03"][0][2]).values()))[0]
    (Path(index.path) / source).write_bytes(b"broken")
    with pytest.raises(ImageError, match="cannot read image"):
        load_well_image(index, "B03", 1, 1)
