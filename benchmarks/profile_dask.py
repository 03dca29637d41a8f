"""Where the Dask executor's CPU goes per well: per thread of the server's process, or per function of Dask's loops.

One embedded server on a LocalCluster (the Dask side of ``benchmarks.dask_executor``), a warm-up plate, then the
plates run ``repeat`` times. Only that window counts. Two modes:

- ``threads`` (default): CPU ms per well of every thread of this process (the Trio thread, the Dask client's and
  the cluster's event loops, Trio's worker threads, ...) and of each worker process (``PORT MainThread``: its event
  loop; ``PORT ...Dask-Default-Threads``: the thread computing the wells), and of the whole process and its
  workers. Costs nothing.
- ``loops``: a ``cProfile.Profile`` on thread CPU time on every Dask event-loop thread of this process (the
  client's; the cluster's: scheduler and nannies) and on every worker's event loop, started and stopped on the
  loop itself; ``out`` (a folder) receives one ``.pstats`` file each (``python -m pstats FILE``). Profiling slows
  them ~3x: read the proportions.

Run as ``python -m benchmarks.profile_dask '{"plates": 2, "wells": 24, "size": 1024, "workers": 2, "repeat": 3}'``.
"""

from __future__ import annotations

import cProfile
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import trio

from ._common import emit, params_from_argv
from ._hcs import SilentHost, default_pipeline, embedded_backend, make_service, temp_dir
from ._proctree import tree_cpu
from .realwork import tiled_case


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """Every live thread of this process: ident -> (name without its running number, CPU seconds)."""
    found = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            cpu = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # ended meanwhile
            continue
        found[thread.ident] = (thread.name.rstrip("0123456789 _-") or thread.name, cpu)
    return found


def _on_loops(action: Any) -> None:
    """Run ``action()`` on every Dask event-loop thread of this process, and wait for it."""
    from distributed.utils import LoopRunner

    events = []
    for loop in list(LoopRunner._all_loops):
        event = threading.Event()
        events.append(event)
        loop.add_callback(lambda event=event: (action(), event.set()))
    for event in events:
        event.wait(10)


def _client() -> Any:
    from distributed import Client

    return next(iter(Client._instances))


def _worker_profile_start(dask_worker: Any = None) -> None:
    dask_worker._hcs_profile = cProfile.Profile(time.thread_time)
    dask_worker._hcs_profile.enable()


def _worker_profile_stop(out: str, dask_worker: Any = None) -> None:
    dask_worker._hcs_profile.disable()
    dask_worker._hcs_profile.dump_stats(f"{out}/worker-{os.getpid()}.pstats")


class LoopProfiles:
    """cProfile on each Dask event loop of this process and of the workers (see the module docstring)."""

    def __init__(self) -> None:
        self.profiles: dict[int, cProfile.Profile] = {}

    def start(self) -> None:
        _client().run(_worker_profile_start)

        def begin() -> None:
            profile = cProfile.Profile(time.thread_time)
            self.profiles[threading.get_ident()] = profile
            profile.enable()

        _on_loops(begin)

    def stop(self, out: Path) -> None:
        _on_loops(lambda: self.profiles[threading.get_ident()].disable())
        for ident, profile in self.profiles.items():
            profile.dump_stats(str(out / f"loop-{ident % 10000}.pstats"))
        _client().run(_worker_profile_stop, str(out))


async def _run(refs: list[Any], warm: list[Any], out: Path, p: dict[str, Any]) -> dict[str, Any]:
    pipeline_text = default_pipeline()
    mode, workers, repeat = str(p.get("mode", "threads")), int(p.get("workers", 2)), int(p.get("repeat", 2))
    loops = LoopProfiles()
    async with embedded_backend(None, embedded="inline", workers=workers, executor="dask") as backend:
        service = make_service(SilentHost(), backend, pipeline_text=pipeline_text, output_dir=out / "warm")
        await service.run_plates(warm)
        workers0 = _client().run(_thread_cpu)
        threads0, cpu0, tree0, t0 = _thread_cpu(), time.process_time(), tree_cpu(os.getpid()), time.perf_counter()
        if mode == "loops":
            loops.start()
        for i in range(repeat):
            service = make_service(SilentHost(), backend, pipeline_text=pipeline_text, output_dir=out / f"r{i}")
            await service.run_plates(refs)
        if mode == "loops":
            loops.stop(Path(p["out"]))
        wall, server = time.perf_counter() - t0, time.process_time() - cpu0
        tree, threads1 = tree_cpu(os.getpid()) - tree0, _thread_cpu()
        workers1 = _client().run(_thread_cpu)
    by_thread = {
        f"{name}#{ident % 10000}": cpu - threads0.get(ident, (name, 0.0))[1] for ident, (name, cpu) in threads1.items()
    }
    for worker, found in workers1.items():  # each worker process's threads: its event loop, its task thread
        for ident, (name, cpu) in found.items():
            before = workers0.get(worker, {}).get(ident, (name, 0.0))[1]
            by_thread[f"{worker.rsplit(':', 1)[-1]} {name}"] = cpu - before
    return {"wall": wall, "server": server, "workers": tree - server, "threads": by_thread}


def main(p: dict[str, Any]) -> dict[str, Any]:
    plates, wells, size = int(p.get("plates", 2)), int(p.get("wells", 24)), int(p.get("size", 1024))
    if p.get("mode") == "loops":
        Path(p["out"]).mkdir(parents=True, exist_ok=True)
    with temp_dir("profile-dask") as tmp:
        root = Path(tmp)
        refs, warm = tiled_case(root, plates=plates, wells=wells, sites=1, size=size)
        run = trio.run(_run, refs, warm, root / "out", p)
    n = plates * wells * int(p.get("repeat", 2))
    busiest = sorted(run["threads"].items(), key=lambda item: -item[1])
    per_well = {name: round(cpu / n * 1e3, 2) for name, cpu in busiest if cpu / n > 5e-5}
    print(f"{n} wells in {run['wall']:.2f} s; CPU ms per well by thread: {per_well}", file=sys.stderr)
    return {
        "wells": n,
        "server_ms_per_well": round(run["server"] / n * 1e3, 2),
        "workers_ms_per_well": round(run["workers"] / n * 1e3, 2),
        "threads_ms_per_well": per_well,
    }


if __name__ == "__main__":
    emit(main(params_from_argv()))
