"""Synthetic plates with a known number of nuclei per image, so the built-in counter can be checked.

Each plate is a folder of ImageXpress-style TIFFs ``<well>_s<site>_w<channel>.tif`` (uint16). Every image holds a
known number of well-separated Gaussian blobs (one per cell of a 32-pixel grid at most, jittered inside its cell)
on a flat background with Gaussian noise. ``<dir>/ground_truth.csv`` lists the count of every image.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import tifffile
from numpy.typing import NDArray

__all__ = ["ROWS", "make_plates", "well_names"]

ROWS = "ABCDEFGHIJKLMNOP"
_COLS = 24
_CELL = 32
_SIGMA = 2.5
_BACKGROUND = 200.0
_NOISE = 15.0


def well_names(count: int) -> list[str]:
    """The first ``count`` wells of a 384-well plate in row-major order: A01, A02, ... A24, B01, ...

    Raises:
        ValueError: ``count`` is not in 1..384.
    """
    if not 1 <= count <= len(ROWS) * _COLS:
        raise ValueError(f"wells must be between 1 and {len(ROWS) * _COLS}, got {count}")
    return [f"{ROWS[i // _COLS]}{i % _COLS + 1:02d}" for i in range(count)]


def _image(rng: np.random.Generator, size: int) -> tuple[NDArray[np.uint16], int]:
    cells = max(1, size // _CELL)
    cell = size / cells
    slots = cells * cells
    # Enough blobs that Otsu's threshold separates them from the noise on large images too.
    low = max(1, slots // 8)
    count = int(rng.integers(low, max(low, min(slots, max(12, slots // 2))) + 1))
    chosen = rng.choice(slots, size=count, replace=False)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.full((size, size), _BACKGROUND, dtype=np.float32)
    jitter = max(0.0, cell / 2 - 3 * _SIGMA - 1)
    for slot in chosen:
        cy = (slot // cells + 0.5) * cell + rng.uniform(-jitter, jitter)
        cx = (slot % cells + 0.5) * cell + rng.uniform(-jitter, jitter)
        amplitude = rng.uniform(1500.0, 4000.0)
        image += amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * _SIGMA**2))
    image += rng.normal(0.0, _NOISE, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 65535).astype(np.uint16), count


def make_plates(
    directory: str | Path, *, plates: int, wells: int, sites: int = 1, channels: int = 1, size: int = 128, seed: int = 0
) -> list[Path]:
    """Write ``plates`` plate folders ``plate_001``, ... below ``directory`` and ``ground_truth.csv``.

    Returns the plate folders. The same arguments always write the same images.

    Raises:
        ValueError: a count below 1, more than 384 wells, or ``size`` below 16 pixels.
    """
    if plates < 1 or sites < 1 or channels < 1:
        raise ValueError("plates, sites and channels must each be at least 1")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    names = well_names(wells)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    folders: list[Path] = []
    truth: list[tuple[str, str, int, int, int]] = []
    for index in range(1, plates + 1):
        plate = f"plate_{index:03d}"
        folder = root / plate
        folder.mkdir(exist_ok=True)
        for well in names:
            for site in range(1, sites + 1):
                for channel in range(1, channels + 1):
                    image, count = _image(rng, size)
                    tifffile.imwrite(folder / f"{well}_s{site}_w{channel}.tif", image)
                    truth.append((plate, well, site, channel, count))
        folders.append(folder)
    with open(root / "ground_truth.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["plate", "well", "site", "channel", "object_count"])
        writer.writerows(truth)
    return folders
