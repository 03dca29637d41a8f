"""A worker's peak memory on real wells: ru_maxrss above its own post-import peak, and tracemalloc per phase.

Starts the local executor's own worker context (``hcs_batch.server.executor.local.open_worker_context``: a fresh
spawned process, the allocator settings of :mod:`hcs_batch.server.allocator`), brings it to the state of a warm
worker (``warm_up`` and OpenCV imported: what :func:`benchmarks.realplates._interpreter_rss` calls the
interpreter), records its ``ru_maxrss``, then runs ``hcs_batch.server.worker.run_well`` on ``wells`` wells of the
cached real-work plate (:mod:`benchmarks._realdata`, 2,048-pixel fields, 2 sites x 2 channels) and reports the
peak above that baseline in MiB and in images (8 MiB each), the CPU and page faults per well, and every module
the wells imported that the baseline had not (a fair baseline has none).

A second fresh worker runs the same wells under tracemalloc (numpy's buffers, not the C heap) and reports, per
phase of an image set (decode, each step, ``to_labels``, ``Objects``, its shape and intensity columns, writing),
the largest amount held when the phase began and the largest peak above that, in images.

``python -m benchmarks.worker_memory '{"wells": 8}'`` (``"tracemalloc": false`` skips the second worker).
"""

from __future__ import annotations

import resource
import sys
from typing import Any

_MiB = 1024 * 1024


def _usage() -> dict[str, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return {"maxrss": u.ru_maxrss * 1024.0, "cpu": u.ru_utime + u.ru_stime, "sys": u.ru_stime, "faults": u.ru_minflt}


def baseline() -> tuple[dict[str, float], list[str]]:
    """In a worker: what a warm worker has imported (``warm_up``, OpenCV); its usage and modules."""
    from hcs_batch.server.worker import warm_up

    warm_up()
    return _usage(), sorted(sys.modules)


def _plan() -> tuple[str, list[tuple[str, list[Any]]], tuple[Any, ...]]:
    import inspect

    from hcs_batch.pipeline import parse_pipeline
    from hcs_batch.server.worker import _function

    from ._realdata import PlateSpec, ensure_plate
    from ._realsteps import group_wells, pipeline_text

    plate = ensure_plate(PlateSpec(wells=96, sites=2, channels=2, size=2048, fields=48)) / "plate"
    steps = []
    for step in parse_pipeline(pipeline_text()).steps:
        wants_raw = "raw" in inspect.signature(_function(step.func)).parameters
        steps.append((step.func, dict(step.params), wants_raw))
    return str(plate), [(w, list(images)) for w, images in group_wells(plate).items()], tuple(steps)


def run_wells(count: int, out: str) -> list[dict[str, float]]:
    """In a worker: ``count`` wells through ``run_well``; the usage after each."""
    from hcs_batch.server.worker import run_well

    plate, wells, steps = _plan()
    usage = []
    grew: dict[str, float] = {}
    _wrap_phases(steps, lambda name, fn: _rss_phase(grew, name, fn))
    for well, images in wells[:count]:
        run_well(plate, well, tuple(images), steps, out, "memory")
        usage.append(_usage())
    usage.append(grew)
    return usage


def _rss_phase(grew: dict[str, float], name: str, func: Any) -> Any:
    """``func``, adding how far the process's peak RSS rose during each call to ``grew[name]``."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            return func(*args, **kwargs)
        finally:
            rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024.0
            grew[name] = grew.get(name, 0.0) + rise

    return wrapper


def _wrap_phases(steps: tuple[Any, ...], wrap: Any) -> None:
    """Wrap every phase of ``run_well`` in this worker: decode, each step, to_labels, Objects, writing."""
    from hcs_batch.server import worker

    for ref, _, _ in steps:
        worker._functions[ref] = wrap(f"step {ref.rpartition(':')[2]}", worker._function(ref))
    worker._load = wrap("decode", worker._load)
    worker.to_labels = wrap("to_labels", worker.to_labels)
    worker.write_well_result = wrap("write_well_result", worker.write_well_result)
    base = worker.Objects

    class Objects(base):  # type: ignore[misc, valid-type]
        __init__ = wrap("Objects()", base.__init__)
        shape = wrap("Objects.shape", base.shape)
        intensity = wrap("Objects.intensity", base.intensity)

    worker.Objects = Objects  # type: ignore[misc]


def traced_wells(count: int, out: str) -> dict[str, list[float]]:
    """In a worker: ``count`` wells under tracemalloc, every phase wrapped; phase -> [held at start, own peak]
    (largest over the calls, bytes)."""
    import functools
    import tracemalloc

    from hcs_batch.server.worker import run_well

    phases: dict[str, list[float]] = {}

    def traced(name: str, func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            try:
                return func(*args, **kwargs)
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                seen = phases.setdefault(name, [0.0, 0.0, 0.0])
                whole = phases.setdefault("any phase", [0.0, 0.0, 0.0])
                whole[2] = max(whole[2], peak)
                seen[0], seen[1], seen[2] = max(seen[0], held), max(seen[1], peak - held), max(seen[2], peak)

        return wrapper

    plate, wells, steps = _plan()
    _wrap_phases(steps, traced)
    tracemalloc.start()
    for well, images in wells[:count]:
        run_well(plate, well, tuple(images), steps, out, "memory")
    tracemalloc.stop()
    return phases


async def _in_worker(fn: Any, *args: Any) -> Any:
    from hcs_batch.server.executor.local import open_worker_context

    async with open_worker_context() as context:
        base, modules = await context.run_sync(baseline)
        return base, modules, await context.run_sync(fn, *args)


def main(p: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    import trio

    from ._realdata import PlateSpec, ensure_plate

    image = PlateSpec(wells=96, sites=2, channels=2, size=2048, fields=48).image_bytes
    ensure_plate(PlateSpec(wells=96, sites=2, channels=2, size=2048, fields=48))
    wells = int(p.get("wells", 8))
    with tempfile.TemporaryDirectory(prefix="hcs-bench-memory-") as out:
        base, modules, usage = trio.run(_in_worker, run_wells, wells, out)
        grew = usage.pop()
        _, _, new_modules = trio.run(_in_worker, _modules_after, 1, out)
        peak = usage[-1]["maxrss"] - base["maxrss"]
        result: dict[str, Any] = {
            "wells": wells,
            "image_mib": round(image / _MiB, 2),
            "interpreter_rss_mib": round(base["maxrss"] / _MiB, 1),
            "peak_rss_mib": round(usage[-1]["maxrss"] / _MiB, 1),
            "peak_above_interpreter_mib": round(peak / _MiB, 1),
            "worker_images_above_interpreter": round(peak / image, 2),
            "peak_after_each_well_images": [round((u["maxrss"] - base["maxrss"]) / image, 2) for u in usage],
            "cpu_s_per_well": round((usage[-1]["cpu"] - usage[0]["cpu"]) / max(1, wells - 1), 3),
            "sys_s_per_well": round((usage[-1]["sys"] - usage[0]["sys"]) / max(1, wells - 1), 3),
            "minor_faults_per_well": round((usage[-1]["faults"] - usage[0]["faults"]) / max(1, wells - 1)),
            "peak_rss_rise_by_phase_mib": {k: round(v / _MiB, 1) for k, v in grew.items() if v},
            "modules_imported_by_wells": sorted(set(new_modules) - set(modules)),
        }
        if p.get("tracemalloc", True):
            _, _, phases = trio.run(_in_worker, traced_wells, wells, out)
            result["tracemalloc_images"] = {
                name: {"held": round(h / image, 2), "own_peak": round(o / image, 2), "peak": round(t / image, 2)}
                for name, (h, o, t) in phases.items()
            }
    return result


def _modules_after(count: int, out: str) -> list[str]:
    """In a worker: the modules it has after ``count`` wells."""
    run_wells(count, out)
    return sorted(sys.modules)


if __name__ == "__main__":
    from ._common import emit, params_from_argv

    emit(main(params_from_argv()))
