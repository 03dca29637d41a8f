"""Real work on realistic plates, side by side: hcs-batch against what a lab would write instead.

One cached plate (:mod:`benchmarks._realdata`: ``size``-pixel uint16 fields, ``sites`` x ``channels`` per well,
nuclei-like content with a ground truth) and one pipeline (:mod:`benchmarks._realsteps`) for every case, each
case a command of its own whose whole process tree is watched (:mod:`benchmarks._proctree`), all on the same
``workers`` cores:

1. ``hcs`` — ``hcs-batch run PLATE --pipeline P --workers N`` (embedded server, local executor);
2. ``pool`` — ``python -m benchmarks.realplates_pool`` (a ``multiprocessing.Pool`` over the wells, same steps);
3. ``single`` — ``python -m benchmarks.realplates_single``: one core, the textbook scikit-image recipe (blur, Otsu,
   label, watershed, regionprops) against the pipeline on the same ``single_images`` nuclear fields, then
   ``single_wells`` whole wells through the pipeline (the one-core rate for parallel efficiency);
4. ``dask`` — ``hcs-batch run --executor dask`` on a 2-worker LocalCluster: a hook, skipped with a note while
   ``hcs-batch run`` has no ``--executor`` option (see :func:`dask_command`).

Parallel efficiency is ``hcs`` wells/s (end to end: start-up, TIFF decode, every result file) over ``workers`` times
the one-core rate of ``single`` (the same step functions, decode and per-well writing, warm, with the workers' malloc
settings); ``pool_parallel_efficiency`` is the same for the Pool script, so the cores' own limit shows beside it.

Cases 1 and 2 alternate ``repeat`` times (the machine is shared: best of each, every run kept). Each run reports
wells/s (end to end, as ``time`` would: start-up included), seconds per image per core, and the peak RSS of
every worker process; the case checks that hcs, pool and dask found the same object counts for every image.
``python -m benchmarks.realplates '{"wells": 96, "sites": 2, "channels": 2, "size": 2048, "fields": 48}'``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._common import ROOT, child_env, emit, params_from_argv
from ._hcs import temp_dir
from ._proctree import TreeRun, run_tree
from ._realdata import PlateSpec, ensure_plate, ground_truth
from ._realsteps import pipeline_text, read_rows

_MiB = 1024 * 1024


def _run_help() -> str:
    cmd = [sys.executable, "-m", "hcs_batch", "run", "--help"]
    return subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120).stdout


def hcs_command(plate: Path, out: Path, pipeline: Path, workers: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "hcs_batch", "run", str(plate), "--pipeline", str(pipeline), "--output", str(out),
        "--workers", str(workers), "--json", *extra,
    ]  # fmt: skip


def dask_command(plate: Path, out: Path, pipeline: Path, workers: int, help_text: str) -> list[str] | None:
    """HOOK for the Dask executor (issue 13): the command of case 4, or None while this branch has no
    ``--executor`` on ``hcs-batch run`` (the case is then reported as skipped, with this reason).

    Wire it after merging the ``dask`` branch: with ``--scheduler`` unset, ``--executor dask`` must start a
    LocalCluster of ``workers`` single-threaded worker *processes* (the fair match for the local executor); if
    the merged CLI needs more options for that (e.g. ``--dask-workers``), add them here.
    """
    if "--executor" not in help_text:
        return None
    return [*hcs_command(plate, out, pipeline, workers, []), "--executor", "dask"]


def _interpreter_rss() -> int:
    """The 'interpreter' share of a worker's peak: the RSS high-water mark of a fresh worker of the local
    executor's own context (its allocator settings) after ``warm_up`` (every module a well of the built-in counter
    imports, OpenCV included, and one small well's first-call buffers; ``benchmarks.worker_memory`` lists what a
    well imports beyond it), read in a subprocess of its own.

    ``VmHWM``, as :mod:`._proctree` reads the workers' peaks, never ``ru_maxrss``: Linux carries a parent's peak
    into ``ru_maxrss`` across ``exec``, so the old baseline (``ru_maxrss`` of a ``python -c`` child) read this
    process's peak whenever that was larger: 375 MiB in a ``make bench`` that generated the plate first (a worker
    has 132 MiB), the "negative images above the interpreter" of that run."""
    code = "from benchmarks.worker_memory import interpreter_hwm; print(int(interpreter_hwm()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0


def _summary(run: TreeRun, wells: int, images: int, workers: int) -> dict[str, Any]:
    procs = run.children()
    # Workers: every process below the command but multiprocessing's resource tracker (a Dask nanny counts).
    workers_cpu = [pid for pid, (_, cmd) in procs.items() if "resource_tracker" not in cmd]
    worker_peaks = sorted((procs[pid][0] for pid in workers_cpu), reverse=True)
    return {
        "wall_s": round(run.wall_s, 3),
        "cpu_s": round(run.cpu_s, 3),
        "wells_per_s": round(wells / run.wall_s, 3),
        "wells_per_cpu_s": round(wells / run.cpu_s, 3) if run.cpu_s else None,
        "s_per_image_per_core": round(run.wall_s * workers / images, 4),
        "worker_pids": len(worker_peaks),
        "peak_rss_per_worker_mib": round(worker_peaks[0] / _MiB, 1) if worker_peaks else None,
        "peak_rss_main_mib": round(run.peaks[run.pid][0] / _MiB, 1) if run.pid in run.peaks else None,
        "main_cpu_s": round(run.cpu.get(run.pid, 0.0), 2),
        # CPU a well (less noisy than wall time on a shared machine): the command's own process (for hcs the
        # embedded server and its client) and the workers.
        "main_cpu_s_per_well": round(run.cpu.get(run.pid, 0.0) / wells, 4),
        "worker_cpu_s_per_well": round(sum(run.cpu.get(pid, 0.0) for pid in workers_cpu) / wells, 4),
        "processes": {
            str(pid): [round(peak / _MiB, 1), round(run.cpu.get(pid, 0.0), 2), cmd[:80]]
            for pid, (peak, cmd) in procs.items()
        },
    }


def _failed(name: str, run: TreeRun) -> dict[str, Any]:
    return {"error": f"{name} exited {run.returncode}: {run.stderr.strip()[-600:]}"}


def main(p: dict[str, Any]) -> dict[str, Any]:
    spec = PlateSpec(
        wells=int(p["wells"]),
        sites=int(p["sites"]),
        channels=int(p["channels"]),
        size=int(p["size"]),
        fields=int(p.get("fields", 0)),
    )
    workers = int(p.get("workers", 2))
    repeat = int(p.get("repeat", 1))
    extra = ["--max-wells-per-worker", str(p["max_wells_per_worker"])] if p.get("max_wells_per_worker") else []
    root = ensure_plate(spec)
    plate = root / "plate"
    images = spec.wells * spec.sites * spec.channels
    env, timeout = child_env(), float(p.get("timeout", 600))
    result: dict[str, Any] = {
        "plate": {**json.loads((root / "spec.json").read_text()), "images": images, "cache": str(root)},
        "workers": workers,
        "image_mib": round(spec.image_bytes / _MiB, 2),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    help_text = _run_help()
    with temp_dir("realplates") as tmp:
        work = Path(tmp)
        pipeline = work / "pipeline.toml"
        pipeline.write_text(pipeline_text())
        runs: dict[str, list[dict[str, Any]]] = {"hcs": [], "pool": []}
        counts: dict[str, dict[tuple[str, ...], int]] = {}
        for i in range(repeat):
            for name in ("hcs", "pool") if i % 2 == 0 else ("pool", "hcs"):
                out = work / f"{name}-{i}"
                if name == "hcs":
                    cmd = hcs_command(plate, out, pipeline, workers, extra)
                else:
                    cmd = [sys.executable, "-m", "benchmarks.realplates_pool", str(plate), str(out) + ".csv"]
                    cmd += ["--workers", str(workers)]
                run = run_tree(cmd, cwd=ROOT, env=env, timeout=timeout)
                if run.returncode != 0:
                    return {**result, **_failed(name, run)}
                runs[name].append({**_summary(run, spec.wells, images, workers), "loadavg": os.getloadavg()[0]})
                csv_path = out / "plate" / "wells.csv" if name == "hcs" else Path(str(out) + ".csv")
                counts[name] = read_rows(csv_path)
        for name, values in runs.items():
            result[name] = {**min(values, key=lambda r: r["wall_s"]), "runs_wall_s": [r["wall_s"] for r in values]}

        command = dask_command(plate, work / "dask", pipeline, workers, help_text)
        if command is None:
            result["dask"] = {"skipped": "hcs-batch run has no --executor on this branch (wire after merging dask)"}
        else:
            run = run_tree(command, cwd=ROOT, env=env, timeout=timeout)
            if run.returncode != 0:
                result["dask"] = _failed("dask", run)
            else:
                result["dask"] = _summary(run, spec.wells, images, workers)
                counts["dask"] = read_rows(work / "dask" / "plate" / "wells.csv")

        single_cmd = [sys.executable, "-m", "benchmarks.realplates_single", str(plate)]
        single_cmd += ["--images", str(p.get("single_images", 8)), "--wells", str(p.get("single_wells", 2))]
        run = run_tree(single_cmd, cwd=ROOT, env=env, timeout=timeout)
        if run.returncode != 0:
            return {**result, **_failed("single", run)}
        single = json.loads(run.stdout.strip().splitlines()[-1])
        single["peak_rss_mib"] = round(max(v[0] for v in run.peaks.values()) / _MiB, 1) if run.peaks else None
        result["single"] = single

    result["interpreter_rss_mib"] = round(_interpreter_rss() / _MiB, 1)
    result["agreement"] = _agreement(counts, single)
    result["accuracy"] = _accuracy(ground_truth(root), single["counts"])
    result["ratios"] = _ratios(result)
    if result["agreement"]["mismatches"]:
        result["error"] = f"cases disagree on object counts: {result['agreement']['mismatches'][:5]}"
    return result


def _agreement(counts: dict[str, dict[tuple[str, ...], int]], single: dict[str, Any]) -> dict[str, Any]:
    base = counts["hcs"]
    mismatches = []
    for name, other in counts.items():
        if other.keys() != base.keys():
            mismatches.append(f"{name}: {len(other)} images vs hcs {len(base)}")
            continue
        mismatches += [f"{name} {k}: {other[k]} vs hcs {base[k]}" for k in base if other[k] != base[k]]
    for field, count in single["counts"]["pipeline"].items():
        well, site = field.split("/")
        if base.get((well, site, "1")) != count:
            mismatches.append(f"single {field}: {count} vs hcs {base.get((well, site, '1'))}")
    return {"compared": sorted(counts), "images": len(base), "mismatches": mismatches}


def _accuracy(truth: dict[tuple[str, int], int], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Mean absolute percentage error of each method's nucleus count against the generator's truth."""
    out: dict[str, Any] = {}
    for method, found in counts.items():
        errors = []
        for field, count in found.items():
            well, site = field.split("/")
            true = truth[(well, int(site))]
            errors.append(abs(count - true) / true * 100)
        out[f"{method}_mape_pct"] = round(statistics.fmean(errors), 2) if errors else None
    return out


def _ratios(result: dict[str, Any]) -> dict[str, Any]:
    hcs, pool, single, workers = result["hcs"], result["pool"], result["single"], result["workers"]
    serial_wells_per_s = single["serial_wells_per_s"]
    ratios: dict[str, Any] = {
        "hcs_vs_pool": round(hcs["wells_per_s"] / pool["wells_per_s"], 3),
        "counter_vs_reference": round(single["pipeline_s_per_image"] / single["reference_s_per_image"], 3),
        "parallel_efficiency": round(hcs["wells_per_s"] / (workers * serial_wells_per_s), 3),
        # The same for the Pool script: what these cores give a plain script (start-up and writing included).
        "pool_parallel_efficiency": round(pool["wells_per_s"] / (workers * serial_wells_per_s), 3),
        "serial_wells_per_s": round(serial_wells_per_s, 3),
    }
    if "wells_per_s" in result.get("dask", {}):
        ratios["dask_vs_local"] = round(result["dask"]["wells_per_s"] / hcs["wells_per_s"], 3)
    peak = hcs.get("peak_rss_per_worker_mib")
    if peak and result.get("interpreter_rss_mib"):
        ratios["worker_images_above_interpreter"] = round(
            (peak - result["interpreter_rss_mib"]) / result["image_mib"], 2
        )
    return ratios


if __name__ == "__main__":
    emit(main(params_from_argv()))
