"""The Dask executor against the local one: the same plates, side by side in one run.

Two embedded servers stay up for the whole case: one with ``workers`` local worker processes (trio-parallel), one
with ``executor="dask"`` on a LocalCluster of ``workers`` single-threaded worker processes on 127.0.0.1 (what
``hcs-batch run --executor dask`` starts). Each gets a warm-up plate first; then the runs alternate (local, dask,
local, dask, ...) so a change in the shared machine's load hits both sides alike; each side is the best of its
``repeat`` runs, every run time is kept. The plates are those of the realwork case (the built-in nucleus counter on
``size``-pixel images, ``sites`` per well, every well the same work).

Figures: wells/s of each side, their ratio (target: dask >= 0.85x local), the per-well overhead of Dask: the extra
worker-time one well costs, ``(dask wall - local wall) x workers / wells``, and where the CPU went, per well (median
of the runs): ``server`` is this process (the embedded servers and, for Dask, the scheduler, the nannies and the
client), ``workers`` every process below it (both sides' workers: an idle side's are counted too, ~1 ms/s).

Run as ``python -m benchmarks.dask_executor '{"plates": 2, "wells": 24, "size": 1024, "workers": 2}'``.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from ._common import emit, now, params_from_argv
from ._hcs import SilentHost, default_pipeline, embedded_backend, make_service, temp_dir
from ._proctree import tree_cpu
from .realwork import tiled_case

SIDES = ("local", "dask")


async def _open(stack: AsyncExitStack, executor: str, workers: int) -> Any:
    # The temporary folder as the embedded server's roots: the plates and outputs live there.
    backend = embedded_backend(None, embedded="inline", workers=workers, executor=executor)
    return await stack.enter_async_context(backend)


async def side_by_side(
    refs: list[Any], warm: list[Any], pipeline_text: str, workers: int, out: Path, repeat: int
) -> dict[str, Any]:
    walls: dict[str, list[float]] = {name: [] for name in SIDES}
    cpu: dict[str, dict[str, list[float]]] = {name: {"server": [], "workers": []} for name in SIDES}
    outcomes: dict[str, dict[str, int]] = {}
    async with AsyncExitStack() as stack:
        t0 = now()
        backends = {"local": await _open(stack, "local", workers)}
        local_start = now() - t0
        t0 = now()
        backends["dask"] = await _open(stack, "dask", workers)
        dask_start = now() - t0
        for name, backend in backends.items():
            service = make_service(SilentHost(), backend, pipeline_text=pipeline_text, output_dir=out / f"warm-{name}")
            await service.run_plates(warm)
        for i in range(repeat):
            for name in SIDES if i % 2 == 0 else SIDES[::-1]:  # a fresh output folder each run: none is skipped
                host = SilentHost()
                output_dir = out / f"{name}-{i}"
                service = make_service(host, backends[name], pipeline_text=pipeline_text, output_dir=output_dir)
                server0, tree0, t0 = time.process_time(), tree_cpu(os.getpid()), now()
                await service.run_plates(refs)
                walls[name].append(now() - t0)
                server = time.process_time() - server0
                cpu[name]["server"].append(server)
                cpu[name]["workers"].append(tree_cpu(os.getpid()) - tree0 - server)
                outcomes[name] = dict(host.outcomes)
    starts = {"local": local_start, "dask": dask_start}
    return {"walls": walls, "cpu": cpu, "outcomes": outcomes, "start_s": starts}


def _worker_values(out: Path) -> set[str]:
    import csv

    found: set[str] = set()
    for wells_csv in out.glob("*/*/wells.csv"):
        with wells_csv.open() as fh:
            found |= {row["worker"] for row in csv.DictReader(fh)}
    return found


def main(p: dict[str, Any]) -> dict[str, Any]:
    plates, wells, size = int(p.get("plates", 2)), int(p.get("wells", 12)), int(p.get("size", 256))
    workers, repeat, sites = int(p.get("workers", 2)), int(p.get("repeat", 3)), int(p.get("sites", 1))
    pipeline_text = default_pipeline()
    load_start = os.getloadavg()[0]
    with temp_dir("dask") as tmp:
        root = Path(tmp)
        refs, warm = tiled_case(root, plates=plates, wells=wells, sites=sites, size=size)
        run = trio.run(side_by_side, refs, warm, pipeline_text, workers, root / "out", repeat)
        dask_workers = {w for w in _worker_values(root / "out") if w.startswith("tcp://")}
    total = plates * wells
    local_s, dask_s = min(run["walls"]["local"]), min(run["walls"]["dask"])
    local_rate, dask_rate = total / local_s, total / dask_s
    result: dict[str, Any] = {
        "plates": plates,
        "wells": total,
        "sites": sites,
        "size": size,
        "workers": workers,
        "local_s": round(local_s, 3),
        "dask_s": round(dask_s, 3),
        "local_wells_per_s": round(local_rate, 2),
        "dask_wells_per_s": round(dask_rate, 2),
        "ratio": round(dask_rate / local_rate, 3),
        "dask_overhead_ms_per_well": round((dask_s - local_s) * workers / total * 1e3, 2),
        "local_ms_per_well": round(local_s * workers / total * 1e3, 2),
        "cpu_ms_per_well": {
            name: {part: round(statistics.median(values) / total * 1e3, 1) for part, values in parts.items()}
            for name, parts in run["cpu"].items()
        },
        "local_runs_s": [round(w, 3) for w in run["walls"]["local"]],
        "dask_runs_s": [round(w, 3) for w in run["walls"]["dask"]],
        "start_s": {k: round(v, 2) for k, v in run["start_s"].items()},
        "loadavg": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "dask_workers_seen": len(dask_workers),
        "outcomes": run["outcomes"],
    }
    for name, outcome in run["outcomes"].items():
        if outcome.get("completed", 0) != plates:
            result["error"] = f"{name}: not every plate completed: {outcome}"
    if not 1 <= len(dask_workers) <= workers:
        result.setdefault("error", f"dask wells were computed by {len(dask_workers)} workers, expected 1..{workers}")
    return result


if __name__ == "__main__":
    emit(main(params_from_argv()))
