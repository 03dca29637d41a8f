"""Load one 2-D grey plane from an index's sources (inside worker processes), and read MetaSeries tags.

TIFFs are read with tifffile, which decodes every codec through imagecodecs (LZW, JPEG, zstd, deflate, ...);
OME-Zarr planes with zarr. A source is a path relative to the plate folder, or ``zarr:<array path>#<indices>``
(see :mod:`.layouts.index`). Sources never leave the plate folder: an absolute path or ``..`` is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .layouts.index import ZARR_PREFIX

__all__ = ["PROJECTIONS", "ImageError", "load_plane", "metaseries_summary", "source_path"]


class ImageError(ValueError):
    """An image cannot be read or is not one 2-D grey plane; the message names the file."""


PROJECTIONS: dict[str, Callable[[NDArray[Any]], NDArray[Any]]] = {
    "max": lambda stack: stack.max(axis=0),
    "min": lambda stack: stack.min(axis=0),
    "mean": lambda stack: stack.mean(axis=0, dtype=np.float64).astype(np.float32),
    "sum": lambda stack: stack.sum(axis=0, dtype=np.float64),
}
"""How several z-planes become one plane: the compile config key ``projection`` (default ``max``)."""


def source_path(plate_path: str | Path, relative: str) -> Path:
    """``plate_path/relative``, refusing a path that is absolute or climbs out of the plate folder.

    Raises:
        ImageError: the path would leave the plate folder.
    """
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if not parts or relative.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise ImageError(f"image path {relative!r} is outside the plate folder; refused")
    return Path(plate_path, *parts)


def _read_tiff(path: Path) -> NDArray[Any]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageError(f"cannot read image {path}: no image in the file (truncated, or not a TIFF?)")
            if len(tif.series) > 1:
                raise ImageError(f"{path}: {len(tif.series)} image series in one file; expected one 2-D grey plane")
            data: NDArray[Any] = tif.series[0].asarray()
    except ImageError:
        raise
    except Exception as exc:  # tifffile/imagecodecs raise many kinds for a broken or unsupported file
        raise ImageError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    plane = np.squeeze(data)
    if plane.ndim != 2:
        raise ImageError(f"{path}: shape {data.shape} is not one 2-D grey plane (RGB, multi-page?); refused")
    return plane


def _read_zarr(plate_path: str | Path, source: str) -> NDArray[Any]:
    import zarr

    array_path, _, index_text = source[len(ZARR_PREFIX) :].rpartition("#")
    where = source_path(plate_path, array_path)
    try:
        indices = tuple(int(i) for i in index_text.split(",")) if index_text else ()
        array = zarr.open_array(str(where), mode="r")
        if len(indices) != array.ndim - 2:
            raise ImageError(f"{where}: shape {array.shape} does not fit plane index {indices}")
        data: NDArray[Any] = np.asarray(array[indices])
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"cannot read zarr plane {where}#{index_text}: {type(exc).__name__}: {exc}") from None
    return data


def load_plane(plate_path: str | Path, sources: Sequence[str], projection: str = "max") -> NDArray[Any]:
    """The 2-D plane of one (site, timepoint, channel): its one source, or its z-planes projected.

    Raises:
        ImageError: a source is unreadable, outside the plate, not 2-D grey, planes of different shapes, or an
            unknown ``projection`` (the message names the file and its shape).
    """
    if not sources:
        raise ImageError("no image source")
    project = PROJECTIONS.get(projection)
    if project is None:
        raise ImageError(f"unknown projection {projection!r}; choose one of {', '.join(PROJECTIONS)}")
    planes = [
        _read_zarr(plate_path, s) if s.startswith(ZARR_PREFIX) else _read_tiff(source_path(plate_path, s))
        for s in sources
    ]
    if len(planes) == 1:
        return planes[0]
    shapes = {plane.shape for plane in planes}
    if len(shapes) != 1:
        raise ImageError(f"z-planes {', '.join(sources)} have different shapes {sorted(shapes)}")
    return project(np.stack(planes))


def metaseries_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Pixel size (``pixel_size_x``/``_y`` and ``pixel_size_unit``) and ``wavelength`` from a MetaSeries TIFF's
    tags; empty when the file has none. Raises OSError or tifffile's errors for an unreadable file."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        meta = tif.metaseries_metadata
    if not meta:
        return {}
    plane = meta.get("PlaneInfo", {})
    wanted = {
        "pixel_size_x": "spatial-calibration-x",
        "pixel_size_y": "spatial-calibration-y",
        "pixel_size_unit": "spatial-calibration-units",
        "wavelength": "wavelength",
        "illumination": "_IllumSetting_",
    }
    return {
        key: plane[tag] for key, tag in wanted.items() if tag in plane and isinstance(plane[tag], (int, float, str))
    }
