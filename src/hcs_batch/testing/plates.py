"""Synthetic images with a known number of nuclei, so counters can be checked.

:func:`make_plates`: each plate is a folder of ImageXpress-style TIFFs ``<well>_s<site>_w<channel>.tif`` (uint16).
Every site holds a known number of well-separated Gaussian blobs (one per cell of a 32-pixel grid at most,
jittered inside its cell) on a flat background with Gaussian noise; every channel of a site shows the same nuclei
(each channel at its own brightness and noise), as stains of one field do. ``<dir>/ground_truth.csv`` lists the
count of every image.

:func:`touching_nuclei`: one field of touching and clustered elliptic nuclei with a 10-fold spread of brightness
(and optionally a few very bright ones), with its true label image: the hard case for counters.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import tifffile
from numpy.typing import NDArray

__all__ = ["ROWS", "make_plates", "nucleus_image", "touching_nuclei", "well_names"]

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


def _site(rng: np.random.Generator, size: int, channels: int) -> tuple[list[NDArray[np.uint16]], int]:
    """The images of one site's channels (same nuclei, channel c at 1/c of channel 1's brightness); the count."""
    cells = max(1, size // _CELL)
    cell = size / cells
    slots = cells * cells
    # Enough blobs that Otsu's threshold separates them from the noise on large images too.
    low = max(1, slots // 8)
    count = int(rng.integers(low, max(low, min(slots, max(12, slots // 2))) + 1))
    chosen = rng.choice(slots, size=count, replace=False)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    nuclei = np.zeros((size, size), dtype=np.float32)
    jitter = max(0.0, cell / 2 - 3 * _SIGMA - 1)
    for slot in chosen:
        cy = (slot // cells + 0.5) * cell + rng.uniform(-jitter, jitter)
        cx = (slot % cells + 0.5) * cell + rng.uniform(-jitter, jitter)
        amplitude = rng.uniform(1500.0, 4000.0)
        nuclei += amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * _SIGMA**2))
    images = []
    for channel in range(1, channels + 1):
        image = _BACKGROUND + nuclei / channel + rng.normal(0.0, _NOISE, size=nuclei.shape).astype(np.float32)
        images.append(np.clip(image, 0, 65535).astype(np.uint16))
    return images, count


def nucleus_image(rng: np.random.Generator, size: int) -> tuple[NDArray[np.uint16], int]:
    """One synthetic field of separated nuclei (as :func:`make_plates` draws them) and its nucleus count."""
    images, count = _site(rng, size, 1)
    return images[0], count


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
                images, count = _site(rng, size, channels)
                for channel, image in enumerate(images, start=1):
                    tifffile.imwrite(folder / f"{well}_s{site}_w{channel}.tif", image)
                    truth.append((plate, well, site, channel, count))
        folders.append(folder)
    with open(root / "ground_truth.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["plate", "well", "site", "channel", "object_count"])
        writer.writerows(truth)
    return folders


def _place(
    rng: np.random.Generator, size: int, clusters: int, per_cluster: tuple[int, int], radius: tuple[float, float]
) -> list[tuple[float, float, float]]:
    """Nucleus centres and radii: ``clusters`` groups of touching nuclei (each touching one placed before it,
    centres 75-95% of the radii's sum apart); groups do not touch each other."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(clusters * 50):
        if clusters == 0:
            break
        group: list[tuple[float, float, float]] = []
        for _ in range(int(rng.integers(per_cluster[0], per_cluster[1] + 1))):
            r = float(rng.uniform(*radius))
            if group:
                py, px, pr = group[int(rng.integers(len(group)))]
                angle, gap = rng.uniform(0, 2 * np.pi), (pr + r) * rng.uniform(0.75, 0.95)
                y, x = py + gap * np.sin(angle), px + gap * np.cos(angle)
            else:
                y, x = (float(v) for v in rng.uniform(radius[1] + 2, size - radius[1] - 2, 2))
            inside = r + 1 < y < size - r - 1 and r + 1 < x < size - r - 1
            if inside and all(np.hypot(y - oy, x - ox) > 0.7 * (r + orr) for oy, ox, orr in group):
                group.append((y, x, r))
        if group and all(np.hypot(y - oy, x - ox) > 1.05 * (r + orr) for y, x, r in group for oy, ox, orr in placed):
            placed.extend(group)
            clusters -= 1
    return placed


def touching_nuclei(
    rng: np.random.Generator,
    *,
    size: int = 256,
    clusters: int = 10,
    per_cluster: tuple[int, int] = (2, 4),
    radius: tuple[float, float] = (7.0, 12.0),
    brightness: tuple[float, float] = (300.0, 3000.0),
    very_bright: int = 0,
) -> tuple[NDArray[np.uint16], NDArray[np.int32]]:
    """One uint16 field of elliptic nuclei and its true label image (1..n, where two overlap the first wins).

    ``clusters`` groups of ``per_cluster`` touching nuclei, radii in ``radius``, peak brightness log-uniform in
    ``brightness`` above a background of 200 (Poisson and Gaussian noise, a slight blur); ``very_bright`` of them
    20 times the top of that range. Fewer clusters are placed when the field is too full.
    """
    centres = _place(rng, size, clusters, per_cluster, radius)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    signal = np.zeros((size, size), dtype=np.float32)
    labels = np.zeros((size, size), dtype=np.int32)
    peaks = np.exp(rng.uniform(np.log(brightness[0]), np.log(brightness[1]), len(centres)))
    if very_bright:
        peaks[rng.choice(len(centres), min(very_bright, len(centres)), replace=False)] = brightness[1] * 20
    for index, (y, x, r) in enumerate(centres, start=1):
        squash, angle = rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
        u = (xx - x) * np.cos(angle) + (yy - y) * np.sin(angle)
        v = (yy - y) * np.cos(angle) - (xx - x) * np.sin(angle)
        rho = np.sqrt((u / r) ** 2 + (v / (r * squash)) ** 2)
        labels[(rho <= 1) & (labels == 0)] = index
        texture = 0.85 + 0.15 * rng.random(signal.shape, dtype=np.float32)
        signal = np.maximum(signal, np.clip(1.0 - rho**4, 0.0, 1.0) * peaks[index - 1] * texture)
    from scipy import ndimage

    expected = ndimage.gaussian_filter(signal, 1.2) + _BACKGROUND
    image = rng.poisson(expected).astype(np.float32) + rng.normal(0.0, _NOISE, signal.shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels
