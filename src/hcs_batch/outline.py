"""Per-object perimeter and convex area for many objects at once: scikit-image's values, without per-object crops.

Both functions take a group of objects as their pixels, grouped by object and in raster order inside each object
(what :class:`hcs_batch.measure.Objects` holds): ``index`` (flat pixel index), ``rows``, ``cols`` and ``own`` (the
object's number, non-decreasing), all int64. Objects are numbered ``first .. first + count - 1``, every one
with at least one pixel.

- :func:`perimeters` is ``skimage.measure.perimeter(object_mask, 4)`` of each object (what
  ``regionprops``' ``perimeter`` computes on the object's crop): the object's 4-connected border pixels (a pixel
  of the object with a 4-neighbour outside it or outside the image), each weighted by how its 8 neighbours among
  those border pixels lie (Benkrid and Crookes' table). The same border pixels and codes, so the same per-object
  histogram of codes; only the final weighted sum may differ in the last bit.
- :func:`convex_areas` is ``regionprops``' ``area_convex``: the number of pixel centres inside or on the convex
  hull of the pixels' edge midpoints (``skimage.morphology.convex_hull_image``). The hull is OpenCV's
  (``cv2.convexHull``, one call per object on the end pixels of each row, 6 points a row), in doubled integer
  coordinates; the pixel centres inside are counted row by row in exact integer arithmetic, for all objects at
  once. Equal to scikit-image's count, which tests points against the same hull exactly.

Pure functions of their arguments; nothing is cached.
"""

from __future__ import annotations

from math import sqrt
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["convex_areas", "perimeters"]

_WEIGHTS = np.zeros(50, np.float64)
_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_WEIGHTS[[21, 33]] = sqrt(2)
_WEIGHTS[[13, 23]] = (1 + sqrt(2)) / 2
"""``skimage.measure.perimeter``'s weight of each border code (1 + 2 x edge neighbours + 10 x corner ones)."""

_VERTICAL = ((-1, 0, 2), (1, 0, 2), (-1, -1, 10), (-1, 1, 10), (1, -1, 10), (1, 1, 10))
"""The neighbours above and below (row step, column step, weight in the code); left and right are found in order."""


def _pairs(index: NDArray[np.int64], cols: NDArray[np.int64], own: NDArray[np.int64]) -> NDArray[np.bool_]:
    """For each consecutive pair of the pixels (grouped by object, raster order): is the second the first's right
    neighbour in the same object (not the first pixel of the next image row)?"""
    pair: NDArray[np.bool_] = (index[1:] == index[:-1] + 1) & (own[1:] == own[:-1]) & (cols[1:] != 0)
    return pair


def perimeters(
    labels: NDArray[Any],
    index: NDArray[np.int64],
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    own: NDArray[np.int64],
    first: int,
    count: int,
) -> NDArray[np.float64]:
    """``skimage.measure.perimeter`` (4-connectivity) of objects ``first .. first + count - 1`` of the 2-D label
    image ``labels`` (see the module docstring for the pixel arrays)."""
    height, width = int(labels.shape[0]), int(labels.shape[1])
    flat = labels.reshape(-1)
    # Interior pixels: all four neighbours in the object. Left and right ones are the neighbours in the list.
    pair = _pairs(index, cols, own)
    interior = np.zeros(index.shape, np.bool_)
    interior[1:-1] = pair[:-1] & pair[1:]
    interior &= (rows >= 1) & (rows < height - 1)
    interior &= flat.take(index - width, mode="clip") == own
    interior &= flat.take(index + width, mode="clip") == own
    border = ~interior
    index, rows, cols, own = index[border], rows[border], cols[border], own[border]
    # Each border pixel's code: 1 + 2 x its edge neighbours + 10 x its corner neighbours among the object's border
    # pixels. (object, pixel) keys are ascending already: objects in order, raster order inside one.
    code = np.ones(index.shape, np.int64)
    pair = _pairs(index, cols, own)
    code[1:] += 2 * pair
    code[:-1] += 2 * pair
    keys = own * flat.size + index
    for dr, dc, weight in _VERTICAL:
        inside = rows >= 1 if dr < 0 else rows < height - 1
        if dc:
            inside &= cols >= 1 if dc < 0 else cols < width - 1
        wanted = keys + (dr * width + dc)
        at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
        code += weight * (inside & (keys[at] == wanted))
    histogram = np.bincount((own - first) * _WEIGHTS.size + code, minlength=count * _WEIGHTS.size)
    out: NDArray[np.float64] = histogram.reshape(count, _WEIGHTS.size) @ _WEIGHTS
    return out


def convex_areas(rows: NDArray[np.int64], cols: NDArray[np.int64], own: NDArray[np.int64], count: int) -> NDArray[Any]:
    """``regionprops``' ``area_convex`` (float64) of the ``count`` objects whose pixels are given (see the module
    docstring)."""
    import cv2

    size = rows.size
    starts = np.flatnonzero(np.concatenate(([True], (rows[1:] != rows[:-1]) | (own[1:] != own[:-1]))))
    ends = np.concatenate((starts[1:], [size])) - 1
    row2, left2, right2 = 2 * rows[starts], 2 * cols[starts], 2 * cols[ends]
    # Each row's two end pixels give the hull's candidates: their edge midpoints (x, y) in doubled coordinates.
    candidates = np.empty((starts.size, 6, 2), np.int32)
    points = candidates.reshape(-1, 2)
    candidates[:, 0] = np.stack((left2 - 1, row2), axis=1)
    candidates[:, 1] = np.stack((left2, row2 - 1), axis=1)
    candidates[:, 2] = np.stack((left2, row2 + 1), axis=1)
    candidates[:, 3] = np.stack((right2 + 1, row2), axis=1)
    candidates[:, 4] = np.stack((right2, row2 - 1), axis=1)
    candidates[:, 5] = np.stack((right2, row2 + 1), axis=1)
    objects = own[starts] - own[0]
    bounds = 6 * np.searchsorted(objects, np.arange(count + 1))
    hulls = [cv2.convexHull(points[bounds[i] : bounds[i + 1]]).reshape(-1, 2) for i in range(count)]
    sizes = np.array([len(h) for h in hulls], np.int64)
    vertices = np.concatenate(hulls).astype(np.int64)
    # Edges (vertex, next vertex) of every hull; the horizontal ones meet no row that the others do not.
    following = np.arange(1, vertices.shape[0] + 1)
    following[np.cumsum(sizes) - 1] = np.cumsum(sizes) - sizes
    owner = np.repeat(np.arange(count), sizes)
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = vertices[following, 0], vertices[following, 1]
    slanted = y0 != y1
    down = y0 > y1
    x0, y0, x1, y1 = np.where(down, x1, x0), np.where(down, y1, y0), np.where(down, x0, x1), np.where(down, y0, y1)
    x0, y0, x1, y1, owner = x0[slanted], y0[slanted], x1[slanted], y1[slanted], owner[slanted]
    # Pixel rows r with 2r in [y0, y1]: the edge's x there is x0 + (x1 - x0)(2r - y0) / (y1 - y0).
    top, bottom = -((-y0) // 2), y1 // 2
    crossings = np.maximum(bottom - top + 1, 0)
    edge = np.repeat(np.arange(x0.size), crossings)
    row = top[edge] + np.arange(edge.size) - np.repeat(np.cumsum(crossings) - crossings, crossings)
    span = y1[edge] - y0[edge]
    numerator = x0[edge] * span + (x1[edge] - x0[edge]) * (2 * row - y0[edge])
    # A pixel column c is inside where 2c lies between the crossings: c >= ceil(x / 2) and c <= floor(x / 2).
    lowest = -((-numerator) // (2 * span))
    highest = numerator // (2 * span)
    first_row = rows[starts][np.searchsorted(objects, np.arange(count))]
    last_row = rows[ends][np.searchsorted(objects, np.arange(count), side="right") - 1]
    heights = last_row - first_row + 1
    base = np.cumsum(heights) - heights
    slot = base[owner[edge]] + row - first_row[owner[edge]]
    low = np.full(int(heights.sum()), np.iinfo(np.int64).max, np.int64)
    high = np.full(low.size, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(low, slot, lowest)
    np.maximum.at(high, slot, highest)
    widths = np.maximum(high - low + 1, 0)
    out: NDArray[Any] = np.bincount(np.repeat(np.arange(count), heights), weights=widths, minlength=count)
    return out
