"""Where one well's time goes inside a worker: decode, each step, measurement, writing (cProfile, one core).

Runs the worker's own ``run_well`` (``hcs_batch.server.worker``) in this process on ``wells`` wells of the cached
real-work plate, under cProfile, and reports per well: the time in TIFF decode, in each step function of the
benchmark's pipeline, and in writing the well's result file, plus the rest. ``module`` swaps the steps' module
(e.g. a copy of an older ``hcs_batch/steps.py`` on ``PYTHONPATH``) to profile a before and an after the same way.
``python -m benchmarks.profile_well '{"wells": 4, "module": "hcs_batch.steps"}'`` (``"out": FILE`` also writes
the top of cProfile's table there).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import emit, params_from_argv
from ._realdata import PlateSpec, ensure_plate
from ._realsteps import group_wells, pipeline_text


def main(p: dict[str, Any]) -> dict[str, Any]:
    from hcs_batch.pipeline import parse_pipeline
    from hcs_batch.server.worker import run_well

    spec = PlateSpec(wells=96, sites=2, channels=2, size=2048, fields=48)
    plate = ensure_plate(spec) / "plate"
    module = p.get("module", "hcs_batch.steps")
    text = pipeline_text().replace("hcs_batch.steps:", f"{module}:")
    worker_steps = []
    for step in parse_pipeline(text).steps:
        import importlib
        import inspect

        mod, _, name = step.func.partition(":")
        fn = getattr(importlib.import_module(mod), name)
        worker_steps.append((step.func, dict(step.params), "raw" in inspect.signature(fn).parameters))
    wells = list(group_wells(plate).items())[: int(p.get("wells", 4))]
    with tempfile.TemporaryDirectory(prefix="hcs-bench-profile-") as out:
        run_well(str(plate), wells[0][0], tuple(wells[0][1]), tuple(worker_steps), out, "warm")  # imports, caches
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        for well, images in wells:
            run_well(str(plate), well, tuple(images), tuple(worker_steps), out, "artifact")
        profiler.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    parts: dict[str, float] = {}
    names = {s.func.rpartition(":")[2] for s in parse_pipeline(text).steps}
    for (filename, _, func), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func == "load_plane" and "images" in filename:
            parts["decode (load_plane)"] = cumulative
        elif func in ("__init__", "shape", "intensity") and filename.endswith("measure.py"):  # Objects'
            parts["measure objects (every channel)"] = parts.get("measure objects (every channel)", 0.0) + cumulative
        elif func in names and module.rpartition(".")[2] in filename.replace("/", "."):
            parts[f"step {func}"] = cumulative
        elif func == "write_well_result":
            parts["write well result"] = cumulative
    n = len(wells)
    per_well = {k: round(v / n * 1e3, 1) for k, v in parts.items()}
    per_well["other"] = round((wall - sum(parts.values())) / n * 1e3, 1)
    result = {"module": module, "wells": n, "images_per_well": len(wells[0][1]), "ms_per_well": per_well}
    result["wall_ms_per_well"] = round(wall / n * 1e3, 1)
    if p.get("out"):
        text_out = io.StringIO()
        pstats.Stats(profiler, stream=text_out).sort_stats("cumulative").print_stats(25)
        Path(p["out"]).write_text(text_out.getvalue())
    return result


if __name__ == "__main__":
    emit(main(params_from_argv()))
