"""What runs inside worker processes: load one well's images, run the steps, record and return plain rows.

Arguments and results are plain data (strings, numbers, lists, dicts) so nothing but those crosses the process
boundary. Step functions are imported once per worker process and cached.

The same :func:`run_well` runs on a local worker process and inside a Dask task: its ``should_stop`` hook is the
cooperative cancellation check (called before every image and after every step), and every row records the
``worker`` that computed it (``local:<pid>`` unless the caller names it, e.g. a Dask worker's address).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .compiler import WellImages, WorkerStep
from .results import Row, write_well_result

__all__ = ["StepFailure", "WellStopped", "run_well", "warm_up"]

_functions: dict[str, Callable[..., Any]] = {}


class StepFailure(RuntimeError):
    """A step raised or returned something unusable; the message names the well, image and step."""


class WellStopped(Exception):
    """``should_stop`` said yes: the well was abandoned between two steps and no result file was written."""


def warm_up() -> int:
    """Import what every well needs, so the first real well does not pay for it; returns the worker's pid."""
    import scipy.ndimage  # noqa: F401
    import tifffile  # noqa: F401

    import hcs_batch.steps  # noqa: F401

    return os.getpid()


def _function(ref: str) -> Callable[..., Any]:
    func = _functions.get(ref)
    if func is None:
        module, _, name = ref.partition(":")
        func = getattr(importlib.import_module(module), name)
        _functions[ref] = func
    return func


def _never() -> bool:
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def run_well(
    plate_path: str,
    well: str,
    images: WellImages,
    steps: tuple[WorkerStep, ...],
    plate_dir: str,
    artifact_id: str,
    worker: str = "",
    should_stop: Callable[[], bool] | None = None,
) -> list[Row]:
    """Process every image of ``well`` through ``steps``; write the well's result file; return its rows.

    Every row gets ``worker`` (default ``local:<pid of this process>``). ``should_stop`` is called before every
    image and after every step; when it returns True the well is abandoned there.

    Raises:
        StepFailure: an image could not be read, a step raised, or a step returned neither an array, a dict
            nor None. (Only the message crosses back to the server.)
        WellStopped: ``should_stop`` returned True.
    """
    import tifffile

    worker = worker or f"local:{os.getpid()}"
    stop = should_stop or _never
    rows: list[Row] = []
    for site, channel, name in images:
        where = f"well {well} site {site} channel {channel}"
        if stop():
            raise WellStopped(where)
        try:
            raw = tifffile.imread(os.path.join(plate_path, name))
        except Exception as exc:
            raise StepFailure(f"{where}: cannot read image {name}: {type(exc).__name__}: {exc}") from None
        row: Row = {"well": well, "site": site, "channel": channel, "worker": worker}
        image = raw
        for ref, params, wants_raw in steps:
            try:
                func = _function(ref)
                result = func(image, raw=raw, **params) if wants_raw else func(image, **params)
            except Exception as exc:
                raise StepFailure(f"{where}: step {ref} failed: {type(exc).__name__}: {exc}") from None
            if isinstance(result, np.ndarray):
                image = result
            elif isinstance(result, dict):
                for key, value in result.items():
                    row[str(key)] = _plain(value)
            elif result is not None:
                raise StepFailure(
                    f"{where}: step {ref} returned {type(result).__name__}; a step returns an array, a dict or None"
                )
            if stop():
                raise WellStopped(f"{where} after step {ref}")
        rows.append(row)
    write_well_result(Path(plate_dir), well, artifact_id, rows)
    return rows
