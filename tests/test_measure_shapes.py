"""Perimeter and solidity (``hcs_batch.outline``) and the per-object measurement's memory, against scikit-image.

``regionprops`` computes ``perimeter`` and ``area_convex`` on each object's crop; ours works on all objects'
pixels at once. The documented promise (docs/measurements.md): convex area exactly scikit-image's (so solidity to
the last bit), perimeter equal within 1e-12 relative (the same border codes, summed in another order). Checked per
object on nuclei-like fields, on hand-made shapes that hit every edge case of the neighbour arithmetic (objects
on the image border, one pixel wide, wrapping across a row end, holes, touching objects), and on random label
images (hypothesis).
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from hcs_batch import steps
from hcs_batch.measure import Objects, measure_objects, to_labels
from hcs_batch.testing.plates import touching_nuclei


def _reference(labels: NDArray[Any]) -> dict[str, NDArray[Any]]:
    from skimage.measure import regionprops_table

    table = regionprops_table(labels, properties=["label", "area", "perimeter", "area_convex", "solidity"])
    return {key: np.asarray(values) for key, values in table.items()}


def _assert_outlines_equal(labels: NDArray[Any]) -> None:
    expected = _reference(to_labels(labels, labels.shape))
    got = measure_objects(labels, {"1": np.ones(labels.shape, np.uint16)})
    np.testing.assert_array_equal(got["ObjectNumber"], expected["label"])
    np.testing.assert_array_equal(got["AreaShape_Area"], expected["area"])
    # Convex area exact: the same count of pixel centres, so the same solidity bits.
    np.testing.assert_array_equal(got["AreaShape_Solidity"], expected["solidity"])
    np.testing.assert_array_equal(np.rint(got["AreaShape_Area"] / got["AreaShape_Solidity"]), expected["area_convex"])
    np.testing.assert_allclose(got["AreaShape_Perimeter"], expected["perimeter"], rtol=1e-12, atol=0)


def _counted(raw: NDArray[np.uint16]) -> NDArray[Any]:
    image = steps.normalize(raw, low_percentile=0.5, high_percentile=99.5)
    image = steps.gaussian_blur(image, sigma=1.0)
    return steps.split_touching(steps.otsu_threshold(image, log=True), min_distance=4, min_size=20)


@pytest.mark.parametrize("seed", [1, 2])
def test_perimeter_and_solidity_equal_scikit_image_on_nuclei(seed: int) -> None:
    raw, truth = touching_nuclei(np.random.default_rng(seed), size=384, clusters=30)
    counted = _counted(raw)
    assert counted.max() > 40 and truth.max() > 40
    for labels in (truth, counted):
        _assert_outlines_equal(labels)


def _hand_made() -> NDArray[np.int32]:
    labels = np.zeros((24, 20), np.int32)
    labels[0, :] = 1  # a line along the top border
    labels[5:12, 0] = 2  # one pixel wide on the left border...
    labels[4, 19] = 2  # ...and the pixel at the end of the row above: flat index + 1 wraps onto it
    labels[6:10, 19] = 3  # on the right border, whose next flat index is column 0 of the next row (label 2)
    labels[3:10, 4:11] = 4
    labels[5:8, 6:9] = 0  # a hole
    labels[6, 7] = 5  # an object inside the hole
    labels[12:18, 3:9] = 6
    labels[12:18, 9:13] = 7  # touching 6 along a whole side
    for i in range(6):
        labels[12 + i, 14 + i % 2] = 8  # a zig-zag, corners only between some pixels
    labels[19, 2] = labels[20, 3] = labels[21, 4] = 9  # a diagonal chain (one 8-connected object)
    labels[23, 19] = 10  # a single pixel in the last corner
    labels[20:24, 8:16] = 11
    labels[21:23, 10:14] = 12  # enclosed by 11
    labels[2, 14] = labels[9, 17] = labels[4, 12] = 13  # three distant pixels: a triangle's hull
    return labels


def test_perimeter_and_solidity_equal_scikit_image_on_hard_cases() -> None:
    labels = _hand_made()
    _assert_outlines_equal(labels)
    _assert_outlines_equal(labels.T.copy())  # the same shapes on their side
    _assert_outlines_equal(labels[::-1, ::-1].astype(np.uint16))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 17)), elements=st.integers(0, 6)))
def test_perimeter_and_solidity_equal_scikit_image_on_random_labels(labels: NDArray[np.uint8]) -> None:
    if labels.any():
        _assert_outlines_equal(labels)  # any pixel sets, labels with gaps (renumbered), disconnected objects


def test_huge_sparse_labels_are_renumbered_and_negative_ones_refused() -> None:
    labels = _hand_made().astype(np.int64)
    sparse = np.where(labels > 0, labels * 1_000_003 + (1 << 40), 0)  # label values far beyond any table
    got = measure_objects(sparse, {"1": np.ones(labels.shape, np.uint16)})
    expected = measure_objects(labels, {"1": np.ones(labels.shape, np.uint16)})
    for column, values in expected.items():
        np.testing.assert_array_equal(got[column], values, err_msg=column)
    with pytest.raises(ValueError, match="negative"):
        Objects(-labels)
    with pytest.raises(ValueError, match="integer label image"):
        Objects(labels.astype(np.float32))


def test_objects_measures_a_plane_at_a_time_like_measure_objects() -> None:
    raw, truth = touching_nuclei(np.random.default_rng(3), size=256, clusters=12)
    other = (raw // 3 + 7).astype(np.uint16)
    both = measure_objects(truth, {"a": raw, "b": other})
    objects = Objects(truth)
    for name, plane in (("a", raw), ("b", other)):
        for column, values in objects.intensity(plane).items():
            np.testing.assert_array_equal(values, both[f"{column}_{name}"])
    with pytest.raises(ValueError, match="differs"):
        objects.intensity(raw[:10])


def test_measure_objects_peak_memory_is_a_fraction_of_one_image() -> None:
    # A 2,048-pixel field of ~1,000 objects covering a third of it: the measurement's temporaries (tracemalloc
    # sees numpy's buffers) stay under one uint16 image, whatever the objects cover (groups of objects).
    tile, _ = touching_nuclei(np.random.default_rng(5), size=256, clusters=12)
    tile_labels = to_labels(_counted(tile), tile.shape)
    n = int(tile_labels.max())
    labels = np.zeros((2048, 2048), np.int32)
    for i in range(8):
        for j in range(8):
            k = i * 8 + j
            labels[i * 256 : (i + 1) * 256, j * 256 : (j + 1) * 256] = np.where(tile_labels > 0, tile_labels + k * n, 0)
    plane = np.tile(tile, (8, 8))
    assert labels.max() > 500
    measure_objects(labels, {"1": plane})
    tracemalloc.start()
    try:
        columns = measure_objects(labels, {"1": plane})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(columns["ObjectNumber"]) == labels.max()
    assert peak < plane.nbytes, f"peak {peak / plane.nbytes:.2f} images"
