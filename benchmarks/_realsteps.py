"""The one place the real-work benchmark takes its pipeline from, and the per-well loop the plain scripts share.

Every case of ``benchmarks.realplates`` runs :data:`PIPELINE_TEXT`: ``hcs-batch run`` gets it as ``--pipeline``,
the ``multiprocessing.Pool`` script and the single-process loop call the same step functions through
:func:`process_well`, which follows the worker's step contract (``hcs_batch.steps``' module docstring). When the
built-in counter or the worker's loop changes, change :func:`pipeline_text` / :func:`process_well` here and every
case follows.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Step", "compile_steps", "group_wells", "pipeline_text", "process_well", "read_rows", "write_rows"]

Step = tuple[Callable[..., Any], dict[str, Any], bool]
"""(function, keyword parameters, wants ``raw``)."""


def pipeline_text() -> str:
    """The pipeline every case runs: the built-in nucleus counter as the server ships it."""
    from hcs_batch.pipeline import default_pipeline_text

    return default_pipeline_text()


def compile_steps(text: str) -> list[Step]:
    """Import the pipeline's step functions, as the server's compiler does."""
    from hcs_batch.pipeline import parse_pipeline

    steps: list[Step] = []
    for step in parse_pipeline(text).steps:
        module, _, name = step.func.partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
        steps.append((fn, dict(step.params), "raw" in inspect.signature(fn).parameters))
    return steps


def group_wells(plate: Path) -> dict[str, list[tuple[int, int, str]]]:
    """well -> [(site, channel, file name)] for a flat ``<well>_s<site>_w<channel>.tif`` plate folder."""
    wells: dict[str, list[tuple[int, int, str]]] = {}
    for name in sorted(os.listdir(plate)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in (".tif", ".tiff"):
            continue
        well, site, channel = stem.split("_")
        wells.setdefault(well, []).append((int(site[1:]), int(channel[1:]), name))
    return wells


def process_well(
    plate: Path, well: str, images: Sequence[tuple[int, int, str]], steps: list[Step]
) -> list[dict[str, Any]]:
    """Every image of one well through ``steps``, as the worker does: one row per (site, channel)."""
    import tifffile

    rows = []
    for site, channel, name in images:
        raw = tifffile.imread(plate / name)
        image = raw
        row: dict[str, Any] = {"well": well, "site": site, "channel": channel}
        for fn, params, wants_raw in steps:
            out = fn(image, raw=raw, **params) if wants_raw else fn(image, **params)
            if isinstance(out, dict):
                row.update({k: v.item() if isinstance(v, np.generic) else v for k, v in out.items()})
            elif out is not None:
                image = out
        rows.append(row)
    return rows


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """A CSV of ``rows`` (columns in first-seen order)."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> dict[tuple[str, ...], int]:
    """(well, site, channel[, timepoint]) -> object_count from a results CSV (ours or hcs-batch's wells.csv)."""
    out: dict[tuple[str, ...], int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            key = tuple(str(row[k]) for k in ("well", "site", "channel", "timepoint") if k in row)
            out[key[:3]] = int(float(row["object_count"]))
    return out
