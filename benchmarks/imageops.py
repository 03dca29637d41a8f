"""Before/after for each fast building block of :mod:`hcs_batch.imageops`, on one realistic field, one core.

For every pair (the numpy/scipy original, the helper) on the same 2,048-pixel nuclear field of the real-work
plate: best-of-``repeat`` time, peak memory allocated during the call (tracemalloc: numpy reports its buffers) in
units of the image's bytes, and whether the results agree; the distance-transform watershed of ``split_touching``
on the whole image (EDT, ``peak_local_max``, scikit-image's watershed) against ``imageops.split_objects``. Then
the whole built-in counter as shipped against the same counter before imageops (numpy, scipy, scikit-image) and
against the counter with the whole-image watershed (issue 16's first round), with its object counts, and the
per-object measurement (``measure_objects``) against one ``regionprops_table`` call, and its perimeter and solidity
(all shape columns, :class:`hcs_batch.measure.Objects`) against regionprops' (``same_result``: solidity equal,
perimeter within 1e-12).
``python -m benchmarks.imageops '{"size": 2048, "repeat": 5}'``.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from hcs_batch import imageops, steps

from ._common import emit, params_from_argv
from ._realdata import make_field


def _measure(fn: Callable[[], Any], repeat: int, image_bytes: int) -> tuple[float, float, Any]:
    result = fn()  # warm
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / image_bytes, result


def numpy_otsu_level(data: np.ndarray, bins: int = 256) -> float:
    """``hcs_batch.steps``' Otsu level before imageops (np.histogram), kept here as the 'before'."""
    lo, hi = float(data.min()), float(data.max())
    hist, edges = np.histogram(data, bins=bins, range=(lo, hi))
    return imageops.otsu_from_histogram(hist, edges)  # the same level formula; only the histogram differs


def numpy_normalize(raw: np.ndarray) -> np.ndarray:
    """``hcs_batch.steps.normalize`` before imageops (np.percentile on a float copy, then the formula)."""
    data = raw.astype(np.float32, copy=False)
    low, high = np.percentile(data, [0.5, 99.5])
    out: np.ndarray = np.clip((data - low) / (high - low), 0.0, 1.0).astype(np.float32, copy=False)
    return out


def previous_counter(raw: np.ndarray) -> np.ndarray:
    """The built-in counter (issue 11's log-Otsu + distance-transform watershed) as ``hcs_batch.steps`` computed
    it before imageops: numpy, scipy and scikit-image only. Returns the label image."""
    from skimage import feature, measure, morphology, segmentation

    blurred = ndimage.gaussian_filter(numpy_normalize(raw), sigma=1.0)
    lo, hi = float(blurred.min()), float(blurred.max())
    logged = np.log(blurred.astype(np.float64) - lo + max(hi - lo, 1e-12) * 1e-3)
    mask = ndimage.binary_fill_holes(logged > numpy_otsu_level(logged))
    mask = morphology.remove_small_objects(mask, max_size=20)
    distance = ndimage.distance_transform_edt(mask)
    peaks = feature.peak_local_max(distance, min_distance=4, labels=measure.label(mask), exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = segmentation.watershed(-distance, markers, mask=mask)
    labels[np.bincount(labels.ravel())[labels] <= 20] = 0
    out: np.ndarray = segmentation.relabel_sequential(labels)[0]
    return out


def whole_image_split(mask: np.ndarray, min_distance: int = 4, min_size: int = 20) -> np.ndarray:
    """The distance-transform watershed of ``split_touching`` on a filled, cleaned mask as it was computed before
    ``imageops.split_objects``: the whole image's EDT (imageops), ``peak_local_max`` with labels and scikit-image's
    watershed of every foreground pixel, then dropping small objects by one table lookup."""
    from skimage import feature, segmentation

    components, _ = imageops.label(mask, connectivity=2)
    distance = imageops.distance(mask)
    peaks = feature.peak_local_max(distance, min_distance=min_distance, labels=components, exclude_border=False)
    del components
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = segmentation.watershed(-distance, markers, mask=mask)
    kept = imageops.object_sizes(labels, len(peaks)) > min_size
    renumber = np.zeros(len(peaks) + 1, np.int32)
    renumber[1:][kept] = np.arange(1, int(np.count_nonzero(kept)) + 1, dtype=np.int32)
    out: np.ndarray = renumber[labels]
    return out


def whole_image_counter(raw: np.ndarray) -> np.ndarray:
    """The built-in counter before ``imageops.split_objects`` (imageops everywhere else, the whole-image split)."""
    image = steps.normalize(raw, low_percentile=0.5, high_percentile=99.5)
    image = steps.gaussian_blur(image, sigma=1.0)
    mask = imageops.fill_holes(steps.otsu_threshold(image, log=True))
    specks, count = imageops.label(mask, connectivity=1)
    small = imageops.object_sizes(specks, count) <= 20
    if small.any():
        mask &= np.concatenate(([False], ~small))[specks]
    del specks
    return whole_image_split(mask)


def shipped_counter(raw: np.ndarray) -> np.ndarray:
    """The built-in counter as ``hcs_batch.steps`` ships it now (the default pipeline's parameters)."""
    image = steps.normalize(raw, low_percentile=0.5, high_percentile=99.5)
    image = steps.gaussian_blur(image, sigma=1.0)
    mask = steps.otsu_threshold(image, log=True)
    return steps.split_touching(mask, min_distance=4, min_size=20)


def regionprops_measure(labels: np.ndarray, planes: dict[str, np.ndarray]) -> dict[str, Any]:
    """``hcs_batch.measure.measure_objects`` before: every column from one ``regionprops_table`` call."""
    from skimage.measure import regionprops_table

    props = [
        "label", "centroid", "area", "perimeter", "eccentricity", "solidity", "axis_major_length",
        "axis_minor_length", "extent", "equivalent_diameter_area", "intensity_mean", "intensity_max",
        "intensity_min", "intensity_std",
    ]  # fmt: skip
    stack = np.stack(list(planes.values()), axis=-1)
    table: dict[str, Any] = regionprops_table(labels, intensity_image=stack, properties=props)
    return table


def _same_counter(a: np.ndarray, b: np.ndarray) -> bool:
    return int(a.max()) == int(b.max()) and float(np.mean(a == b)) > 0.9999


def main(size: int, repeat: int) -> dict[str, Any]:
    from skimage import measure
    from skimage.measure import regionprops_table

    from hcs_batch.measure import Objects, measure_objects

    [raw, other], _ = make_field(np.random.default_rng(7), size, 2)
    nbytes = raw.nbytes
    f32 = steps.normalize(raw, low_percentile=0.5, high_percentile=99.5)
    blurred = steps.gaussian_blur(f32, sigma=1.0)
    mask = steps.otsu_threshold(blurred)
    objects = shipped_counter(raw)
    cleaned = imageops.fill_holes(steps.otsu_threshold(blurred, log=True))  # split_touching's mask (no specks here)
    planes = {"1": raw, "2": other}
    pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any], Callable[[Any, Any], bool]]] = {
        "percentiles": (
            lambda: [float(v) for v in np.percentile(raw, (0.5, 99.5))],
            lambda: imageops.percentiles(raw, (0.5, 99.5)),
            lambda a, b: bool(np.allclose(a, b, rtol=0, atol=1e-9)),
        ),
        "normalize": (
            lambda: numpy_normalize(raw),
            lambda: imageops.rescale(raw, *imageops.percentiles(raw, (0.5, 99.5))),
            lambda a, b: bool(np.allclose(a, b, atol=1e-6)),
        ),
        "gaussian": (
            lambda: ndimage.gaussian_filter(f32, sigma=1.0),
            lambda: imageops.gaussian(f32, 1.0),
            lambda a, b: bool(np.allclose(a, b, atol=1e-5)),
        ),
        "otsu": (
            lambda: numpy_otsu_level(blurred),
            lambda: imageops.otsu_level(blurred),
            lambda a, b: a == b,
        ),
        "masked_mean": (
            lambda: float(raw[mask].mean()),
            lambda: imageops.masked_mean(raw, mask),
            lambda a, b: abs(a - b) < 1e-6 * abs(a),
        ),
        "label": (
            lambda: ndimage.label(mask),
            lambda: imageops.label(mask, 1),
            lambda a, b: a[1] == b[1] and bool(np.array_equal(a[0], b[0])),
        ),
        "object_sizes": (
            lambda: np.bincount(ndimage.label(mask)[0].ravel())[1:],
            lambda: imageops.object_sizes(*imageops.label(mask, 1)),
            lambda a, b: bool(np.array_equal(a, b)),
        ),
        "distance": (
            lambda: ndimage.distance_transform_edt(mask),
            lambda: imageops.distance(mask),
            lambda a, b: bool(np.allclose(a, b, atol=1e-3)),
        ),
        "label, diagonals (skimage)": (
            lambda: measure.label(mask),
            lambda: imageops.label(mask, 2)[0],
            lambda a, b: bool(np.array_equal(a, b)),
        ),
        "fill_holes": (
            lambda: ndimage.binary_fill_holes(mask),
            lambda: imageops.fill_holes(mask),
            lambda a, b: bool(np.array_equal(a, b)),
        ),
        "distance watershed (EDT, peaks, flooding)": (
            lambda: whole_image_split(cleaned),
            lambda: imageops.split_objects(cleaned, 4, 20),
            _same_counter,
        ),
        "counter": (lambda: previous_counter(raw), lambda: shipped_counter(raw), _same_counter),
        "counter vs whole-image split": (lambda: whole_image_counter(raw), lambda: shipped_counter(raw), _same_counter),
        "perimeter + solidity (regionprops) / every shape column (Objects)": (
            lambda: regionprops_table(objects, properties=["label", "perimeter", "solidity"]),
            lambda: Objects(objects).shape(),
            lambda a, b: (
                bool(np.array_equal(a["solidity"], b["AreaShape_Solidity"]))
                and bool(np.allclose(a["perimeter"], b["AreaShape_Perimeter"], rtol=1e-12, atol=0))
            ),
        ),
        "measure_objects, 2 channels": (
            lambda: regionprops_measure(objects, planes),
            lambda: measure_objects(objects, planes),
            lambda a, b: (
                bool(np.array_equal(a["solidity"], b["AreaShape_Solidity"]))
                and bool(np.allclose(a["perimeter"], b["AreaShape_Perimeter"], rtol=1e-12, atol=0))
            ),
        ),
    }
    out: dict[str, Any] = {"size": size, "image_mib": round(nbytes / 2**20, 2), "ops": {}}
    for name, (before, after, same) in pairs.items():
        t_before, m_before, r_before = _measure(before, repeat, nbytes)
        t_after, m_after, r_after = _measure(after, repeat, nbytes)
        out["ops"][name] = {
            "before_ms": round(t_before * 1e3, 2),
            "after_ms": round(t_after * 1e3, 2),
            "speedup": round(t_before / t_after, 2),
            "before_peak_images": round(m_before, 2),
            "after_peak_images": round(m_after, 2),
            "same_result": same(r_before, r_after),
        }
        if name.startswith(("counter", "distance watershed")):
            out["ops"][name]["counts"] = [int(r_before.max()), int(r_after.max())]
            out["ops"][name]["pixels_same"] = round(float(np.mean(r_before == r_after)), 6)
    return out


if __name__ == "__main__":
    p = params_from_argv()
    emit(main(int(p.get("size", 2048)), int(p.get("repeat", 5))))
