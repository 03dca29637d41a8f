"""The plate map: a plate's wells on its grid, coloured by a per-well value, as ``<output>/<plate>/plate_map.png``.

The geometry (:func:`plate_format`, :func:`well_position`) and the per-well means (:func:`well_means`) are plain
functions without I/O, shared with the GUI's live map. :func:`write_plate_map` renders with Pillow (a few
milliseconds, no global state: safe on the server's thread lane) and writes atomically. :func:`viridis` is the colour
scale the GUI's live map shares.

A plate is drawn on the smallest standard format holding every well found: 96 (8 x 12), 384 (16 x 24) or
1,536 (32 x 48). Wells without a value are drawn empty (grey outline).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .layouts.index import ROWS
from .results import atomic_write

__all__ = [
    "FORMATS",
    "PLATE_MAP_FILE",
    "VIRIDIS",
    "numeric_columns",
    "plate_format",
    "render_plate_map",
    "viridis",
    "warm_up",
    "well_means",
    "well_position",
    "write_plate_map",
]

log = logging.getLogger("hcs_batch.server")

PLATE_MAP_FILE = "plate_map.png"
FORMATS: tuple[tuple[int, int], ...] = ((8, 12), (16, 24), (32, 48))
"""(rows, columns) of the 96-, 384- and 1,536-well plates."""

_WELL = re.compile(r"^([A-Z]{1,2})0*(\d{1,2})$")
_ROW_INDEX = {name: index for index, name in enumerate(ROWS)}


def well_position(well: str) -> tuple[int, int] | None:
    """0-based (row, column) of a well named like ``A01``/``AF48``; None for a name that is no plate well."""
    match = _WELL.match(well.strip().upper())
    if match is None:
        return None
    row, col = _ROW_INDEX.get(match.group(1)), int(match.group(2))
    if row is None or not 1 <= col <= 48:
        return None
    return row, col - 1


def plate_format(wells: Iterable[str]) -> tuple[int, int]:
    """(rows, columns) of the smallest standard plate (96, 384, 1,536) that holds every well (96 when none)."""
    max_row = max_col = 0
    for well in wells:
        pos = well_position(well)
        if pos is not None:
            max_row, max_col = max(max_row, pos[0]), max(max_col, pos[1])
    for rows, cols in FORMATS:
        if max_row < rows and max_col < cols:
            return rows, cols
    return FORMATS[-1]


def _float(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    number = _float(value)
    return number if number is not None and math.isfinite(number) else None


def numeric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns (in first-seen order) whose every non-empty value is a finite number, ``well`` and the
    key columns ``site``, ``channel``, ``timepoint`` left out (they are where, not what, was measured); ``nan``
    counts as a number."""
    seen: dict[str, bool] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("well", "site", "channel", "timepoint"):
                continue
            ok = value in (None, "") or _float(value) is not None
            seen[key] = seen.get(key, True) and ok
    present = {key for row in rows for key, value in row.items() if value not in (None, "")}
    return [key for key, ok in seen.items() if ok and key in present]


def well_means(rows: Iterable[Mapping[str, Any]], column: str = "object_count") -> dict[str, float]:
    """The mean of ``column`` over each well's rows (sites, channels, timepoints); wells without a number for
    it are left out."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        value = _number(row.get(column))
        if value is not None:
            acc = sums.setdefault(str(row.get("well", "")), [0.0, 0.0])
            acc[0] += value
            acc[1] += 1
    return {well: total / count for well, (total, count) in sums.items()}


VIRIDIS: tuple[tuple[float, float, float], ...] = (
    (0.267, 0.005, 0.329),
    (0.283, 0.141, 0.458),
    (0.254, 0.265, 0.530),
    (0.207, 0.372, 0.553),
    (0.164, 0.471, 0.558),
    (0.128, 0.567, 0.551),
    (0.135, 0.659, 0.518),
    (0.267, 0.749, 0.441),
    (0.478, 0.821, 0.318),
    (0.741, 0.873, 0.150),
    (0.993, 0.906, 0.144),
)
"""Eleven anchors of matplotlib's viridis (0 to 1 in steps of 0.1), linearly interpolated between."""


def viridis(fraction: float) -> tuple[float, float, float]:
    """Viridis at ``fraction`` (0..1, clipped) as RGB floats in 0..1: the colour scale of the GUI's map and of
    ``plate_map.png``."""
    x = min(1.0, max(0.0, fraction)) * (len(VIRIDIS) - 1)
    i = min(int(x), len(VIRIDIS) - 2)
    t = x - i
    r, g, b = (a + (c - a) * t for a, c in zip(VIRIDIS[i], VIRIDIS[i + 1], strict=True))
    return r, g, b


_BACKGROUND = (242, 242, 242)
_EMPTY_OUTLINE = (176, 176, 176)
_TEXT = (30, 30, 30)
_CELL_PIXELS = {12: 40, 24: 24, 48: 14}
"""Cell size (pixels) by plate width: the 96-, 384- and 1,536-well maps come out about 550-750 pixels wide."""


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    """DejaVu Sans at ``size`` pixels (the font matplotlib ships: it covers accented and Greek plate names), or
    Pillow's own default font when matplotlib's data folder is absent."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")  # finds the file without importing matplotlib (0.3 s)
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def warm_up() -> None:
    """Load Pillow and the fonts the map is drawn with (blocking; the first time in a process ~0.05 s of CPU, and
    up to ~0.7 s of wall time reading them from a cold disk), so that drawing the map at the end of a plate does
    not wait for them."""
    from PIL import Image, ImageDraw  # noqa: F401

    for size in (14, 11, 9):
        _font(size)


def _rgb(fraction: float) -> tuple[int, int, int]:
    r, g, b = viridis(fraction)
    return round(r * 255), round(g * 255), round(b * 255)


def render_plate_map(plate_name: str, values: Mapping[str, float], wells: Iterable[str], label: str) -> bytes:
    """The PNG bytes of the plate map: title ``plate_name``, the grid with row letters and column numbers, each
    well of ``values`` coloured by its value (viridis), ``wells`` without a value outlined, a colour bar ``label``.

    Drawn with Pillow in a few milliseconds (matplotlib took ~150 ms of the server's CPU per plate, which a screen
    of a thousand small plates could not afford); deterministic: the same arguments give the same bytes.
    """
    from PIL import Image, ImageDraw

    all_wells = set(wells) | set(values)
    rows, cols = plate_format(all_wells)
    cell = _CELL_PIXELS[cols]
    finite = [v for v in values.values() if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if low == high:
        low, high = low - 0.5, high + 0.5
    ticks = [low + (high - low) * i / 4 for i in range(5)]

    font, small = _font(14), _font(11 if cell > 14 else 9)
    measured = f"{len(values)} well{'' if len(values) == 1 else 's'} measured"
    title = f"{plate_name}  ({rows * cols}-well plate, {measured})"
    left, top = 14 + round(small.getlength("AF")), 48
    grid_w, grid_h = cols * cell, rows * cell
    bar_x, bar_w, bar_h = left + grid_w + 16, 14, round(grid_h * 0.75)
    bar_y = top + (grid_h - bar_h) // 2
    label_x = bar_x + bar_w + 14 + max(round(small.getlength(f"{v:.3g}")) for v in ticks)
    width = max(label_x + 24, left + round(font.getlength(title)) + 8)
    image = Image.new("RGB", (width, top + grid_h + 10), "white")
    draw = ImageDraw.Draw(image)

    draw.text((left, 10), title, fill=_TEXT, font=font)
    for col in range(0, cols, 1 if cols <= 24 else 2):
        draw.text((left + col * cell + cell / 2, top - 4), str(col + 1), fill=_TEXT, font=small, anchor="mb")
    for row in range(rows):
        draw.text((left - 6, top + row * cell + cell / 2), ROWS[row], fill=_TEXT, font=small, anchor="rm")
    draw.rectangle((left, top, left + grid_w - 1, top + grid_h - 1), fill=_BACKGROUND)
    for well in sorted(all_wells):
        pos = well_position(well)
        if pos is None:
            continue
        x, y = left + pos[1] * cell, top + pos[0] * cell
        box = (x + 1, y + 1, x + cell - 2, y + cell - 2)
        value = values.get(well)
        if value is not None and math.isfinite(value):
            draw.rectangle(box, fill=_rgb((value - low) / (high - low)))
        else:
            draw.rectangle(box, outline=_EMPTY_OUTLINE)

    for y in range(bar_h):  # the colour bar: high at the top
        draw.line((bar_x, bar_y + y, bar_x + bar_w - 1, bar_y + y), fill=_rgb(1 - y / max(1, bar_h - 1)))
    draw.rectangle((bar_x, bar_y, bar_x + bar_w - 1, bar_y + bar_h - 1), outline=_TEXT)
    for value in ticks:
        y = round(bar_y + (bar_h - 1) * (high - value) / (high - low))
        draw.line((bar_x + bar_w, y, bar_x + bar_w + 3, y), fill=_TEXT)
        draw.text((bar_x + bar_w + 6, y), f"{value:.3g}", fill=_TEXT, font=small, anchor="lm")
    caption = Image.new("RGB", (round(small.getlength(label)) + 4, 16), "white")
    ImageDraw.Draw(caption).text((2, 8), label, fill=_TEXT, font=small, anchor="lm")
    caption = caption.rotate(90, expand=True)
    image.paste(caption, (label_x, max(0, top + (grid_h - caption.height) // 2)))

    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # zlib level 1: a third of the time of the default 6
    return out.getvalue()


def write_plate_map(plate_dir: Path, plate_name: str, rows: Sequence[Mapping[str, Any]]) -> Path | None:
    """Write ``plate_dir/plate_map.png``: the mean ``object_count`` of each well (blocking; run it on a thread).

    Returns the path written, or None when it could not be drawn or written: the map is a picture of results
    already on disk, so a failure is logged (a warning naming the file) and never fails the plate.
    """
    target = plate_dir / PLATE_MAP_FILE
    try:
        values = well_means(rows, "object_count")
        wells = [str(row.get("well", "")) for row in rows]
        atomic_write(target, render_plate_map(plate_name, values, wells, "mean object count per well"))
    except Exception as exc:  # Pillow raises many kinds; the plate's results stand without the picture
        log.warning("could not write the plate map %s: %s: %s", target, type(exc).__name__, exc)
        return None
    return target
