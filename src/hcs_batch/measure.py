"""Per-object measurements with CellProfiler's column names: scikit-image ``regionprops_table``'s values.

Pure functions of arrays: no I/O, no state kept between calls. Objects come from one segmentation (a label image,
0 = background); every channel is measured inside the same objects, as CellProfiler's MeasureObjectIntensity does.

Columns (one value per object, objects in label order):

- ``ObjectNumber`` (the object's label, 1..n after :func:`measure_objects` relabels), ``Location_Center_X``
  (column) and ``Location_Center_Y`` (row) of the centroid in pixels;
- shape: ``AreaShape_Area`` (pixels), ``AreaShape_Perimeter``, ``AreaShape_Eccentricity``,
  ``AreaShape_Solidity``, ``AreaShape_MajorAxisLength``, ``AreaShape_MinorAxisLength``, ``AreaShape_Extent``,
  ``AreaShape_EquivalentDiameter``, ``AreaShape_FormFactor`` (4·π·area / perimeter²);
- intensity per channel: ``Intensity_MeanIntensity``, ``Intensity_IntegratedIntensity`` (sum),
  ``Intensity_MaxIntensity``, ``Intensity_MinIntensity``, ``Intensity_StdIntensity``. With one channel the names
  are bare; with several each carries ``_<channel>`` (the channel's name as the caller gives it: the plate
  layout's channel name when known, else the channel number), e.g. ``Intensity_MeanIntensity_2``.

Intensities are the raw pixel values as stored (CellProfiler divides by the type's maximum; we do not).

Every value is ``regionprops_table``'s: convex area (so solidity) and area exactly, perimeter within 1e-12
relative (the same border codes summed in another order), the moments-based and intensity columns within float64
rounding (1e-9 relative in ``tests/test_fast_paths.py``). Nothing is computed per object in Python: the object
pixels are listed once, grouped by label (:class:`Objects`), and every column is a handful of array operations over
groups of objects (:mod:`hcs_batch.outline` for perimeter and convex hulls). A 2,048-pixel field of ~700 nuclei:
~45 ms for shape and two channels (``regionprops_table`` alone: ~800 ms), temporaries under one image's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["INTENSITY_COLUMNS", "SHAPE_COLUMNS", "Objects", "channel_means", "measure_objects", "to_labels"]

SHAPE_COLUMNS = (
    "ObjectNumber",
    "Location_Center_X",
    "Location_Center_Y",
    "AreaShape_Area",
    "AreaShape_Perimeter",
    "AreaShape_Eccentricity",
    "AreaShape_Solidity",
    "AreaShape_MajorAxisLength",
    "AreaShape_MinorAxisLength",
    "AreaShape_Extent",
    "AreaShape_EquivalentDiameter",
    "AreaShape_FormFactor",
)
"""The shape columns, in the order :func:`measure_objects` returns them."""

INTENSITY_COLUMNS = (
    "Intensity_MeanIntensity",
    "Intensity_IntegratedIntensity",
    "Intensity_MaxIntensity",
    "Intensity_MinIntensity",
    "Intensity_StdIntensity",
)
"""The intensity columns of one channel (suffixed ``_<channel>`` when several channels are measured)."""


def to_labels(objects: NDArray[Any], shape: tuple[int, ...]) -> NDArray[Any]:
    """The segmentation as a label image numbered 1..n: a boolean mask is labelled (8-connected components, int32),
    an integer label image renumbered without gaps (int32), or returned as it is (no copy, its own dtype) when
    already numbered 1..n. No image-sized temporary beyond the result.

    Raises:
        ValueError: not a 2-D boolean or integer array of ``shape`` (the message says what it was).
    """
    from skimage import segmentation

    from . import imageops

    if objects.ndim != 2 or objects.shape != shape:
        raise ValueError(f"the segmentation must be a 2-D array of the image's shape {shape}, got {objects.shape}")
    if objects.dtype == np.bool_:
        # skimage.measure.label(objects, connectivity=2): OpenCV's Wu scan numbers components the same way.
        return imageops.label(objects, connectivity=2)[0]
    if objects.dtype.kind not in "iu":
        raise ValueError(f"the segmentation must be a label image (integers) or a mask (bool), got {objects.dtype}")
    if objects.size and objects.dtype.kind == "i" and int(objects.min()) < 0:
        raise ValueError("the segmentation has negative labels")
    top = int(objects.max()) if objects.size else 0
    if top >= 1 << 24:  # sparse huge labels: a lookup table would be too big
        relabelled: NDArray[np.int32] = segmentation.relabel_sequential(objects.astype(np.int64, copy=False))[0].astype(
            np.int32, copy=False
        )
        return relabelled
    # relabel_sequential as one table lookup: the labels present, in order, become 1..n.
    flat = np.ascontiguousarray(objects).reshape(-1)
    present = _label_sizes(flat, top) > 0
    if present.all():
        return objects
    renumber = np.zeros(top + 1, np.int32)
    renumber[1:][present] = np.arange(1, int(np.count_nonzero(present)) + 1, dtype=np.int32)
    out = np.empty(flat.size, np.int32)
    for start in range(0, flat.size, _BAND):  # take() copies its indices to intp: a band at a time
        out[start : start + _BAND] = renumber.take(flat[start : start + _BAND])
    return out.reshape(objects.shape)


def measure_objects(labels: NDArray[Any], planes: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """One column per feature, one value per object (label order) of ``labels`` (1..n, 0 background; a label
    image with gaps is renumbered first, as :func:`to_labels` does).

    ``planes`` maps each channel's name to its 2-D image (same shape as ``labels``), in the order the columns
    should follow; with one plane the intensity columns carry no suffix. Returns :data:`SHAPE_COLUMNS` (integer
    ``ObjectNumber``, float64 otherwise) then the intensity columns (float64); zero objects give empty columns.
    The same as :meth:`Objects.shape` followed by :meth:`Objects.intensity` of every plane.

    Raises:
        ValueError: no plane, or a plane whose shape differs from ``labels``.
    """
    if not planes:
        raise ValueError("measure_objects needs at least one channel image")
    for name, plane in planes.items():
        if plane.shape != labels.shape:
            raise ValueError(f"channel {name}: image shape {plane.shape} differs from the objects' {labels.shape}")
    objects = Objects(labels)
    columns = objects.shape()
    for name, plane in planes.items():
        suffix = "" if len(planes) == 1 else f"_{name}"
        columns.update({f"{column}{suffix}": values for column, values in objects.intensity(plane).items()})
    return columns


class Objects:
    """The objects of one label image, measured a group of objects at a time.

    The object pixels are listed once, grouped by label and in raster order inside each object (a counting sort
    over bands of image rows: no image-sized temporary). Every measurement then walks groups of whole objects of
    at most ~:data:`_CHUNK` pixels, so its temporaries stay a fraction of one image whatever the objects cover:
    sums, extremes and moments are ``reduceat`` over each object's run of pixels (regionprops' formulas, equal
    within float64 rounding), perimeter and convex area come from :mod:`hcs_batch.outline` (scikit-image's values).

    ``labels`` (a 2-D integer array, 0 = background) is kept by reference, not copied; do not change it while
    this object is in use. Labels with gaps are renumbered 1..n (:func:`to_labels`), a copy.

    Raises:
        ValueError: ``labels`` is not a 2-D integer label image (see :func:`to_labels`).
    """

    def __init__(self, labels: NDArray[Any]) -> None:
        if labels.ndim != 2 or labels.dtype.kind not in "iu":
            raise ValueError(f"objects: expected a 2-D integer label image, got {labels.dtype} of {labels.shape}")
        if labels.size and labels.dtype.kind == "i" and int(labels.min()) < 0:
            raise ValueError("objects: the label image has negative labels")
        labels = np.ascontiguousarray(labels)  # flat views below (a copy only for a strided view)
        count = int(labels.max()) if labels.size else 0
        if count >= 1 << 24:  # sparse huge labels: renumber before counting per label
            labels = to_labels(labels, labels.shape)
            count = int(labels.max())
        order, sizes = _pixels_by_label(labels, count)
        if not sizes.all():  # gaps in the numbering: renumber (a copy) and list the pixels again
            labels = to_labels(labels, labels.shape)
            count = int(labels.max()) if labels.size else 0
            order, sizes = _pixels_by_label(labels, count)
        self.labels, self.count, self.sizes, self.order = labels, count, sizes, order
        self.offsets = np.concatenate(([0], np.cumsum(sizes)))
        # Groups of whole objects: a new group where the running pixel count passes a multiple of _CHUNK.
        group = self.offsets[:-1] // _CHUNK
        self.bounds = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), count] if count else [0]

    def _groups(self) -> Iterator[tuple[int, int, NDArray[np.int64], NDArray[np.int64]]]:
        """(first object index, end object index, pixel indices, object number of each pixel) of every group."""
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:], strict=True):
            index = self.order[self.offsets[lo] : self.offsets[hi]].astype(np.int64)
            own = np.repeat(np.arange(lo + 1, hi + 1, dtype=np.int64), self.sizes[lo:hi])
            yield lo, hi, index, own

    def shape(self) -> dict[str, NDArray[Any]]:
        """:data:`SHAPE_COLUMNS`: ``ObjectNumber`` (int64) and float64 shape columns, in label order."""
        from .outline import convex_areas, perimeters

        count, width = self.count, int(self.labels.shape[1])
        names = [c for c in SHAPE_COLUMNS if c not in ("ObjectNumber", "AreaShape_FormFactor")]
        out = {name: np.zeros(count) for name in names}
        area = self.sizes.astype(np.float64)
        for lo, hi, index, own in self._groups():
            rows, cols = np.divmod(index, width)
            starts = self.offsets[lo:hi] - self.offsets[lo]
            part = _shape_of(rows, cols, starts, area[lo:hi])
            part["AreaShape_Perimeter"] = perimeters(self.labels, index, rows, cols, own, lo + 1, hi - lo)
            part["AreaShape_Solidity"] = area[lo:hi] / convex_areas(rows, cols, own, hi - lo)
            for name, values in part.items():
                out[name][lo:hi] = values
        columns: dict[str, NDArray[Any]] = {"ObjectNumber": np.arange(1, count + 1, dtype=np.int64)}
        columns.update((name, out[name]) for name in names)
        perimeter = out["AreaShape_Perimeter"]
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["AreaShape_FormFactor"] = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, 0.0)
        return columns

    def intensity(self, plane: NDArray[Any]) -> dict[str, NDArray[np.float64]]:
        """:data:`INTENSITY_COLUMNS` of ``plane`` (same shape as the labels; raw values) inside every object:
        mean, sum, max, min and population standard deviation, float64, in label order.

        Raises:
            ValueError: ``plane``'s shape differs from the labels'.
        """
        if plane.shape != self.labels.shape:
            raise ValueError(f"image shape {plane.shape} differs from the objects' {self.labels.shape}")
        out = {name: np.zeros(self.count) for name in INTENSITY_COLUMNS}
        flat = plane.reshape(-1)
        for lo, hi, index, _ in self._groups():
            starts = self.offsets[lo:hi] - self.offsets[lo]
            values = flat.take(index)
            area = self.sizes[lo:hi].astype(np.float64)
            total = np.add.reduceat(values.astype(np.float64), starts)
            mean = total / area
            deviation = values - np.repeat(mean, self.sizes[lo:hi])
            out["Intensity_MeanIntensity"][lo:hi] = mean
            out["Intensity_IntegratedIntensity"][lo:hi] = total
            out["Intensity_MaxIntensity"][lo:hi] = np.maximum.reduceat(values, starts)
            out["Intensity_MinIntensity"][lo:hi] = np.minimum.reduceat(values, starts)
            out["Intensity_StdIntensity"][lo:hi] = np.sqrt(np.add.reduceat(deviation * deviation, starts) / area)
        return out


_CHUNK = 1 << 16
"""Pixels per group of objects measured together (a group holds ~10 arrays of this length)."""

_BAND = 1 << 18
"""Pixels per band of the image in the counting sort of the object pixels."""


def _bands(flat: NDArray[Any]) -> Iterator[tuple[int, NDArray[np.intp], NDArray[Any]]]:
    """(first pixel, object pixels' indices in the band, their labels) of every band of the flat label image."""
    for start in range(0, flat.size, _BAND):
        band = flat[start : start + _BAND]
        where = np.flatnonzero(band != 0)  # 3x faster than flatnonzero(band) on int32
        yield start, where, band.take(where)


def _label_sizes(flat: NDArray[Any], count: int) -> NDArray[np.int64]:
    """Pixels of each label 1..``count`` of a flat label image (a bincount of the object pixels only)."""
    sizes = np.zeros(count + 1, np.int64)
    for _, _, keys in _bands(flat):
        sizes += np.bincount(keys.astype(np.intp, copy=False), minlength=count + 1)
    return sizes[1:]


def _pixels_by_label(labels: NDArray[Any], count: int) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """(order, sizes): the flat indices of the object pixels grouped by label 1..``count`` and in raster order
    inside each object (int32 when the image allows), and each label's pixel count. A counting sort over bands of
    the image (two passes: sizes, then places), so no temporary is image-sized."""
    flat = labels.reshape(-1)
    sizes = _label_sizes(flat, count)
    order = np.empty(int(sizes.sum()), np.int32 if flat.size < 1 << 31 else np.int64)
    fill = np.cumsum(sizes) - sizes  # the next free place of each object
    narrow = np.uint16 if count < 1 << 16 else np.uint32
    for start, where, keys in _bands(flat):
        if not where.size:
            continue
        ranked = np.argsort(keys.astype(narrow, copy=False), kind="stable")  # radix sort: linear, order kept
        objects = keys.take(ranked).astype(np.int64) - 1
        here = np.bincount(objects, minlength=count)
        # The j-th pixel of the band's sorted list goes to its object's next place + its rank in the object.
        places = fill.take(objects) + np.arange(objects.size) - (np.cumsum(here) - here).take(objects)
        order[places] = where.take(ranked) + start
        fill += here
    return order, sizes


def _shape_of(
    rows: NDArray[np.int64], cols: NDArray[np.int64], starts: NDArray[Any], area: NDArray[np.float64]
) -> dict[str, NDArray[np.float64]]:
    """Centroid, area, inertia-tensor axes and eccentricity, extent and equivalent diameter of a group of objects
    whose pixels (``rows``, ``cols``) start at ``starts``; regionprops' formulas."""
    r, c = rows.astype(np.float64), cols.astype(np.float64)
    sizes = np.diff(np.append(starts, rows.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        centre_r = np.add.reduceat(r, starts) / area
        centre_c = np.add.reduceat(c, starts) / area
        r -= np.repeat(centre_r, sizes)
        c -= np.repeat(centre_c, sizes)
        mu20, mu02, mu11 = (np.add.reduceat(a * b, starts) for a, b in ((r, r), (c, c), (r, c)))
        # skimage.measure.inertia_tensor in 2-D, then inertia_tensor_eigvals (eigvalsh, clipped, descending).
        tensor = np.empty((area.size, 2, 2))
        tensor[:, 0, 0], tensor[:, 1, 1] = mu02 / area, mu20 / area
        tensor[:, 0, 1] = tensor[:, 1, 0] = -mu11 / area
        eig = np.clip(np.linalg.eigvalsh(tensor), 0, None)
        small, large = eig[:, 0], eig[:, 1]
        eccentricity = np.where(large == 0, 0.0, np.sqrt(1 - small / np.where(large == 0, 1, large)))
    height = np.maximum.reduceat(rows, starts) - np.minimum.reduceat(rows, starts) + 1
    width = np.maximum.reduceat(cols, starts) - np.minimum.reduceat(cols, starts) + 1
    return {
        "Location_Center_X": centre_c,
        "Location_Center_Y": centre_r,
        "AreaShape_Area": area,
        "AreaShape_Eccentricity": eccentricity,
        "AreaShape_MajorAxisLength": 4 * np.sqrt(large),
        "AreaShape_MinorAxisLength": 4 * np.sqrt(small),
        "AreaShape_Extent": area / (height * width),
        "AreaShape_EquivalentDiameter": np.sqrt(4 * area / np.pi),
    }


def channel_means(columns: Mapping[str, NDArray[Any]], names: list[str]) -> dict[str, float]:
    """The mean intensity of each channel over all object pixels (total integrated intensity / total area);
    0.0 when there are no objects. ``columns`` is what :func:`measure_objects` returned for channels ``names``."""
    area = float(np.sum(columns["AreaShape_Area"]))
    means: dict[str, float] = {}
    for name in names:
        suffix = "" if len(names) == 1 else f"_{name}"
        total = float(np.sum(columns[f"Intensity_IntegratedIntensity{suffix}"]))
        means[name] = total / area if area > 0 else 0.0
    return means
