"""Reading one 2-D image plane of a plate (runs in worker processes).

Minimal on purpose: the plate-layouts work owns the full version (z-projection options, OME-Zarr planes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["load_plane"]


def load_plane(plate_path: str, sources: Sequence[str], projection: str = "max") -> NDArray[Any]:
    """The 2-D plane made of ``sources`` (files relative to ``plate_path``): one file as it is, several (the
    z-planes of one channel) max-projected (``projection`` "max", the only one this version knows).

    Raises:
        ValueError: no source, another projection, a file that is not one 2-D plane, or sources of different shapes
            (the message names the file and its shape).
        OSError, and whatever tifffile raises for an unreadable file.
    """
    import tifffile

    if not sources:
        raise ValueError("no image file for this plane")
    if projection != "max":
        raise ValueError(f"unknown projection {projection!r}; choose max")
    plane: NDArray[Any] | None = None
    for name in sources:
        data = np.squeeze(tifffile.imread(os.path.join(plate_path, name)))
        if data.ndim != 2:
            raise ValueError(f"{name} holds an image of shape {data.shape}, not one 2-D plane")
        if plane is None:
            plane = data
        elif data.shape != plane.shape:
            raise ValueError(f"{name} has shape {data.shape}, other planes of this image {plane.shape}")
        else:
            plane = np.maximum(plane, data)
    assert plane is not None
    return plane
