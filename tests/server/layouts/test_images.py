"""load_plane: every TIFF codec through imagecodecs, z projection, refusing what is not one 2-D grey plane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs_batch.server.images import ImageError, load_plane, metaseries_summary, source_path

RNG = np.random.default_rng(5)
IMAGE16 = RNG.integers(0, 4000, size=(48, 64), dtype=np.uint16)


@pytest.mark.parametrize("compression", ["lzw", "zstd", "deflate", "packbits", "lzma"])
def test_lossless_codecs_read_back_exactly(tmp_path: Path, compression: str) -> None:
    tifffile.imwrite(tmp_path / "a.tif", IMAGE16, compression=compression)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.pages.first.compression != tifffile.COMPRESSION.NONE
    assert np.array_equal(load_plane(tmp_path, ["a.tif"]), IMAGE16)


def test_jpeg_reads_back_close(tmp_path: Path) -> None:
    image = (IMAGE16 >> 4).astype(np.uint8)
    tifffile.imwrite(tmp_path / "j.tif", image, compression="jpeg", compressionargs={"level": 95})
    got = load_plane(tmp_path, ["j.tif"])
    assert got.shape == image.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - image.astype(int)).mean() < 4


def test_rgb_and_multi_page_images_are_refused_naming_file_and_shape(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((4, 16, 16), np.uint16), photometric="minisblack")
    with pytest.raises(ImageError, match=r"rgb.tif: shape \(16, 16, 3\) is not one 2-D grey plane"):
        load_plane(tmp_path, ["rgb.tif"])
    with pytest.raises(ImageError, match=r"stack.tif: shape \(4, 16, 16\) is not one 2-D grey plane"):
        load_plane(tmp_path, ["stack.tif"])
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageError, match=r"cannot read image .*junk\.tif"):
        load_plane(tmp_path, ["junk.tif"])


def test_z_planes_are_max_projected_by_default(tmp_path: Path) -> None:
    planes = [RNG.integers(0, 1000, size=(8, 8), dtype=np.uint16) for _ in range(3)]
    for z, plane in enumerate(planes):
        tifffile.imwrite(tmp_path / f"z{z}.tif", plane)
    names = [f"z{z}.tif" for z in range(3)]
    stack = np.stack(planes)
    assert np.array_equal(load_plane(tmp_path, names), stack.max(axis=0))
    assert np.allclose(load_plane(tmp_path, names, "mean"), stack.mean(axis=0))
    assert np.array_equal(load_plane(tmp_path, names, "min"), stack.min(axis=0))
    with pytest.raises(ImageError, match="unknown projection 'median'; choose one of max, min, mean, sum"):
        load_plane(tmp_path, names, "median")
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((4, 4), np.uint16))
    with pytest.raises(ImageError, match="different shapes"):
        load_plane(tmp_path, [*names, "small.tif"])


@pytest.mark.parametrize("bad", ["../x.tif", "/etc/passwd", "a/../../x.tif", "C:/x.tif", "\\\\host\\x.tif"])
def test_sources_never_leave_the_plate_folder(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ImageError, match="outside the plate folder"):
        source_path(tmp_path, bad)


def test_metaseries_summary_is_empty_without_tags(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", IMAGE16)
    assert metaseries_summary(tmp_path / "a.tif") == {}
