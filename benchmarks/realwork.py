"""Real work: the built-in nucleus counter on synthetic plates, server workers against a plain single-process loop.

Same images, same steps (``default_pipeline_text()``): the *serial* figure is a plain Python loop in this process
(read each TIFF, apply the steps as the step contract says, keep the measurements); the *parallel* figure is
``run_plates`` through the embedded server with ``workers`` worker processes, after a warm-up plate so the workers
already exist. Parallel efficiency = parallel wells/s / (workers x serial wells/s). The machine is shared: each side
is the best of its runs (``repeat`` parallel runs, ``repeat - 1`` serial ones); every run time is kept.

Images are ``size`` pixels square (see :func:`tiled_plates`). Run as
``python -m benchmarks.realwork '{"plates": 2, "wells": 24, "size": 1024, "workers": 2}'``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ._common import emit, now, params_from_argv
from ._hcs import SilentHost, default_pipeline, make_service, open_backend, temp_dir


def _resolve(func: str) -> Callable[..., Any]:
    module, _, name = func.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def tiled_plates(root: Path, *, plates: int, wells: int, sites: int, size: int) -> list[Any]:
    """Plates of ``size``-pixel images made by tiling one 512-pixel synthetic image (``make_plates`` draws every blob
    over the whole image, which takes seconds per large image); every well holds the same picture, so every well
    costs the same work. Layout as ``hcs_batch.testing.plates``: ``<plate>/<well>_s<site>_w1.tif``."""
    import numpy as np
    import tifffile

    from hcs_batch.model import PlateRef
    from hcs_batch.testing.plates import make_plates, well_names

    base = min(size, 512)
    [seed_plate] = make_plates(root / "_seed", plates=1, wells=1, sites=1, channels=1, size=base, seed=3)
    tile = tifffile.imread(next(seed_plate.glob("*.tif")))
    reps = -(-size // base)
    image = np.ascontiguousarray(np.tile(tile, (reps, reps))[:size, :size])
    refs = []
    for index in range(1, plates + 1):
        folder = root / f"plate_{index:03d}"
        folder.mkdir(parents=True)
        for well in well_names(wells):
            for site in range(1, sites + 1):
                tifffile.imwrite(folder / f"{well}_s{site}_w1.tif", image)
        refs.append(PlateRef.from_path(folder))
    return refs


def tiled_case(root: Path, *, plates: int, wells: int, sites: int, size: int) -> tuple[list[Any], list[Any]]:
    """The plates a case measures, below ``root / "plates"``, and one warm-up plate of at most 4 such wells below
    ``root / "warm"`` (:func:`tiled_plates`)."""
    refs = tiled_plates(root / "plates", plates=plates, wells=wells, sites=sites, size=size)
    warm = tiled_plates(root / "warm", plates=1, wells=min(wells, 4), sites=sites, size=size)
    return refs, warm


def serial_loop(folders: list[Path], pipeline_text: str) -> tuple[float, int, list[dict[str, Any]]]:
    """Every image of every plate through the pipeline's steps, one after another, measuring the objects of a
    segmenting step as the workers do. Returns (seconds, wells, rows)."""
    import tifffile

    from hcs_batch.measure import measure_objects, to_labels
    from hcs_batch.pipeline import parse_pipeline
    from hcs_batch.steps import is_objects_step

    spec = parse_pipeline(pipeline_text)
    steps = []
    for step in spec.steps:
        fn = _resolve(step.func)
        steps.append((fn, dict(step.params), "raw" in inspect.signature(fn).parameters))
    rows: list[dict[str, Any]] = []
    wells: set[tuple[str, str]] = set()
    t0 = now()
    for folder in folders:
        for tif in sorted(folder.glob("*.tif")):
            raw = tifffile.imread(tif)
            image = raw
            row: dict[str, Any] = {"plate": folder.name, "image": tif.name}
            for fn, params, wants_raw in steps:
                out = fn(image, raw=raw, **params) if wants_raw else fn(image, **params)
                if isinstance(out, dict):
                    row.update(out)
                elif out is not None:
                    image = out
                    if is_objects_step(fn):
                        objects = measure_objects(to_labels(out, raw.shape), {"1": raw})
                        row["object_count"] = len(objects["ObjectNumber"])
            rows.append(row)
            wells.add((folder.name, tif.name.split("_", 1)[0]))
    return now() - t0, len(wells), rows


async def parallel_run(
    refs: list[Any], warm: list[Any], pipeline_text: str, workers: int, out: Path, repeat: int
) -> tuple[list[float], dict[str, int]]:
    async with open_backend(None, workers=workers) as backend:
        await make_service(SilentHost(), backend, pipeline_text=pipeline_text, output_dir=out / "warm").run_plates(warm)
        walls: list[float] = []
        outcomes: dict[str, int] = {}
        for i in range(repeat):  # a fresh output folder each time, so no well is skipped as already done
            host = SilentHost()
            service = make_service(host, backend, pipeline_text=pipeline_text, output_dir=out / f"run-{i}")
            t0 = now()
            await service.run_plates(refs)
            walls.append(now() - t0)
            outcomes = dict(host.outcomes)
        return walls, outcomes


def main(p: dict[str, Any]) -> dict[str, Any]:
    plates, wells, size = int(p.get("plates", 2)), int(p.get("wells", 12)), int(p.get("size", 256))
    workers, repeat, sites = int(p.get("workers", 2)), int(p.get("repeat", 3)), int(p.get("sites", 1))
    pipeline_text = default_pipeline()
    with temp_dir("real") as tmp:
        root = Path(tmp)
        refs, warm = tiled_case(root, plates=plates, wells=wells, sites=sites, size=size)
        serial_loop([r.path for r in warm], pipeline_text)  # warm imports and caches, as the workers get
        serial = [serial_loop([r.path for r in refs], pipeline_text) for _ in range(max(repeat - 1, 1))]
        serial_s, serial_wells, rows = min(serial, key=lambda r: r[0])
        parallel, outcomes = trio.run(parallel_run, refs, warm, pipeline_text, workers, root / "out", repeat)
        parallel_s = min(parallel)
    total_wells = plates * wells
    serial_rate = serial_wells / serial_s
    parallel_rate = total_wells / parallel_s
    result: dict[str, Any] = {
        "plates": plates,
        "wells": total_wells,
        "sites": sites,
        "size": size,
        "workers": workers,
        "serial_s": round(serial_s, 3),
        "parallel_s": round(parallel_s, 3),
        "serial_wells_per_s": round(serial_rate, 2),
        "parallel_wells_per_s": round(parallel_rate, 2),
        "speedup": round(parallel_rate / serial_rate, 3),
        "efficiency": round(parallel_rate / (workers * serial_rate), 3),
        "serial_ms_per_well": round(serial_s / serial_wells * 1e3, 2),
        "outcomes": outcomes,
        "serial_runs_s": [round(r[0], 3) for r in serial],
        "parallel_runs_s": [round(w, 3) for w in parallel],
        "images": len(rows),
    }
    if outcomes.get("completed", 0) != plates:
        result["error"] = f"not every plate completed: {outcomes}"
    return result


if __name__ == "__main__":
    emit(main(params_from_argv()))
