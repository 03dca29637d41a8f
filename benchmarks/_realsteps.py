"""The one place the real-work benchmark takes its pipeline from, and the per-well loop the plain scripts share.

Every case of ``benchmarks.realplates`` runs :func:`pipeline_text`, the built-in nucleus counter: ``hcs-batch run``
gets it as ``--pipeline``, the ``multiprocessing.Pool`` script and the single-process loop call the same step
functions through :func:`process_well`, which does what the server's worker does with it (``hcs_batch.steps``'
module docstring): per image set (site) the steps run on the segmentation channel, the objects of the segmenting
step are measured in every channel (:class:`hcs_batch.measure.Objects`), and every channel's row gets the
``object_count`` and its ``mean_intensity`` inside the objects; the object tables are written too. When the
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

__all__ = [
    "Pipeline",
    "Step",
    "compile_steps",
    "group_wells",
    "pipeline_text",
    "process_well",
    "read_rows",
    "write_objects",
    "write_rows",
]

Step = tuple[Callable[..., Any], dict[str, Any], bool]
"""(function, keyword parameters, wants ``raw``)."""


class Pipeline(list[Step]):
    """The compiled steps, and the channel a segmenting step runs on (``segment_channel``)."""

    segment_channel: int = 1


def pipeline_text() -> str:
    """The pipeline every case runs: the built-in nucleus counter as the server ships it."""
    from hcs_batch.pipeline import default_pipeline_text

    return default_pipeline_text()


def compile_steps(text: str) -> Pipeline:
    """Import the pipeline's step functions, as the server's compiler does."""
    from hcs_batch.pipeline import parse_pipeline

    spec = parse_pipeline(text)
    steps = Pipeline()
    steps.segment_channel = spec.segment_channel
    for step in spec.steps:
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


def _run(planes: list[Any], steps: list[Step], row: dict[str, Any]) -> Any:
    """``steps`` on the image taken out of ``planes`` (dict results into ``row``); the last segmenting step's result
    or None. As the worker does, the image is released after the first step unless a step wants ``raw``."""
    from hcs_batch.steps import is_objects_step

    image, objects = planes.pop(), None
    raw = image if any(wants_raw for _, _, wants_raw in steps) else None
    for fn, params, wants_raw in steps:
        out = fn(image, raw=raw, **params) if wants_raw else fn(image, **params)
        if isinstance(out, dict):
            row.update({k: v.item() if isinstance(v, np.generic) else v for k, v in out.items()})
        elif out is not None:
            image = out
            if is_objects_step(fn):
                objects = out
    return objects


def process_well(
    plate: Path, well: str, images: Sequence[tuple[int, int, str]], steps: list[Step]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every image set (site) of one well through ``steps``, as the worker does: (one row per (site, channel),
    the object tables of its sites)."""
    import tifffile

    from hcs_batch.measure import Objects, channel_means, to_labels
    from hcs_batch.steps import is_objects_step

    segment = getattr(steps, "segment_channel", 1)
    segmenting = any(is_objects_step(fn) for fn, _, _ in steps)
    sites: dict[int, dict[int, str]] = {}
    for site, channel, name in images:
        sites.setdefault(site, {})[channel] = name
    rows: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    for site, channels in sorted(sites.items()):
        channels = dict(sorted(channels.items()))
        if not segmenting:
            for channel, name in channels.items():
                row: dict[str, Any] = {"well": well, "site": site, "channel": channel}
                _run([tifffile.imread(plate / name)], steps, row)
                rows.append(row)
            continue
        # As the worker does: the segmentation channel alone until the first step returns, then one at a time.
        extra: dict[str, Any] = {}
        planes = [tifffile.imread(plate / channels[segment])]
        shape = planes[0].shape
        measured = Objects(to_labels(_run(planes, steps, extra), shape))
        columns: dict[str, Any] = measured.shape()
        intensities = {}
        for channel in sorted(channels, key=lambda c: c != segment):  # the segmentation channel decoded again
            intensities[channel] = measured.intensity(tifffile.imread(plate / channels[channel]))
        names = [str(c) for c in channels]
        for channel, name in zip(channels, names, strict=True):
            suffix = "" if len(names) == 1 else f"_{name}"
            columns.update((f"{column}{suffix}", values) for column, values in intensities[channel].items())
        means = channel_means(columns, names)
        count = len(columns["ObjectNumber"])
        for channel, name in zip(channels, names, strict=True):
            row = {"well": well, "site": site, "channel": channel, **(extra if channel == segment else {})}
            row.update(object_count=count, mean_intensity=means[name])
            rows.append(row)
        tables.append({"well": [well] * count, "site": [site] * count, "channel": [segment] * count, **columns})
    return rows, tables


def write_objects(path: Path, tables: Iterable[dict[str, Any]]) -> None:
    """One Parquet file of the object tables (as hcs-batch writes ``objects.parquet``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [t for t in tables if t]
    if tables:
        pq.write_table(pa.concat_tables([pa.table(t) for t in tables]), path)


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
