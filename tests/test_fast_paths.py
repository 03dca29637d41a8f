"""The counter's and the measurement's fast paths give what the scikit-image / scipy code they replace gives.

Each reference below is the code of main before issue 16 (``split_touching`` with scipy's hole filling and EDT,
scikit-image's ``remove_small_objects``, ``label`` and ``relabel_sequential``; ``measure_objects`` entirely from
``regionprops_table``), so a fast path that drifts from it fails here, not in a benchmark.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage

from hcs_batch import imageops
from hcs_batch.measure import measure_objects, to_labels
from hcs_batch.steps import split_touching


def _split_reference(image: NDArray[Any], min_distance: int, min_size: int) -> tuple[NDArray[Any], NDArray[Any]]:
    """main's split_touching before issue 16 (whole-image scipy / scikit-image): (labels, peak_local_max's peaks)."""
    from skimage import feature, measure, morphology, segmentation

    mask = ndimage.binary_fill_holes(image > 0)
    if min_size:
        mask = morphology.remove_small_objects(mask, max_size=min_size)
    distance = ndimage.distance_transform_edt(mask)
    peaks = feature.peak_local_max(
        distance, min_distance=min_distance, labels=measure.label(mask), exclude_border=False
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = segmentation.watershed(-distance, markers, mask=mask)
    if min_size:
        labels[np.bincount(labels.ravel())[labels] <= min_size] = 0
    return segmentation.relabel_sequential(labels)[0], peaks


def _masks() -> list[NDArray[np.bool_]]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(3):
        noisy = ndimage.gaussian_filter(rng.random((200, 230)), 3) > 0.52  # blobs that touch, holes, specks
        noisy[50:60, 50:60] = True
        noisy[54:56, 54:56] = False  # a hole
        out.append(noisy)
    return out


def _nuclei_masks() -> list[NDArray[np.bool_]]:
    """The built-in counter's masks (log-Otsu of blurred, normalised images) of nuclear fields: touching
    clusters, a very bright one, and the real-work benchmark's 2,048-pixel field cut to 512."""
    from benchmarks._realdata import make_field
    from hcs_batch.steps import gaussian_blur, normalize, otsu_threshold
    from hcs_batch.testing.plates import touching_nuclei

    rng = np.random.default_rng(5)
    images = [touching_nuclei(rng, clusters=10, per_cluster=(2, 4))[0] for _ in range(2)]
    images.append(touching_nuclei(rng, clusters=10, per_cluster=(1, 3), very_bright=1)[0])
    images.append(make_field(np.random.default_rng(7), 512, 1)[0][0])
    blurred = [gaussian_blur(normalize(i, low_percentile=0.5, high_percentile=99.5)) for i in images]
    return [otsu_threshold(b, log=True) for b in blurred]


def _shapes() -> list[NDArray[np.bool_]]:
    """Edge cases of peak_local_max's rules: flat ridges (plateaus longer than min_distance, more than 256
    candidates), components whose every pixel is a candidate (thin lines: their isolated pixels), objects cut by
    the image border (distances with no background beyond it), two objects one pixel apart, a ring."""
    lines = np.zeros((60, 700), bool)
    lines[5:10, 20:680] = True  # a 5-pixel bar: a 660-pixel ridge of equal distance
    lines[20:22, 30:70] = True  # 2 wide: every pixel a window maximum, no pixel survives an opening
    lines[30, 100:140] = True  # a 1-pixel line
    lines[40:60, 0:30] = True  # cut by two borders
    lines[40:60, 31:61] = True  # one pixel from it
    yy, xx = np.mgrid[0:60, 0:700]
    ring = (np.hypot(yy - 30, xx - 400) < 25) & (np.hypot(yy - 30, xx - 400) > 12)
    return [lines | ring, np.pad(lines, 3)]


def _assert_same_split(got: NDArray[Any], expected: NDArray[Any], peaks: NDArray[Any], exact: bool = True) -> None:
    """The same objects with the same numbers grown from the same peaks. With ``exact`` pixels may differ only
    where two objects' floods tie (scikit-image breaks ties between equal peaks by its heap's layout, which depends
    on the other peaks in the heap: every peak of the image there, the crowded objects' here): at most 0.1% of
    them, each next to the object it went to."""
    assert got.dtype == (np.uint16 if int(got.max()) < 1 << 16 else np.int32) and got.shape == expected.shape
    assert int(got.max()) == int(expected.max())
    np.testing.assert_array_equal(got[tuple(peaks.T)], expected[tuple(peaks.T)])  # each peak: the same object
    np.testing.assert_array_equal(got > 0, expected > 0)
    if not exact:
        return
    ys, xs = np.nonzero(got != expected)
    assert len(ys) <= 1e-3 * max(1, np.count_nonzero(expected)), len(ys)
    padded = np.pad(expected, 1)
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):  # a tie: the object it went to is a neighbour
        assert got[y, x] in padded[y : y + 3, x : x + 3], (y, x)


@pytest.mark.parametrize("min_size", [0, 20])
@pytest.mark.parametrize("min_distance", [4, 7])
def test_split_touching_equals_the_scikit_image_original(min_distance: int, min_size: int) -> None:
    for mask in _nuclei_masks():
        expected, peaks = _split_reference(mask, min_distance, min_size)
        got = split_touching(mask, min_distance=min_distance, min_size=min_size)
        assert got.max() > 10
        _assert_same_split(got, expected, peaks)


@pytest.mark.parametrize("min_distance", [1, 4, 7])
def test_split_touching_finds_the_same_peaks_on_flat_ridges(min_distance: int) -> None:
    # Flat ridges make rows of equal peaks: floods tie all along them, so pixels (and with min_size, which slivers
    # are dropped) follow the tie-breaking; the objects and their peaks must be the same.
    for mask in _masks() + _shapes():
        expected, peaks = _split_reference(mask, min_distance, 0)
        got = split_touching(mask, min_distance=min_distance, min_size=0)
        assert got.max() > 10
        _assert_same_split(got, expected, peaks, exact=False)


def test_split_touching_of_a_mask_without_background_or_foreground() -> None:
    for mask in (np.ones((30, 40), bool), np.zeros((30, 40), bool)):
        expected, _ = _split_reference(mask, 4, 0)
        np.testing.assert_array_equal(split_touching(mask, min_distance=4, min_size=0), expected)
    with pytest.raises(ValueError, match="2-D"):
        imageops.split_objects(np.ones((2, 4, 4), bool), 4, 0)


def test_fill_holes_and_min_max_equal_scipy_and_numpy() -> None:
    for mask in _masks():
        np.testing.assert_array_equal(imageops.fill_holes(mask), ndimage.binary_fill_holes(mask))
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert imageops.fill_holes(ring)[4, 4] and not imageops.fill_holes(np.zeros((4, 4), bool)).any()
    image = np.random.default_rng(3).integers(7, 60000, (50, 40)).astype(np.uint16)
    assert imageops.min_max(image) == (float(image.min()), float(image.max()))
    assert imageops.min_max(image.astype(np.int64)) == (float(image.min()), float(image.max()))
    with pytest.raises(ValueError, match="empty"):
        imageops.min_max(np.zeros((0, 3), np.uint16))


def _regionprops_reference(labels: NDArray[Any], planes: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    from skimage.measure import regionprops_table

    shape = {
        "Location_Center_X": "centroid-1",
        "Location_Center_Y": "centroid-0",
        "AreaShape_Area": "area",
        "AreaShape_Perimeter": "perimeter",
        "AreaShape_Eccentricity": "eccentricity",
        "AreaShape_Solidity": "solidity",
        "AreaShape_MajorAxisLength": "axis_major_length",
        "AreaShape_MinorAxisLength": "axis_minor_length",
        "AreaShape_Extent": "extent",
        "AreaShape_EquivalentDiameter": "equivalent_diameter_area",
    }
    props = ["label", "centroid", *list(shape.values())[2:]]
    table = regionprops_table(labels, properties=props)
    out: dict[str, NDArray[Any]] = {"ObjectNumber": np.asarray(table["label"])}
    out.update({column: np.asarray(table[prop]) for column, prop in shape.items()})
    for name, plane in planes.items():
        suffix = "" if len(planes) == 1 else f"_{name}"
        t = regionprops_table(
            labels,
            intensity_image=plane,
            properties=["intensity_mean", "intensity_max", "intensity_min", "intensity_std"],
        )
        out[f"Intensity_MeanIntensity{suffix}"] = t["intensity_mean"]
        out[f"Intensity_IntegratedIntensity{suffix}"] = t["intensity_mean"] * out["AreaShape_Area"]
        out[f"Intensity_MaxIntensity{suffix}"] = t["intensity_max"]
        out[f"Intensity_MinIntensity{suffix}"] = t["intensity_min"]
        out[f"Intensity_StdIntensity{suffix}"] = t["intensity_std"]
    return out


@pytest.mark.parametrize("channels", [1, 2])
def test_measure_objects_equals_regionprops_table(channels: int) -> None:
    rng = np.random.default_rng(4)
    labels = split_touching(_masks()[0], min_distance=4, min_size=0)
    labels[0, 0:3] = labels.max() + 1  # a line on the border: zero minor axis, extent 1
    labels[199, 229] = labels.max() + 1  # a single pixel: zero moments, eccentricity 0
    planes = {str(c + 1): rng.integers(0, 65535, labels.shape).astype(np.uint16) for c in range(channels)}
    got = measure_objects(labels, planes)
    expected = _regionprops_reference(labels, planes)
    assert set(got) == set(expected) | {"AreaShape_FormFactor"}
    assert got["ObjectNumber"].dtype == np.int64 and len(got["ObjectNumber"]) == labels.max() > 10
    for column, values in expected.items():
        assert got[column].dtype == (np.int64 if column == "ObjectNumber" else np.float64), column
        np.testing.assert_allclose(got[column], values, rtol=1e-9, atol=1e-9, err_msg=column)


def test_measure_objects_of_no_objects_gives_empty_columns() -> None:
    columns = measure_objects(np.zeros((8, 8), np.int32), {"1": np.ones((8, 8), np.uint16)})
    assert columns and all(len(v) == 0 for v in columns.values())


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64, np.uint64])
def test_to_labels_equals_scikit_image(dtype: Any) -> None:
    from skimage import measure, segmentation

    mask = _masks()[1]
    np.testing.assert_array_equal(to_labels(mask, mask.shape), measure.label(mask, connectivity=2))
    labels = measure.label(mask).astype(dtype)
    np.testing.assert_array_equal(to_labels(labels, mask.shape), labels)  # already 1..n
    gaps = (labels * 3 + (labels > 0) * 7).astype(dtype)  # 10, 13, 16, ...: renumbered 1..n in order
    expected = segmentation.relabel_sequential(gaps.astype(np.int64))[0]
    got = to_labels(gaps, mask.shape)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


def test_counting_accuracy_is_no_worse_than_before_the_per_object_split() -> None:
    # benchmarks/results/counting_accuracy.md before issue 16's per-object split (8 images per set, seed 11): the
    # built-in counter's mean absolute percentage error per synthetic set. A fast path that finds other peaks, or
    # drops or merges objects, moves these.
    from benchmarks.counting_accuracy import mape, pipeline_counter, synthetic_sets
    from hcs_batch.pipeline import default_pipeline_text

    before = {"separated": 0.0, "touching clusters": 2.9, "one very bright": 4.5}
    counter = pipeline_counter(default_pipeline_text())
    for name, items in synthetic_sets(8, 11).items():
        (limit,) = [value for key, value in before.items() if key in name]
        assert mape(counter, items) <= limit + 0.05, name


def test_split_touching_gives_the_same_labels_on_every_call() -> None:
    # The Pool script and hcs-batch's workers must count alike: ties are broken by the input alone, never by what
    # ran before (OpenCV's square roots once were not).
    masks = _nuclei_masks() + _shapes()
    first = [split_touching(mask, min_distance=4, min_size=20) for mask in masks]
    for mask, expected in zip(reversed(masks), reversed(first), strict=True):
        np.testing.assert_array_equal(split_touching(mask, min_distance=4, min_size=20), expected)
