"""Per-object measurements with CellProfiler's column names: scikit-image ``regionprops_table``'s values.

A pure function of arrays: no I/O, no state. Objects come from one segmentation (a label image, 0 = background);
every channel is measured inside the same objects, as CellProfiler's MeasureObjectIntensity does.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["INTENSITY_COLUMNS", "SHAPE_COLUMNS", "channel_means", "measure_objects", "to_labels"]

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


def to_labels(objects: NDArray[Any], shape: tuple[int, ...]) -> NDArray[np.int32]:
    """The segmentation as a label image numbered 1..n: a boolean mask is labelled (8-connected components),
    an integer label image renumbered without gaps.

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
    if objects.size and int(objects.min()) < 0:
        raise ValueError("the segmentation has negative labels")
    top = int(objects.max()) if objects.size else 0
    if top >= 1 << 24:  # sparse huge labels: a lookup table would be too big
        relabelled: NDArray[np.int32] = segmentation.relabel_sequential(objects.astype(np.int64, copy=False))[0].astype(
            np.int32, copy=False
        )
        return relabelled
    # relabel_sequential as one table lookup: the labels present, in order, become 1..n.
    present = imageops.object_sizes(objects.astype(np.int64, copy=False), top) > 0
    if present.all():
        return objects.astype(np.int32, copy=False)
    renumber = np.zeros(top + 1, np.int32)
    renumber[1:][present] = np.arange(1, int(np.count_nonzero(present)) + 1, dtype=np.int32)
    out: NDArray[np.int32] = renumber[objects]
    return out


def measure_objects(labels: NDArray[Any], planes: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """One column per feature, one value per object (label order) of ``labels`` (1..n, 0 background).

    ``planes`` maps each channel's name to its 2-D image (same shape as ``labels``), in the order the columns
    should follow; with one plane the intensity columns carry no suffix. Returns :data:`SHAPE_COLUMNS` (integer
    ``ObjectNumber``, float64 otherwise) then the intensity columns (float64); zero objects give empty columns.

    The values are ``regionprops_table``'s: perimeter and solidity come from it (per-object algorithms); the rest
    (centroid, area, moments, extent, intensities) are the same formulas computed for all objects at once over the
    object pixels grouped by label (equal within float64 rounding; 0.5 s -> 0.2 s a 2,048-pixel field of ~700
    objects, see HOTSPOTS.md).

    Raises:
        ValueError: no plane, or a plane whose shape differs from ``labels``.
    """
    from skimage.measure import regionprops_table

    if not planes:
        raise ValueError("measure_objects needs at least one channel image")
    for name, plane in planes.items():
        if plane.shape != labels.shape:
            raise ValueError(f"channel {name}: image shape {plane.shape} differs from the objects' {labels.shape}")
    names = list(planes)
    table = regionprops_table(labels, properties=["label", "perimeter", "solidity"])
    count = len(table["label"])
    columns: dict[str, NDArray[Any]] = {"ObjectNumber": np.asarray(table["label"], dtype=np.int64)}
    groups = _Groups(labels, count)
    columns.update(groups.shape())
    columns["AreaShape_Perimeter"] = np.asarray(table["perimeter"], dtype=np.float64)
    columns["AreaShape_Solidity"] = np.asarray(table["solidity"], dtype=np.float64)
    columns = {column: columns[column] for column in SHAPE_COLUMNS if column != "AreaShape_FormFactor"}
    area, perimeter = columns["AreaShape_Area"], columns["AreaShape_Perimeter"]
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["AreaShape_FormFactor"] = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, 0.0)
    for name in names:
        suffix = "" if len(names) == 1 else f"_{name}"
        for column, values in groups.intensity(planes[name]).items():
            columns[f"{column}{suffix}"] = values
    return columns


class _Groups:
    """The object pixels of a label image (1..``count``) sorted by label: per-object sums, extremes and moments
    as ``reduceat`` over contiguous runs, the way regionprops computes them one object at a time."""

    def __init__(self, labels: NDArray[Any], count: int) -> None:
        flat = labels.reshape(-1)
        where = np.flatnonzero(flat)
        keys = flat[where]
        # A stable sort keeps raster order inside an object; uint16 keys sort in linear time (radix).
        keys = keys.astype(np.uint16) if count < 1 << 16 else keys
        self.order = where[np.argsort(keys, kind="stable")]
        self.area = np.bincount(flat[self.order], minlength=count + 1)[1:].astype(np.float64)
        self.starts = np.concatenate(([0], np.cumsum(self.area[:-1]).astype(np.int64))) if count else np.zeros(0, int)
        self.counts = self.area.astype(np.int64)
        self.width = labels.shape[1]

    def _sum(self, values: NDArray[Any]) -> NDArray[np.float64]:
        if not self.counts.size:
            return np.zeros(0)
        return np.add.reduceat(values, self.starts).astype(np.float64, copy=False)

    def _spread(self, per_object: NDArray[Any]) -> NDArray[Any]:
        return np.repeat(per_object, self.counts)

    def shape(self) -> dict[str, NDArray[np.float64]]:
        """Centroid, area, moments-based axes and eccentricity, extent and equivalent diameter."""
        area = self.area
        rows = (self.order // self.width).astype(np.float64)
        cols = (self.order % self.width).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            centre_r = self._sum(rows) / area
            centre_c = self._sum(cols) / area
            dr = rows - self._spread(centre_r)
            dc = cols - self._spread(centre_c)
            mu20, mu02, mu11 = self._sum(dr * dr), self._sum(dc * dc), self._sum(dr * dc)
            # skimage.measure.inertia_tensor in 2-D, then inertia_tensor_eigvals (eigvalsh, clipped, descending).
            tensor = np.empty((len(area), 2, 2))
            tensor[:, 0, 0], tensor[:, 1, 1] = mu02 / area, mu20 / area
            tensor[:, 0, 1] = tensor[:, 1, 0] = -mu11 / area
            eig = np.clip(np.linalg.eigvalsh(tensor), 0, None) if len(area) else np.zeros((0, 2))
            l2, l1 = eig[:, 0], eig[:, 1]
            eccentricity = np.where(l1 == 0, 0.0, np.sqrt(1 - l2 / np.where(l1 == 0, 1, l1)))
        height = self._extreme(rows, np.maximum) - self._extreme(rows, np.minimum) + 1
        width = self._extreme(cols, np.maximum) - self._extreme(cols, np.minimum) + 1
        return {
            "Location_Center_X": centre_c,
            "Location_Center_Y": centre_r,
            "AreaShape_Area": area,
            "AreaShape_Eccentricity": eccentricity,
            "AreaShape_MajorAxisLength": 4 * np.sqrt(l1),
            "AreaShape_MinorAxisLength": 4 * np.sqrt(l2),
            "AreaShape_Extent": area / (height * width),
            "AreaShape_EquivalentDiameter": np.sqrt(4 * area / np.pi),
        }

    def _extreme(self, values: NDArray[Any], ufunc: np.ufunc) -> NDArray[np.float64]:
        if not self.counts.size:
            return np.zeros(0)
        out: NDArray[np.float64] = ufunc.reduceat(values, self.starts).astype(np.float64)
        return out

    def intensity(self, plane: NDArray[Any]) -> dict[str, NDArray[np.float64]]:
        """Mean, sum, max, min and population standard deviation of ``plane`` inside every object."""
        values = plane.reshape(-1)[self.order]
        total = self._sum(values.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total / self.area
        deviation = values - self._spread(mean)
        return {
            "Intensity_MeanIntensity": mean,
            "Intensity_IntegratedIntensity": total,
            "Intensity_MaxIntensity": self._extreme(values, np.maximum),
            "Intensity_MinIntensity": self._extreme(values, np.minimum),
            "Intensity_StdIntensity": np.sqrt(self._sum(deviation * deviation) / self.area),
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
