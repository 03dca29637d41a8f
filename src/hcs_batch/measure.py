"""Per-object measurements with CellProfiler's column names, computed by scikit-image's ``regionprops_table``.

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

# CellProfiler name -> regionprops_table property (the shape properties that need no intensity image).
_SHAPE_PROPS = {
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
_INTENSITY_PROPS = {
    "Intensity_MeanIntensity": "intensity_mean",
    "Intensity_MaxIntensity": "intensity_max",
    "Intensity_MinIntensity": "intensity_min",
    "Intensity_StdIntensity": "intensity_std",
}


def to_labels(objects: NDArray[Any], shape: tuple[int, ...]) -> NDArray[np.int32]:
    """The segmentation as a label image numbered 1..n: a boolean mask is labelled (8-connected components),
    an integer label image renumbered without gaps.

    Raises:
        ValueError: not a 2-D boolean or integer array of ``shape`` (the message says what it was).
    """
    from skimage import measure, segmentation

    if objects.ndim != 2 or objects.shape != shape:
        raise ValueError(f"the segmentation must be a 2-D array of the image's shape {shape}, got {objects.shape}")
    if objects.dtype == np.bool_:
        labelled: NDArray[np.int32] = measure.label(objects, connectivity=2).astype(np.int32, copy=False)
        return labelled
    if objects.dtype.kind not in "iu":
        raise ValueError(f"the segmentation must be a label image (integers) or a mask (bool), got {objects.dtype}")
    if objects.size and int(objects.min()) < 0:
        raise ValueError("the segmentation has negative labels")
    relabelled: NDArray[np.int32] = segmentation.relabel_sequential(objects.astype(np.int64, copy=False))[0].astype(
        np.int32, copy=False
    )
    return relabelled


def measure_objects(labels: NDArray[Any], planes: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """One column per feature, one value per object (label order) of ``labels`` (1..n, 0 background).

    ``planes`` maps each channel's name to its 2-D image (same shape as ``labels``), in the order the columns
    should follow; with one plane the intensity columns carry no suffix. Returns :data:`SHAPE_COLUMNS` (integer
    ``ObjectNumber``, float64 otherwise) then the intensity columns (float64); zero objects give empty columns.

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
    stack = np.stack([planes[n] for n in names], axis=-1)
    props = ["label", "centroid", *list(_SHAPE_PROPS.values())[2:], *_INTENSITY_PROPS.values()]
    table = regionprops_table(labels, intensity_image=stack, properties=props)
    count = len(table["label"])
    columns: dict[str, NDArray[Any]] = {"ObjectNumber": np.asarray(table["label"], dtype=np.int64)}
    for column, prop in _SHAPE_PROPS.items():
        columns[column] = np.asarray(table[prop], dtype=np.float64)
    area, perimeter = columns["AreaShape_Area"], columns["AreaShape_Perimeter"]
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["AreaShape_FormFactor"] = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, 0.0)
    for index, name in enumerate(names):
        suffix = "" if len(names) == 1 else f"_{name}"
        for column in INTENSITY_COLUMNS:
            if column == "Intensity_IntegratedIntensity":
                sums = np.bincount(labels.ravel(), weights=planes[name].ravel().astype(np.float64), minlength=count + 1)
                values = sums[1 : count + 1]
            else:
                values = np.asarray(table.get(f"{_INTENSITY_PROPS[column]}-{index}", np.zeros(count)), np.float64)
            columns[f"{column}{suffix}"] = values
    return columns


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
