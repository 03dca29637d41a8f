"""A worker's peak memory on real wells: its RSS high-water mark above its own post-import one, tracemalloc per phase.

Starts the local executor's own worker context (``hcs_batch.server.executor.local.open_worker_context``: a fresh
spawned process, the allocator settings of :mod:`hcs_batch.server.allocator`), brings it to the state of a warm
worker (``warm_up`` and OpenCV imported: what :func:`benchmarks.realplates._interpreter_rss` calls the
interpreter), records its RSS high-water mark, then runs ``hcs_batch.server.worker.run_well`` on ``wells`` wells of the
cached real-work plate (:mod:`benchmarks._realdata`, 2,048-pixel fields, 2 sites x 2 channels) and reports the
peak above that baseline in MiB and in images (8 MiB each), the CPU and page faults per well, and every module
the wells imported that the baseline had not (a fair baseline has none).

The high-water mark is ``VmHWM`` of ``/proc/self/status`` (this process's own memory, what
:mod:`benchmarks._proctree` samples for every worker), not ``ru_maxrss``: Linux carries the parent's peak into
``ru_maxrss`` across ``exec`` (a child started by ``vfork`` + ``exec``, as ``subprocess`` and ``multiprocessing``
start them, reports at least its parent's peak), so a worker of a large parent would look as large as that parent.

A second fresh worker runs the same wells under tracemalloc (numpy's buffers, not the C heap) and reports, per
phase of an image set (decode, each step, ``to_labels``, ``Objects``, its shape and intensity columns, writing),
the largest amount held when the phase began and the largest peak above that, in images.

A third worker reports each phase's own RSS peak (the high-water mark reset as it starts); it only tells phases
apart when freed memory goes back to the system (e.g. ``"mmap_threshold": 1048576``). ``"trim_threshold"`` and
``"mmap_threshold"`` (bytes) override the worker's malloc settings after its ``init``, to compare them.

``python -m benchmarks.worker_memory '{"wells": 8}'`` (``"tracemalloc": false`` / ``"phases": false`` skip those
workers).
"""

from __future__ import annotations

import resource
import sys
from typing import Any

_MiB = 1024 * 1024


def _usage() -> dict[str, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return {"maxrss": _hwm(), "cpu": u.ru_utime + u.ru_stime, "sys": u.ru_stime, "faults": u.ru_minflt}


def _hwm() -> float:
    with open("/proc/self/status") as fh:
        return next(float(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))


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
    for well, images in wells[:count]:
        run_well(plate, well, tuple(images), steps, out, "memory")
        usage.append(_usage())
    return usage


def phase_peaks(count: int, out: str) -> dict[str, float]:
    """In a worker (Linux): ``count`` wells, each phase's peak RSS (the high-water mark reset when it starts:
    ``/proc/self/clear_refs``), largest over the calls, bytes."""
    import functools

    from hcs_batch.server.worker import run_well

    peaks: dict[str, float] = {}

    def rss_peak(name: str, func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # the high-water mark starts again from the current RSS
            try:
                return func(*args, **kwargs)
            finally:
                peaks[name] = max(peaks.get(name, 0.0), _hwm())

        return wrapper

    plate, wells, steps = _plan()
    _wrap_phases(steps, rss_peak)
    for well, images in wells[:count]:
        run_well(plate, well, tuple(images), steps, out, "memory")
    return peaks


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


def malloc_thresholds(trim: int | None, mmap: int | None) -> None:
    """In a worker: override glibc's trim / mmap thresholds (bytes) after ``keep_heap``, to compare settings."""
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    if trim is not None:
        mallopt(-1, trim)
    if mmap is not None:
        mallopt(-3, mmap)


_THRESHOLDS: tuple[int | None, int | None] = (None, None)


async def _in_worker(fn: Any, *args: Any) -> Any:
    from hcs_batch.server.executor.local import open_worker_context

    async with open_worker_context() as context:
        await context.run_sync(malloc_thresholds, *_THRESHOLDS)
        base, modules = await context.run_sync(baseline)
        return base, modules, await context.run_sync(fn, *args)


def main(p: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    import trio

    from ._realdata import PlateSpec, ensure_plate

    image = PlateSpec(wells=96, sites=2, channels=2, size=2048, fields=48).image_bytes
    ensure_plate(PlateSpec(wells=96, sites=2, channels=2, size=2048, fields=48))
    wells = int(p.get("wells", 8))
    global _THRESHOLDS
    _THRESHOLDS = (p.get("trim_threshold"), p.get("mmap_threshold"))
    with tempfile.TemporaryDirectory(prefix="hcs-bench-memory-") as out:
        base, modules, usage = trio.run(_in_worker, run_wells, wells, out)
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
            "modules_imported_by_wells": sorted(set(new_modules) - set(modules)),
        }
        if p.get("phases", True):
            base2, _, peaks = trio.run(_in_worker, phase_peaks, wells, out)
            result["rss_peak_by_phase_images"] = {k: round((v - base2["maxrss"]) / image, 2) for k, v in peaks.items()}
        if p.get("tracemalloc", True):
            _, _, phases = trio.run(_in_worker, traced_wells, wells, out)
            result["tracemalloc_images"] = {
                name: {"held": round(h / image, 2), "own_peak": round(o / image, 2), "peak": round(t / image, 2)}
                for name, (h, o, t) in phases.items()
            }
    return result


async def _warm_worker_hwm() -> float:
    from hcs_batch.server.executor.local import open_worker_context
    from hcs_batch.server.worker import warm_up

    async with open_worker_context() as context:
        await context.run_sync(warm_up)
        hwm: float = await context.run_sync(_hwm)
        return hwm


def interpreter_hwm() -> float:
    """The RSS high-water mark (bytes) of a fresh worker of the local executor's own context (its allocator
    settings) brought to a warm worker's state by ``warm_up``: the 'interpreter' share of a worker's peak."""
    import trio

    return trio.run(_warm_worker_hwm)


def _modules_after(count: int, out: str) -> list[str]:
    """In a worker: the modules it has after ``count`` wells."""
    run_wells(count, out)
    return sorted(sys.modules)


if __name__ == "__main__":
    from ._common import emit, params_from_argv

    emit(main(params_from_argv()))
