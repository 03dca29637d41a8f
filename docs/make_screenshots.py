"""Make the README's plate-manager screenshots on a real-looking 96-well plate.

    python docs/make_screenshots.py [WORKDIR]

Writes ``Screen01_Plate03`` (A01..H12, 2 sites, ``w1`` nuclei and ``w2`` cytoplasm, 320 x 320 uint16 TIFFs named as
a flat ImageXpress export) below WORKDIR (default: a temporary folder): nuclei are elliptic, textured and blurred
on a vignetted background; the edge wells hold fewer cells (an evaporation edge effect), column 11 is a toxic
compound (few cells) and column 1 the untreated control. Then runs ``python -m guest_mode ... --run --screenshot``
(offscreen) and saves ``docs/screenshot.png`` and ``docs/plate_map.png`` (the server's picture of the plate).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

SIZE = 320
ROWS = "ABCDEFGH"
DOCS = Path(__file__).resolve().parent


def cells_in(row: int, col: int, rng: np.random.Generator) -> int:
    """How many cells a site of well (row, col) holds (0-based)."""
    base = 42.0
    if col == 0:
        base = 52.0  # untreated control
    elif col == 10:
        base = 7.0  # toxic compound
    else:
        base *= 1.0 - 0.05 * (col % 5)  # a dose series
    if row in (0, 7) or col in (0, 11):
        base *= 0.7  # edge effect
    return max(1, int(rng.normal(base, base * 0.12)))


def draw_site(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(nuclei, cytoplasm) planes of one field with ``count`` cells."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    vignette = 1.0 - 0.3 * (((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) / (SIZE / 2) ** 2)
    nuclei = np.zeros((SIZE, SIZE), np.float32)
    cyto = np.zeros((SIZE, SIZE), np.float32)
    centres: list[tuple[float, float]] = []
    tries = 0
    while len(centres) < count and tries < count * 60:
        tries += 1
        cy, cx = rng.uniform(10, SIZE - 10, 2)
        if all((cy - y) ** 2 + (cx - x) ** 2 > 17.0**2 for y, x in centres):
            centres.append((cy, cx))
    for cy, cx in centres:
        a, b = rng.uniform(6.0, 9.0), rng.uniform(4.5, 7.0)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        r = np.sqrt(u * u + v * v)
        nuclei += rng.uniform(1800, 4200) / (1.0 + np.exp(np.minimum((r - 1.0) * 9.0, 60.0)))
        cyto += rng.uniform(400, 800) / (1.0 + np.exp((r - rng.uniform(1.9, 2.6)) * 3.0))
    texture = ndimage.gaussian_filter(rng.normal(1.0, 0.25, (SIZE, SIZE)).astype(np.float32), 1.2)
    nuclei = ndimage.gaussian_filter(nuclei * texture, 1.0)
    fibres = ndimage.gaussian_filter(rng.normal(1.0, 0.6, (SIZE, SIZE)).astype(np.float32), (0.6, 2.5))
    cyto = ndimage.gaussian_filter(cyto * np.clip(fibres, 0.2, None), 0.8)
    out = []
    for plane, background in ((nuclei, 260.0), (cyto, 380.0)):
        image = (background + plane) * vignette + rng.normal(0, 18, plane.shape)
        out.append(np.clip(image, 0, 65535).astype(np.uint16))
    return out[0], out[1]


def make_plate(root: Path) -> Path:
    folder = root / "Screen01_Plate03"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    for r, row in enumerate(ROWS):
        for col in range(12):
            well = f"{row}{col + 1:02d}"
            for site in (1, 2):
                nuclei, cyto = draw_site(cells_in(r, col, rng), rng)
                tifffile.imwrite(folder / f"{well}_s{site}_w1.tif", nuclei)
                tifffile.imwrite(folder / f"{well}_s{site}_w2.tif", cyto)
    return folder


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="hcs-shots-"))
    plate = make_plate(work / "plates")
    out = work / "results"
    # A settings folder of its own: the screenshot shows the default layout, not the one this user last left.
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(work / "config")}
    command = [sys.executable, "-m", "guest_mode", str(plate), "--run", "--exit-when-done", f"--output={out}"]
    shot = DOCS / "screenshot.png"
    done = subprocess.run([*command, f"--screenshot={shot}"], env=env, cwd=work, check=False)
    if done.returncode != 0:
        return done.returncode
    shutil.copyfile(out / plate.name / "plate_map.png", DOCS / "plate_map.png")
    print(f"wrote {shot} and {DOCS / 'plate_map.png'} (plate in {plate})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
