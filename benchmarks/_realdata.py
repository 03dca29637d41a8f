"""Realistic plates for the real-work benchmark, generated once and cached under ``benchmarks/.cache/``.

Each field is a 16-bit fluorescence-like image: a nuclear stain (channel 1) with ``~nuclei`` elliptical nuclei
of lognormal brightness, a fifth of them touching a neighbour (clusters of two or three), a textured interior and a
dim rim, on a background with uneven illumination, camera offset and shot noise; further channels are a cytoplasm
stain (larger, dimmer, blurred bodies around the same nuclei). ``ground_truth.csv`` lists the nuclei of every
field. The plate folder uses the flat layout ``<well>_s<site>_w<channel>.tif`` (uncompressed, as MetaXpress and
Harmony write), with every (well, site) a different field, so no decode or cache effect favours any case.

The cache key is every parameter: a cached plate is reused as is; a partial one (no ``.complete`` mark) is
regenerated. ``benchmarks/.cache/`` is in ``.gitignore``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ._common import ROOT

__all__ = ["CACHE", "PlateSpec", "ensure_plate", "make_field"]

CACHE = ROOT / "benchmarks" / ".cache"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateSpec:
    """What to generate: ``wells`` wells (row-major from A01) x ``sites`` x ``channels`` of ``size`` pixels, from
    ``fields`` distinct fields (0: every (well, site) its own) hard-linked in turn (a 384-well plate of 2,048-pixel
    images is 12 GB of files but only ``fields`` x 8 MB on disk and in the page cache)."""

    wells: int
    sites: int
    channels: int
    size: int
    fields: int = 0
    seed: int = 16
    version: int = 1  # bump when the generator changes, so old caches are not reused

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"plate-{self.size}px-{self.wells}w{self.sites}s{self.channels}c-{digest}"

    @property
    def image_bytes(self) -> int:
        return self.size * self.size * 2


def _well_names(count: int) -> list[str]:
    rows = "ABCDEFGHIJKLMNOP"
    return [f"{rows[i // 24]}{i % 24 + 1:02d}" for i in range(count)]


def _centres(rng: np.random.Generator, size: int, count: int, radius: float) -> NDArray[np.float64]:
    """Nucleus centres: mostly apart (a jittered grid), a fifth of them touching a neighbour (clusters)."""
    cells = max(1, int(np.sqrt(count)))
    pitch = size / cells
    grid = np.array([((i + 0.5) * pitch, (j + 0.5) * pitch) for i in range(cells) for j in range(cells)])
    grid += rng.uniform(-0.25, 0.25, size=grid.shape) * pitch
    centres = [grid]
    buddies = grid[rng.random(len(grid)) < 0.2]  # touching partners: 1.6-1.9 radii away, in a random direction
    angle = rng.uniform(0, 2 * np.pi, size=len(buddies))
    dist = rng.uniform(1.6, 1.9, size=len(buddies)) * radius
    centres.append(buddies + np.stack([np.sin(angle), np.cos(angle)], axis=1) * dist[:, None])
    out = np.concatenate(centres)
    margin = radius * 1.5
    keep = np.all((out > margin) & (out < size - margin), axis=1)
    return np.asarray(out[keep])


def make_field(rng: np.random.Generator, size: int, channels: int) -> tuple[list[NDArray[np.uint16]], int]:
    """One field: ``channels`` uint16 images (channel 1 the nuclei) and its true number of nuclei."""
    radius = max(3.0, 12.0 * size / 2048)  # ~24-pixel nuclei at 2,048 pixels (a 20x objective)
    count = max(4, int(600 * (size / 2048) ** 2))  # ~720 nuclei in a 2,048-pixel field, clusters included
    centres = _centres(rng, size, count, radius)
    n = len(centres)
    yy, xx = np.mgrid[0:size, 0:size]
    illumination = 1.0 - 0.35 * (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 2) ** 2)
    images = []
    for channel in range(1, channels + 1):
        nuclear = channel == 1
        signal = np.zeros((size, size), np.float32)
        r_scale = 1.0 if nuclear else 2.2
        brightness = rng.lognormal(np.log(1800 if nuclear else 500), 0.45, size=n)
        for (cy, cx), b in zip(centres, brightness, strict=True):
            a = radius * r_scale * rng.uniform(0.8, 1.2)
            e = a * rng.uniform(0.65, 1.0)
            theta = rng.uniform(0, np.pi)
            half = int(a * 1.6) + 2
            y0, y1 = max(0, int(cy) - half), min(size, int(cy) + half + 1)
            x0, x1 = max(0, int(cx) - half), min(size, int(cx) + half + 1)
            dy = yy[y0:y1, x0:x1] - cy
            dx = xx[y0:y1, x0:x1] - cx
            u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
            v = (-dx * np.sin(theta) + dy * np.cos(theta)) / e
            rho2 = u * u + v * v
            body = 1.0 / (1.0 + np.exp((np.sqrt(rho2) - 1.0) * 8.0))  # a soft-edged ellipse
            texture = 1.0 + 0.15 * rng.standard_normal(body.shape) if nuclear else 1.0
            np.maximum(signal[y0:y1, x0:x1], (b * body * texture).astype(np.float32), out=signal[y0:y1, x0:x1])
        background = 120.0 if nuclear else 180.0
        expected = background + signal * illumination.astype(np.float32)
        photons = rng.poisson(np.maximum(expected, 0) / 2.0) * 2.0  # shot noise (gain 2)
        camera = 100.0 + rng.normal(0.0, 6.0, size=(size, size))  # offset and read noise
        images.append(np.clip(photons + camera, 0, 65535).astype(np.uint16))
    return images, n


def ensure_plate(spec: PlateSpec, *, cache: Path = CACHE) -> Path:
    """The plate folder for ``spec`` below ``cache`` (generated now unless a complete one is cached).

    The folder holds ``plate/`` (the images) and ``ground_truth.csv`` (well, site, nuclei).
    """
    import tifffile

    root = cache / spec.key()
    if (root / ".complete").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    (root / "plate").mkdir(parents=True)
    rng = np.random.default_rng(spec.seed)
    truth = []
    made: list[tuple[str, int]] = []  # the (well, site) of each distinct field, in order
    counts: list[int] = []
    for index, (well, site) in enumerate((w, s) for w in _well_names(spec.wells) for s in range(1, spec.sites + 1)):
        if spec.fields and index >= spec.fields:
            source_well, source_site = made[index % spec.fields]
            for channel in range(1, spec.channels + 1):
                source = root / "plate" / f"{source_well}_s{source_site}_w{channel}.tif"
                os.link(source, root / "plate" / f"{well}_s{site}_w{channel}.tif")
            truth.append((well, site, counts[index % spec.fields]))
            continue
        images, count = make_field(rng, spec.size, spec.channels)
        for channel, image in enumerate(images, start=1):
            tifffile.imwrite(root / "plate" / f"{well}_s{site}_w{channel}.tif", image)
        made.append((well, site))
        counts.append(count)
        truth.append((well, site, count))
    with open(root / "ground_truth.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["well", "site", "nuclei"])
        writer.writerows(truth)
    (root / "spec.json").write_text(json.dumps(asdict(spec)) + "\n")
    (root / ".complete").write_text(str(os.getpid()) + "\n")
    return root


def ground_truth(root: Path) -> dict[tuple[str, int], int]:
    """(well, site) -> true number of nuclei, from ``ensure_plate``'s folder."""
    with open(root / "ground_truth.csv", newline="", encoding="utf-8") as fh:
        return {(r["well"], int(r["site"])): int(r["nuclei"]) for r in csv.DictReader(fh)}
