"""The plate map: a plate's wells on its grid, coloured by a per-well value, as ``<output>/<plate>/plate_map.png``.

The geometry (:func:`plate_format`, :func:`well_position`) and the per-well means (:func:`well_means`) are plain
functions without I/O, shared with the GUI's live map. :func:`write_plate_map` renders with matplotlib's Agg
canvas (object API, no pyplot: no global state, safe on the server's thread lane) and writes atomically.

A plate is drawn on the smallest standard format holding every well found: 96 (8 x 12), 384 (16 x 24) or
1,536 (32 x 48). Wells without a value are drawn empty (grey outline).
"""

from __future__ import annotations

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
    "numeric_columns",
    "plate_format",
    "render_plate_map",
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


def render_plate_map(plate_name: str, values: Mapping[str, float], wells: Iterable[str], label: str) -> bytes:
    """The PNG bytes of the plate map: title ``plate_name``, the grid with row letters and column numbers, each
    well of ``values`` coloured by its value (viridis), ``wells`` without a value outlined, a colour bar ``label``."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    all_wells = set(wells) | set(values)
    rows, cols = plate_format(all_wells)
    grid = np.full((rows, cols), np.nan)
    for well, value in values.items():
        pos = well_position(well)
        if pos is not None:
            grid[pos] = value
    width = 2.0 + cols * 0.42 if cols <= 12 else 2.0 + cols * 0.24 if cols <= 24 else 2.0 + cols * 0.16
    fig = Figure(figsize=(width, 1.4 + width * rows / cols * 0.9), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    finite = grid[np.isfinite(grid)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=vmin, vmax=vmax, aspect="equal")
    for well in all_wells - set(values):
        pos = well_position(well)
        if pos is not None:
            ax.add_patch(_empty_well(pos))
    ax.set_facecolor("#f2f2f2")
    step = 1 if cols <= 24 else 2
    ax.set_xticks(range(0, cols, step), [str(c + 1) for c in range(0, cols, step)], fontsize=7)
    ax.set_yticks(range(rows), list(ROWS[:rows]), fontsize=7)
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.xaxis.tick_top()
    ax.set_title(f"{plate_name}  ({rows * cols}-well plate, {len(values)} wells measured)", fontsize=10, pad=18)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, shrink=0.75)  # every format is 2:3
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()


def _empty_well(pos: tuple[int, int]) -> Any:
    from matplotlib.patches import Rectangle

    row, col = pos
    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#b0b0b0", linewidth=0.8)


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
    except Exception as exc:  # matplotlib raises many kinds; the plate's results stand without the picture
        log.warning("could not write the plate map %s: %s: %s", target, type(exc).__name__, exc)
        return None
    return target
