"""The fast building blocks give what the numpy/scipy calls they replace give (hcs_batch.imageops' promise)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hcs_batch import imageops


def _blobs(seed: int, shape: tuple[int, int] = (97, 131), dtype: type = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.random(shape), 3) * 4000 + rng.normal(200, 20, shape)
    return np.clip(image, 0, np.iinfo(dtype).max).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_percentiles_equal_numpy(dtype: type, seed: int) -> None:
    image = _blobs(seed, dtype=np.uint16).astype(dtype)
    qs = (0.0, 0.5, 1.0, 37.3, 50.0, 99.5, 100.0)
    assert imageops.percentiles(image, qs) == pytest.approx(list(np.percentile(image, qs)), abs=1e-9)


def test_percentiles_of_a_constant_and_a_single_pixel() -> None:
    assert imageops.percentiles(np.full((5, 5), 7, np.uint16), (1, 99)) == [7, 7]
    assert imageops.percentiles(np.array([[65535]], np.uint16), (0, 50, 100)) == [65535, 65535, 65535]


def test_rescale_matches_the_formula_and_leaves_the_input_alone() -> None:
    image = _blobs(3).astype(np.float32)
    before = image.copy()
    out = imageops.rescale(image, 300.0, 2000.0)
    assert out.dtype == np.float32 and out is not image
    np.testing.assert_allclose(out, np.clip((before - 300.0) / 1700.0, 0, 1), atol=1e-6)
    np.testing.assert_array_equal(image, before)
    assert not imageops.rescale(image, 5.0, 5.0).any()


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.7])
def test_gaussian_equals_scipy(sigma: float) -> None:
    image = _blobs(4)
    expected = ndimage.gaussian_filter(image.astype(np.float32), sigma)
    np.testing.assert_allclose(imageops.gaussian(image, sigma), expected, rtol=1e-5, atol=1e-2)
    np.testing.assert_array_equal(imageops.gaussian(image, 0), image.astype(np.float32))
    with pytest.raises(ValueError, match="sigma"):
        imageops.gaussian(image, -1)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_label_and_sizes_equal_scipy(connectivity: int) -> None:
    mask = np.random.default_rng(5).random((97, 131)) > 0.6  # many objects that 8-connectivity joins
    expected, count = ndimage.label(mask, ndimage.generate_binary_structure(2, connectivity))
    labels, found = imageops.label(mask, connectivity)
    assert found == count > 100
    # The same labels with the same numbers (raster order), diagonals included: split_touching relies on it.
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(imageops.object_sizes(labels, found), np.bincount(expected.ravel())[1:])
    with pytest.raises(ValueError, match="connectivity"):
        imageops.label(mask, 3)


def test_label_of_an_empty_mask() -> None:
    labels, count = imageops.label(np.zeros((8, 8), bool))
    assert count == 0 and not labels.any() and imageops.object_sizes(labels, 0).size == 0


def test_distance_equals_scipy_edt() -> None:
    image = _blobs(6)
    mask = image > np.median(image)
    assert 0 < mask.mean() < 1
    expected = ndimage.distance_transform_edt(mask).astype(np.float32)
    first = imageops.distance(mask)
    np.testing.assert_array_equal(first, expected)  # exactly scipy's, rounded to float32 (watershed ties)
    for other in (~mask, mask[::-1].copy(), mask):  # and the same bytes whatever ran before (OpenCV's root is not)
        imageops.distance(other)
        np.testing.assert_array_equal(imageops.distance(mask), first)
    assert np.isinf(imageops.distance(np.ones((4, 4), bool))).all()


def _numpy_otsu(data: np.ndarray, bins: int = 256) -> float:
    """The reference: Otsu on ``np.histogram`` (hcs_batch.steps before imageops)."""
    hist, edges = np.histogram(data, bins=bins, range=(float(data.min()), float(data.max())))
    centers = (edges[:-1] + edges[1:]) / 2
    weight_bg = np.cumsum(hist)
    weight_fg = weight_bg[-1] - weight_bg
    sum_bg = np.cumsum(hist * centers)
    mean_bg = sum_bg / np.maximum(weight_bg, 1)
    mean_fg = (sum_bg[-1] - sum_bg) / np.maximum(weight_fg, 1)
    between = weight_bg * weight_fg * (mean_bg - mean_fg) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


@pytest.mark.parametrize("seed", range(6))
def test_otsu_level_is_the_same_through_opencv_and_numpy(seed: int) -> None:
    image = np.random.default_rng(seed).gamma(2.0, 100.0, size=(120, 170)).astype(np.float32)
    image[0, 0] = image.max() + 1  # a single top pixel: OpenCV's histogram leaves the top edge out
    fast = imageops.otsu_level(image)  # OpenCV
    assert fast == _numpy_otsu(image)
    assert image.min() < fast < image.max()
    assert imageops.otsu_level(image.astype(np.float64)) == _numpy_otsu(image.astype(np.float64))
    as_uint16 = image.astype(np.uint16)
    assert imageops.otsu_level(as_uint16) == _numpy_otsu(as_uint16)
    assert imageops.otsu_level(np.full((3, 3), 5.0, np.float32)) == 5.0


def _whole_image_log_otsu(image: np.ndarray, bins: int = 256) -> np.ndarray:
    """steps.otsu_threshold(log=True) before it went band by band: one float32 copy of the whole image."""
    lo, hi = imageops.min_max(image)
    data = image.astype(np.float32)
    data -= np.float32(lo - max(hi - lo, 1e-12) * 1e-3)
    np.log(data, out=data)
    mask: np.ndarray = data > imageops.otsu_level(data, bins)
    return mask


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.float64, np.int32])
def test_log_otsu_band_by_band_is_the_whole_image_mask_bit_for_bit(seed: int, dtype: type) -> None:
    rng = np.random.default_rng(seed)
    image = (rng.gamma(2.0, 100.0, size=(301, 77)) * (1 + 9 * (rng.random((301, 77)) > 0.8))).astype(dtype)
    image[0, 0] = image.max() + 1  # one top pixel, in the first band only
    for rows in (1, 7, 128, 1000):  # bands that divide the rows or not, one band, one row each
        banded = imageops.log_otsu_mask(image, 256, rows)
        assert banded is not None and banded.dtype == np.bool_
        np.testing.assert_array_equal(banded, _whole_image_log_otsu(image))
    assert 0 < np.count_nonzero(banded) < image.size
    flat = np.full((5, 4), 7, dtype)
    with np.errstate(divide="ignore"):  # log(0) on a flat image, as before
        np.testing.assert_array_equal(imageops.log_otsu_mask(flat, 16, 2), _whole_image_log_otsu(flat, 16))
    assert imageops.log_otsu_mask(image[None], 256) is None  # not 2-D: the caller's whole-image path


def test_masked_mean() -> None:
    image = _blobs(8)
    mask = image > np.median(image)
    assert imageops.masked_mean(image, mask) == pytest.approx(float(image[mask].mean()), rel=1e-12)
    assert imageops.masked_mean(image, np.zeros_like(mask)) == 0.0
    cube = np.stack([image, image])
    assert imageops.masked_mean(cube, np.stack([mask, mask])) == pytest.approx(float(image[mask].mean()))


@pytest.mark.parametrize("connectivity", [1, 2])
def test_label_narrow_is_label_in_uint16_while_it_fits(connectivity: int) -> None:
    mask = np.random.default_rng(5).random((97, 131)) > 0.6
    labels, count = imageops.label_narrow(mask, connectivity)
    expected, found = imageops.label(mask, connectivity)
    assert labels.dtype == np.uint16 and count == found > 100
    np.testing.assert_array_equal(labels, expected)
    dots = np.zeros((520, 520), bool)
    dots[::2, ::2] = True  # 67,600 single pixels: more than uint16 numbers
    labels, count = imageops.label_narrow(dots, 1)
    assert labels.dtype == np.int32 and count == 260 * 260 and labels[518, 518] == count


def test_fill_holes_with_many_outside_backgrounds_equals_scipy() -> None:
    # Foreground stripes cut the border's background into many parts (the table-lookup path), with holes.
    mask = np.zeros((60, 80), bool)
    mask[:, 5::8] = True
    mask[20:30, 30:50] = True
    mask[24:26, 38:42] = False
    np.testing.assert_array_equal(imageops.fill_holes(mask), ndimage.binary_fill_holes(mask))
    assert imageops.fill_holes(mask)[25, 40]


def test_gaussian_in_place_overwrites_only_a_contiguous_float32_image_with_the_same_values() -> None:
    image = _blobs(5).astype(np.float32)
    expected = imageops.gaussian(image, 1.5)
    assert expected is not image
    out = imageops.gaussian(image, 1.5, in_place=True)
    assert out is image
    np.testing.assert_array_equal(out, expected)
    for other in (_blobs(5), _blobs(5).astype(np.float32)[:, ::2]):  # uint16; a strided view
        before = other.copy()
        out = imageops.gaussian(other, 1.5, in_place=True)
        assert out is not other and out.dtype == np.float32
        np.testing.assert_array_equal(other, before)
    zero = _blobs(5).astype(np.float32)
    assert imageops.gaussian(zero, 0.0, in_place=True) is zero and imageops.gaussian(zero, 0.0) is not zero
