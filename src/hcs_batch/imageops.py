"""Fast building blocks for image steps: the same results as the numpy/scipy originals, less time and memory.

Each function names the call it replaces and what it bought on a 2,048 x 2,048 uint16 field on one core of the
benchmark machine (``python -m benchmarks.imageops``; figures in ``benchmarks/results/HOTSPOTS.md``):

- :func:`percentiles` — ``np.percentile`` (which copies and partitions a float copy) as a histogram of the
  integer image: exact (numpy's linear interpolation), no float copy.
- :func:`rescale` — ``np.clip((x - lo) / (hi - lo), 0, 1)`` in place on one float32 array: one image-sized
  allocation instead of four.
- :func:`gaussian` — ``scipy.ndimage.gaussian_filter`` (same kernel radius, 4 sigma, and border, ``reflect``)
  through OpenCV's separable filter, in float32.
- :func:`label` — ``scipy.ndimage.label`` / ``skimage.measure.label`` through OpenCV's connected components
  (same labels, same numbering).
- :func:`distance` — ``scipy.ndimage.distance_transform_edt`` (float64) through OpenCV's exact Euclidean
  distance transform, in float32: for a distance-transform watershed.
- :func:`otsu_level` — ``hcs_batch.steps``' 256-bin Otsu level with OpenCV's one-pass histogram instead of
  ``np.histogram`` (same bins, same level).
- :func:`fill_holes` — ``scipy.ndimage.binary_fill_holes`` as one labelling of the background.
- :func:`min_max` — ``image.min()`` and ``image.max()`` in one pass.
- :func:`masked_mean` — ``image[mask].mean()`` without copying the selected pixels (OpenCV).
- :func:`object_sizes` — ``np.bincount(labels.ravel())`` in chunks (no image-sized int64 copy).

OpenCV is told to use one thread per process: each worker process owns one core, and threads inside workers
would fight over the same cores. Nothing here keeps state between calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "distance",
    "fill_holes",
    "gaussian",
    "label",
    "masked_mean",
    "min_max",
    "object_sizes",
    "otsu_from_histogram",
    "otsu_level",
    "percentiles",
    "rescale",
]

_cv2: Any = None
_CHUNK = 1 << 18
"""Pixels per chunk where a whole-image temporary would cost more memory than it saves time."""


def _cv() -> Any:
    global _cv2
    if _cv2 is None:
        import cv2

        cv2.setNumThreads(1)
        _cv2 = cv2
    return _cv2


def percentiles(image: NDArray[Any], qs: tuple[float, ...] | list[float]) -> list[float]:
    """The ``qs`` percentiles (0..100) of ``image``, equal to ``np.percentile(image, qs)`` (linear interpolation).

    Integer images of at most 16 bits (and under 2**24 pixels, so float32 counts stay exact) are counted in
    OpenCV's histogram, without a copy; anything else falls back to numpy.
    """
    if image.dtype not in (np.uint8, np.uint16) or not 0 < image.size < 1 << 24:
        return [float(v) for v in np.percentile(image, qs)]
    levels = 1 << (8 * image.dtype.itemsize)
    flat = np.ascontiguousarray(image).reshape(1, -1)
    counts = _cv().calcHist([flat], [0], None, [levels], [0, levels]).ravel()
    cumulative = np.cumsum(counts, dtype=np.int64)
    out = []
    for q in qs:
        rank = q / 100.0 * (image.size - 1)
        lo = int(np.floor(rank))
        hi = min(lo + 1, image.size - 1)
        v_lo = int(np.searchsorted(cumulative, lo, side="right"))
        v_hi = int(np.searchsorted(cumulative, hi, side="right"))
        out.append(v_lo + (v_hi - v_lo) * (rank - lo))
    return out


def rescale(image: NDArray[Any], low: float, high: float) -> NDArray[np.float32]:
    """``clip((image - low) / (high - low), 0, 1)`` as float32 with one allocation; zeros when ``high <= low``."""
    out = image.astype(np.float32)  # a copy even when image is float32: the caller's image is never changed
    if high <= low:
        out[...] = 0.0
        return out
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def gaussian(image: NDArray[Any], sigma: float) -> NDArray[np.float32]:
    """``scipy.ndimage.gaussian_filter(image.astype(float32), sigma)`` for a 2-D image (reflect border, radius
    ``round(4 sigma)``); equal to it within float32 rounding. ``sigma`` 0 returns a float32 copy.

    Raises:
        ValueError: ``sigma`` < 0 or ``image`` is not 2-D.
    """
    if sigma < 0:
        raise ValueError(f"gaussian: sigma must be >= 0, got {sigma}")
    if image.ndim != 2:
        raise ValueError(f"gaussian: expected a 2-D image, got {image.ndim} dimensions")
    data = np.ascontiguousarray(image, dtype=np.float32)
    if sigma == 0:
        return data.copy()
    cv2 = _cv()
    radius = int(4.0 * sigma + 0.5)
    out: NDArray[np.float32] = cv2.GaussianBlur(
        data, (2 * radius + 1, 2 * radius + 1), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )
    return out


def label(mask: NDArray[Any], connectivity: int = 1) -> tuple[NDArray[np.int32], int]:
    """``scipy.ndimage.label(mask, generate_binary_structure(2, connectivity))`` for a 2-D mask: (labels, count).

    The same labels, numbered in the same (raster) order: OpenCV's Wu scan (``CCL_WU``) numbers components by
    their first pixel, as scipy and ``skimage.measure.label`` do (OpenCV's default block scan does not, with
    diagonals).

    Raises:
        ValueError: ``connectivity`` is not 1 (edge neighbours) or 2 (diagonals too), or ``mask`` is not 2-D.
    """
    if connectivity not in (1, 2):
        raise ValueError(f"label: connectivity must be 1 or 2, got {connectivity}")
    if mask.ndim != 2:
        raise ValueError(f"label: expected a 2-D mask, got {mask.ndim} dimensions")
    cv2 = _cv()
    binary = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
    count, labels = cv2.connectedComponentsWithAlgorithm(
        np.ascontiguousarray(binary), 4 if connectivity == 1 else 8, cv2.CV_32S, cv2.CCL_WU
    )
    return labels, int(count) - 1


def object_sizes(labels: NDArray[Any], count: int) -> NDArray[np.int64]:
    """Pixels of each object 1..``count`` of a label image (``np.bincount(labels.ravel())[1:]`` without its
    image-sized int64 copy)."""
    sizes = np.zeros(count + 1, np.int64)
    flat = labels.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        sizes += np.bincount(flat[start : start + _CHUNK], minlength=count + 1)
    return sizes[1:]


def distance(mask: NDArray[Any]) -> NDArray[np.float32]:
    """``scipy.ndimage.distance_transform_edt(mask)`` (exact Euclidean distance to the background) in float32.

    Equal to scipy's distances rounded to float32, deterministically. A mask without background is +inf
    everywhere (scipy's answer there is meaningless).
    """
    if mask.ndim != 2:
        raise ValueError(f"distance: expected a 2-D mask, got {mask.ndim} dimensions")
    cv2 = _cv()
    binary = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
    if binary.all():
        return np.full(mask.shape, np.inf, np.float32)
    out: NDArray[np.float32] = cv2.distanceTransform(np.ascontiguousarray(binary), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # OpenCV's square root is off by an ulp now and then, and not the same ulp from one call to the next (seen on
    # 5,700 of 4 million pixels): a watershed's ties then fall differently. The squared distances are integers:
    # recover them and take numpy's correctly rounded root, which is scipy's value rounded to float32, every time.
    np.multiply(out, out, out=out)
    np.rint(out, out=out)
    np.sqrt(out, out=out)
    return out


def otsu_level(image: NDArray[Any], bins: int = 256) -> float:
    """Otsu's threshold over ``bins`` equal bins between the image's min and max: the upper edge of the bin that
    maximises the between-class variance (pixels above it are foreground), with ``np.histogram``'s bins.

    uint8, uint16 and float32 images are counted in OpenCV's histogram (one pass, no temporaries); other types
    through ``np.histogram``. Both give the same level.
    """
    if image.dtype in (np.uint8, np.uint16, np.float32) and 0 < image.size < 1 << 24:
        cv2 = _cv()
        flat = np.ascontiguousarray(image).reshape(1, -1)
        lo, hi, _, _ = cv2.minMaxLoc(flat)
        if hi <= lo:
            return float(lo)
        hist = cv2.calcHist([flat], [0], None, [bins], [lo, hi]).ravel().astype(np.float64)
        hist[-1] += np.count_nonzero(flat == flat.dtype.type(hi))  # OpenCV leaves the top edge out, numpy counts it
        edges = np.linspace(lo, hi, bins + 1, dtype=np.result_type(lo, hi, image))
    else:
        lo, hi = float(image.min()), float(image.max())
        if hi <= lo:
            return lo
        hist, edges = np.histogram(image, bins=bins, range=(lo, hi))
    return otsu_from_histogram(hist, edges)


def otsu_from_histogram(hist: NDArray[Any], edges: NDArray[Any]) -> float:
    """Otsu's level from a histogram and its bin edges: the upper edge of the bin that maximises the
    between-class variance (pixels above it are foreground)."""
    centers = (edges[:-1] + edges[1:]) / 2
    weight_bg = np.cumsum(hist)
    weight_fg = weight_bg[-1] - weight_bg
    sum_bg = np.cumsum(hist * centers)
    mean_bg = sum_bg / np.maximum(weight_bg, 1)
    mean_fg = (sum_bg[-1] - sum_bg) / np.maximum(weight_fg, 1)
    between = weight_bg * weight_fg * (mean_bg - mean_fg) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def fill_holes(mask: NDArray[Any]) -> NDArray[np.bool_]:
    """``scipy.ndimage.binary_fill_holes(mask)`` for a 2-D mask: background not edge-connected to the image
    border becomes foreground. One OpenCV labelling of the background instead of scipy's iterated dilation.

    Raises:
        ValueError: ``mask`` is not 2-D.
    """
    if mask.ndim != 2:
        raise ValueError(f"fill_holes: expected a 2-D mask, got {mask.ndim} dimensions")
    background, count = label(~mask.astype(bool, copy=False), connectivity=1)
    outside = np.zeros(count + 1, np.bool_)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the foreground
    filled: NDArray[np.bool_] = ~outside[background]
    return filled


def min_max(image: NDArray[Any]) -> tuple[float, float]:
    """``(float(image.min()), float(image.max()))`` in one pass (OpenCV) for 2-D uint8/uint16/float32 images.

    Raises:
        ValueError: ``image`` is empty.
    """
    if image.size == 0:
        raise ValueError("min_max: empty image")
    if image.ndim == 2 and image.dtype in (np.uint8, np.uint16, np.float32):
        lo, hi, _, _ = _cv().minMaxLoc(np.ascontiguousarray(image))
        return float(lo), float(hi)
    return float(image.min()), float(image.max())


def masked_mean(image: NDArray[Any], mask: NDArray[np.bool_]) -> float:
    """``image[mask].mean()`` for a 2-D single-channel image without copying the selected pixels; 0.0 when
    ``mask`` selects nothing."""
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        return float(image[mask].mean()) if mask.any() else 0.0
    if not mask.any():
        return 0.0
    return float(_cv().mean(np.ascontiguousarray(image), mask=np.ascontiguousarray(mask).view(np.uint8))[0])
