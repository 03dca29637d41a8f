"""What runs inside worker processes: load one well's images, run the steps, measure, record and return rows.

A well's images are grouped into *image sets*: one (site, timepoint) with a 2-D plane per channel (several files
of one channel, its z-planes, are max-projected by :func:`.images.load_plane`).

- A pipeline with a segmenting step (:func:`hcs_batch.steps.makes_objects`) runs once per image set, on the plan's
  ``segment_channel``; every channel is then measured inside the objects (:mod:`hcs_batch.measure`). Each channel
  gets a row: ``object_count`` (the objects' number, the same for every channel) and ``mean_intensity`` (that
  channel's mean over all object pixels, 0.0 without objects); measurements that steps returned as dicts go on
  the segmentation channel's row (a step's ``object_count`` or ``mean_intensity`` is overridden by the objects').
  Every object gets a row in the well's object table (``channel`` = the segmentation channel).
- A pipeline without one runs on every channel's plane on its own, as before; it measures no objects.

Rows carry ``well, site, channel, timepoint`` (timepoint 1 when the layout has none) and ``file`` (the plane's
source files relative to the plate folder, ``;``-separated when z-planes were projected). A step's measurement
named like one of those (or ``plate``) is a step error, and so is a measurement that is not one number or string:
both name the step, the measurement and the well. Every row records the ``worker`` that computed it
(``local:<pid>`` or a Dask worker's address); ``should_stop`` is the cooperative cancellation check (the same
:func:`run_well` runs in a local worker process and inside a Dask task). Arguments and results are
plain data (strings, numbers, lists, dicts), so nothing but those crosses the process boundary. Step functions are
imported once per worker process and cached.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..measure import Objects, channel_means, to_labels
from ..steps import is_objects_step, step_call
from .images import ImageError, load_plane, source_path
from .results import Row, write_well_result

if TYPE_CHECKING:  # the compiler (pipeline parsing, the allowlist's entry points) is no worker's business
    from .compiler import WorkerStep

__all__ = ["ImageSet", "StepFailure", "WellStopped", "image_sets", "run_well", "warm_up"]

_functions: dict[str, Callable[..., Any]] = {}

ImageSet = tuple[int, int, dict[int, list[str]]]
"""One image set of a well: (site, timepoint, {channel: the files of its plane})."""


class StepFailure(RuntimeError):
    """A step raised or returned something unusable; the message names the well, image and step."""


class WellStopped(Exception):
    """``should_stop`` said yes: the well was abandoned between two steps and no result file was written."""


def _never() -> bool:
    return False


def warm_up() -> int:
    """Import what every well of the built-in counter imports (scikit-image's lazily loaded watershed, SciPy's
    k-d tree, OpenCV), so the first real well does not pay for it and a warm worker's memory before its first
    well is what it keeps (the 'interpreter' of the real-work benchmark); returns the worker's pid."""
    import pyarrow.parquet  # noqa: F401
    import scipy.ndimage
    import scipy.spatial  # noqa: F401
    import skimage.measure
    import skimage.segmentation
    import tifffile  # noqa: F401

    import hcs_batch.outline
    import hcs_batch.steps  # noqa: F401
    from hcs_batch import imageops

    skimage.segmentation.watershed  # noqa: B018 - attribute access loads the lazy submodule
    imageops._cv()
    _exercise()
    return os.getpid()


def _exercise() -> None:
    """Run the built-in counter, the measurement and a result file's encoding once on a small synthetic field
    (two touching nuclei and a lone one): the libraries' code pages and first-call buffers (~10 MiB of RSS on a
    2,048-pixel plate) are then in place before the first well, as they stay after it."""
    import io

    import pyarrow.parquet as pq
    import tifffile

    from hcs_batch import steps

    from .results import objects_table

    y, x = np.mgrid[:96, :96]
    field = np.full((96, 96), 1000, np.uint16)
    for cy, cx, r in ((30, 30, 9), (30, 45, 9), (70, 60, 8)):
        field[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = 4000
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, field)
    field = tifffile.imread(io.BytesIO(buffer.getvalue()))
    mask = steps.otsu_threshold(steps.gaussian_blur(steps.normalize(field), sigma=1.0), log=True)
    objects = Objects(to_labels(steps.split_touching(mask, min_distance=4, min_size=20), field.shape))
    columns = {**objects.shape(), **objects.intensity(field)}
    pq.write_table(objects_table([columns]), io.BytesIO())


def _function(ref: str) -> Callable[..., Any]:
    func = _functions.get(ref)
    if func is None:
        module, _, name = ref.partition(":")
        func = getattr(importlib.import_module(module), name)
        _functions[ref] = func
    return func


IDENTITY_COLUMNS = frozenset({"plate", "well", "site", "channel", "timepoint", "file"})
"""Columns that say which image a row is about: a step's measurement can never replace them."""


def _measurement(where: str, ref: str, key: object, value: Any) -> tuple[str, Any]:
    """A step's measurement as (name, plain number or string). Raises StepFailure naming the step, the
    measurement and the well for an identity column or a value that is not a number or a string."""
    name = str(key)
    if name in IDENTITY_COLUMNS:
        raise StepFailure(
            f"{where}: step {ref} returned a measurement named {name!r}, which would replace the row's identity "
            f"column; rename the measurement (identity columns: {', '.join(sorted(IDENTITY_COLUMNS))})"
        )
    if isinstance(value, np.generic) and value.ndim == 0:
        value = value.item()
    if not isinstance(value, int | float | str):  # bool is an int
        raise StepFailure(
            f"{where}: step {ref} returned measurement {name!r} as {type(value).__name__}; a measurement is one "
            "number or string (return arrays as the step's result, not inside its dict)"
        )
    return name, value


def image_sets(images: Sequence[Sequence[Any]]) -> list[ImageSet]:
    """Group a well's images into image sets sorted by (site, timepoint).

    Accepts a plate index's image sets, ``(site, timepoint, ((channel, (file, ...)), ...))``, and flat entries,
    ``(site, channel, file)`` or ``(site, channel, timepoint, file)``; files of the same (site, channel,
    timepoint) are the z-planes of one plane.
    """
    sets: dict[tuple[int, int], dict[int, list[str]]] = {}
    for item in images:
        if len(item) == 3 and not isinstance(item[2], str):  # an index image set: (site, timepoint, channels)
            channels = sets.setdefault((int(item[0]), int(item[1])), {})
            for channel, sources in item[2]:
                channels.setdefault(int(channel), []).extend(str(s) for s in sources)
            continue
        site, channel = int(item[0]), int(item[1])
        timepoint = int(item[2]) if len(item) == 4 else 1
        sets.setdefault((site, timepoint), {}).setdefault(channel, []).append(str(item[-1]))
    return [(site, t, dict(sorted(channels.items()))) for (site, t), channels in sorted(sets.items())]


def _load(plate_path: str, sources: list[str], well: str, projection: str) -> NDArray[Any]:
    """The plane of ``sources``; raises StepFailure ``"well A03: cannot read A03_s1_w1.tif: <why>"`` (the file
    names the site and channel; the server's own path to it stays out of the message)."""
    try:
        return load_plane(plate_path, sources, projection)
    except Exception as exc:
        why = str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"
        for source in sources:
            try:
                full = str(source_path(plate_path, source))
            except ImageError:
                continue
            why = why.replace(f"cannot read image {full}: ", "").replace(f"{full}: ", "").replace(full, source)
        raise StepFailure(f"well {well}: cannot read {', '.join(sources)}: {why}") from None


def _run_steps(
    where: str, planes: list[NDArray[Any]], steps: tuple[WorkerStep, ...], row: Row, stop: Callable[[], bool]
) -> NDArray[Any] | None:
    """Run ``steps`` on the plane taken out of ``planes`` (one), merging dict results into ``row``; the last
    segmenting step's result or None. Unless a step wants ``raw``, the plane is released once the first step has
    returned (the caller keeps no reference: hence the list). The working image is handed over to each step
    (:func:`hcs_batch.steps.may_overwrite`) unless it is the raw plane, a segmentation or a view. Raises
    WellStopped when ``stop()`` says so after a step."""
    image, objects = planes.pop(), None
    raw = image if any(wants_raw for _, _, wants_raw in steps) else None
    notes: dict[str, Any] = {}
    for ref, params, wants_raw in steps:
        owned = image is not raw and image is not objects and image.base is None and image.flags.writeable
        try:
            func = _function(ref)
            with step_call(notes, image if owned else None):
                result = func(image, raw=raw, **params) if wants_raw else func(image, **params)
        except Exception as exc:
            raise StepFailure(f"{where}: step {ref} failed: {type(exc).__name__}: {exc}") from None
        for key, value in notes.items():  # what a step recorded beside its image (the threshold it used)
            name, plain = _measurement(where, ref, key, value)
            row[name] = plain
        notes.clear()
        if isinstance(result, np.ndarray):
            image = result
            if is_objects_step(func):
                objects = result
        elif isinstance(result, dict):
            for key, value in result.items():
                name, plain = _measurement(where, ref, key, value)
                row[name] = plain
        elif result is not None:
            raise StepFailure(
                f"{where}: step {ref} returned {type(result).__name__}; a step returns an array, a dict or None"
            )
        if stop():
            raise WellStopped(f"{where} after step {ref}")
    return objects


def _measure_set(
    plate_path: str,
    well: str,
    image_set: ImageSet,
    steps: tuple[WorkerStep, ...],
    segment_channel: int,
    channel_names: Mapping[int, str],
    projection: str,
    worker: str,
    stop: Callable[[], bool],
) -> tuple[list[Row], dict[str, Any]]:
    """Segment one image set on ``segment_channel`` and measure every channel: (rows, object columns).

    Holds as few images as it can: the segmentation channel only until the first step has returned (unless a
    step wants ``raw``), then what the steps return; then the labels and one channel at a time, each decoded
    when its turn comes (the segmentation channel again, first) and released once measured."""
    site, timepoint, channels = image_set
    where = f"well {well} site {site} timepoint {timepoint}"
    if segment_channel not in channels:
        have = ", ".join(str(c) for c in channels)
        raise StepFailure(f"{where}: no image of the segmentation channel {segment_channel} (channels: {have})")
    seg_where = f"{where} channel {segment_channel}"
    planes = [_load(plate_path, channels[segment_channel], well, projection)]
    shape = planes[0].shape
    extra: Row = {}
    objects = _run_steps(seg_where, planes, steps, extra, stop)
    if objects is None:  # the segmenting step did not run (cannot happen with a checked plan; be explicit)
        raise StepFailure(f"{where}: no step made objects")
    try:
        labels = to_labels(objects, shape)
    except ValueError as exc:
        raise StepFailure(f"{where}: the segmenting step's result is unusable: {exc}") from None
    del objects
    measured = Objects(labels)
    columns: dict[str, Any] = measured.shape()
    intensities: dict[int, dict[str, Any]] = {}
    for channel, sources in sorted(channels.items(), key=lambda item: item[0] != segment_channel):
        # The segmentation channel first: decoded again (a few ms) rather than held through the steps.
        plane = _load(plate_path, sources, well, projection)
        if plane.shape != labels.shape:
            shapes = f"channel {channel} is {plane.shape}, channel {segment_channel} {labels.shape}"
            raise StepFailure(f"{where}: {shapes}")
        intensities[channel] = measured.intensity(plane)
        del plane
    names = [channel_names.get(c, str(c)) for c in channels]
    if len(set(names)) != len(names):  # two channels of one name: their columns would collide
        names = [str(c) for c in channels]
    for channel, name in zip(channels, names, strict=True):
        suffix = "" if len(names) == 1 else f"_{name}"
        columns.update((f"{column}{suffix}", values) for column, values in intensities[channel].items())
    means = channel_means(columns, names)
    count = len(columns["ObjectNumber"])
    rows: list[Row] = []
    for channel, name in zip(channels, names, strict=True):
        row: Row = {"well": well, "site": site, "channel": channel, "worker": worker, "timepoint": timepoint}
        row["file"] = ";".join(channels[channel])
        if channel == segment_channel:
            row.update(extra)
        row["object_count"] = count
        row["mean_intensity"] = means[name]
        rows.append(row)
    keys = {"well": [well] * count, "site": [site] * count, "channel": [segment_channel] * count}
    return rows, {**keys, "timepoint": [timepoint] * count, **columns}


def run_well(
    plate_path: str,
    well: str,
    images: Sequence[Sequence[Any]],
    steps: tuple[WorkerStep, ...],
    plate_dir: str,
    well_key: str,
    projection: str = "max",
    segment_channel: int = 1,
    channel_names: Mapping[int, str] | None = None,
    worker: str = "",
    should_stop: Callable[[], bool] | None = None,
) -> list[Row]:
    """Process every image set of ``well`` (see the module docstring); write the well's result and object files
    (:func:`.results.write_well_result`, both carrying ``well_key``: :meth:`.compiler.Plan.well_key`); return its
    rows.

    ``projection`` is how z-planes become one plane (see :func:`.images.load_plane`); ``channel_names`` names
    channels in object column suffixes (the layout's names); a channel without one is named by its number, and
    so is every channel when two share a name.

    Every row gets ``worker`` (default ``local:<pid of this process>``). ``should_stop`` is called before every
    image set and after every step; when it returns True the well is abandoned there (no result file).

    Raises:
        StepFailure: an image could not be read or is not 2-D, a step raised or returned something else than an
            array, a dict or None, a segmentation is not a label image or mask. (Only the message crosses back.)
        WellStopped: ``should_stop`` returned True.
    """
    worker = worker or f"local:{os.getpid()}"
    stop = should_stop or _never
    names = dict(channel_names or {})
    segmenting = any(is_objects_step(_function(ref)) for ref, _, _ in steps)
    rows: list[Row] = []
    tables: list[dict[str, Any]] = []
    for image_set in image_sets(images):
        if stop():
            raise WellStopped(f"well {well} site {image_set[0]} timepoint {image_set[1]}")
        if segmenting:
            set_rows, table = _measure_set(
                plate_path, well, image_set, steps, segment_channel, names, projection, worker, stop
            )
            rows.extend(set_rows)
            tables.append(table)
            continue
        site, timepoint, channels = image_set
        for channel, sources in channels.items():
            where = f"well {well} site {site} channel {channel} timepoint {timepoint}"
            row: Row = {"well": well, "site": site, "channel": channel, "worker": worker, "timepoint": timepoint}
            row["file"] = ";".join(sources)
            _run_steps(where, [_load(plate_path, sources, well, projection)], steps, row, stop)
            rows.append(row)
    write_well_result(Path(plate_dir), well, well_key, rows, tables)
    return rows
