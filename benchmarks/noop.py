"""Overhead and scale: N single-well plates with the no-op pipeline, compile then run, through the embedded server.

One child process per N (run by ``benchmarks.__main__``). With ``"server": "process"`` the server is instead a
``hcs-batch serve`` child process (client and server then each have a core, and memory figures are the client's
alone). Figures: wall time of ``run_plates`` (compile all, then
execute all, every plate terminal), time per plate, plates/s; the client process's peak-RSS growth during the run
(``VmHWM`` minus the RSS before it, divided by N: this includes the embedded server when it lives in this
process); with ``tracemalloc`` (a separate child, since tracing slows Python down) the traced Python heap's peak
growth per plate. Then control requests/s against the same server: ``server_info`` one at a time and with ``window``
requests in flight on the one DEALER. Finally the events one plate really produces (StateEvent + ProgressEvent per
execution id, from a 20-plate run), to check the floor's message count.

Run as ``python -m benchmarks.noop '{"plates": 1000}'``; prints one result line. With ``"profile": "FILE"`` the timed
run is sampled by pyinstrument and its call tree written to FILE (timings are then not comparable).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any

import trio

from ._common import (
    child_process,
    current_rss_bytes,
    emit,
    now,
    params_from_argv,
    peak_rss_bytes,
    python_module_cmd,
)
from ._hcs import SERVE_ROOTS, SilentHost, make_plate_refs, make_service, noop_pipeline, open_backend, temp_dir

WARMUP_PLATES = 20


def _cpu_s(pid: int = 0) -> float:
    """CPU seconds (user + system, all threads) of this process, or of process ``pid`` from /proc."""
    if not pid:
        t = os.times()
        return t.user + t.system
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def _run_batch(backend: Any, refs: list[Any], out: Path) -> tuple[float, SilentHost, Any]:
    host = SilentHost()
    service = make_service(host, backend, pipeline_text=noop_pipeline(), output_dir=out)
    t0 = now()
    summary = await service.run_plates(refs)
    return now() - t0, host, summary


async def _control_rate(backend: Any, requests: int, window: int) -> dict[str, Any]:
    t0 = now()
    for _ in range(requests):
        await backend.server_info()
    t_seq = now() - t0

    async def worker(count: int) -> None:
        for _ in range(count):
            await backend.server_info()

    t0 = now()
    async with trio.open_nursery() as nursery:
        for i in range(window):
            nursery.start_soon(worker, requests // window + (1 if i < requests % window else 0))
    t_pipe = now() - t0
    return {
        "requests": requests,
        "seq_per_s": round(requests / t_seq),
        "pipe_per_s": round(requests / t_pipe),
        "window": window,
        "request": "server_info",
    }


async def _events_per_plate(backend: Any, refs: list[Any], out: Path) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    per_execution: collections.Counter[str] = collections.Counter()
    async with backend.open_event_stream() as stream:
        async with trio.open_nursery() as nursery:

            async def count() -> None:
                async for item in stream:
                    kind = type(item).__name__
                    counts[kind] += 1
                    execution_id = getattr(item, "execution_id", None)
                    if execution_id:
                        per_execution[execution_id] += 1

            nursery.start_soon(count)
            await _run_batch(backend, refs, out)
            await trio.sleep(0.2)  # let the last events of the batch arrive; this run is not timed
            nursery.cancel_scope.cancel()
    n = max(len(per_execution), 1)
    return {
        "plates": len(refs),
        "by_kind": dict(counts),
        "events_per_plate": round(sum(per_execution.values()) / n, 2),
    }


async def main(
    plates: int,
    use_tracemalloc: bool,
    control_requests: int,
    window: int,
    workers: int | None,
    profile: str | None = None,
    server: str = "embedded",
    repeat: int = 1,
) -> dict[str, Any]:
    with temp_dir("noop") as tmp:
        root = Path(tmp)
        t0 = now()
        refs = make_plate_refs(root / "plates", plates=plates)
        warm = make_plate_refs(root / "warm", plates=WARMUP_PLATES, seed=1)
        make_s = now() - t0
        async with contextlib.AsyncExitStack() as stack:
            url = None
            server_pid = 0
            if server == "process":
                cmd = python_module_cmd(
                    "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", "1", *SERVE_ROOTS
                )
                server_proc, line = stack.enter_context(
                    child_process(cmd, ready_prefix="hcs-batch server listening on")
                )
                server_pid = server_proc.pid
                url = line.split()[4]
            backend = await stack.enter_async_context(open_backend(url, workers=workers))
            await _run_batch(backend, warm, root / "out-warm")  # imports, first connections, code paths
            gc.collect()
            rss_before = current_rss_bytes()
            if use_tracemalloc:
                tracemalloc.start()
                traced_before, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005, async_mode="disabled")
                profiler.start()
            cpu0, server_cpu0 = _cpu_s(), _cpu_s(server_pid)
            wall, host, summary = await _run_batch(backend, refs, root / "out")
            client_cpu, server_cpu = _cpu_s() - cpu0, _cpu_s(server_pid) - server_cpu0
            if profile:
                profiler.stop()
                Path(profile).write_text(profiler.output_text(unicode=False, color=False))  # noqa: ASYNC240
            result: dict[str, Any] = {}
            if use_tracemalloc:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                result["tracemalloc_peak_bytes"] = peak - traced_before
                result["tracemalloc_per_plate_bytes"] = round((peak - traced_before) / plates, 1)
            rss_growth = max(peak_rss_bytes() - rss_before, 0)
            # Repeats (fresh host and service, new output folder, same plates): the machine is shared, so the
            # figure is the best of ``repeat`` runs; every wall time is kept.
            walls = [wall]
            for i in range(1, repeat):
                again, again_host, _ = await _run_batch(backend, refs, root / f"out-{i}")
                walls.append(again)
                if again_host.outcomes.get("completed", 0) != plates:
                    result["error"] = f"repeat {i}: {dict(again_host.outcomes)}"
            wall = min(walls)
            result["walls_s"] = [round(w, 4) for w in walls]
            result.update(
                {
                    "plates": plates,
                    "wall_s": round(wall, 4),
                    "per_plate_us": round(wall / plates * 1e6, 2),
                    "plates_per_s": round(plates / wall, 1),
                    "outcomes": dict(host.outcomes),
                    "summary": repr(summary)[:300],
                    "rss_before_bytes": rss_before,
                    "rss_peak_growth_bytes": rss_growth,
                    "rss_delta_per_plate_bytes": round(rss_growth / plates, 1),
                    "make_plates_s": round(make_s, 3),
                    "timed_with_tracemalloc": use_tracemalloc,
                    "server": server,
                    # CPU seconds per plate of this process (client, plus the server when embedded) and of the
                    # server process: where the time goes when the wall time is not CPU-bound on one side.
                    "cpu_per_plate_us": round(client_cpu / plates * 1e6, 1),
                    "server_process_cpu_per_plate_us": round(server_cpu / plates * 1e6, 1) if server_pid else None,
                }
            )
            completed = host.outcomes.get("completed", 0)
            if completed != plates:
                result["error"] = f"only {completed} of {plates} plates completed: {dict(host.outcomes)}"
            if control_requests:
                result["control"] = await _control_rate(backend, control_requests, window)
                result["events"] = await _events_per_plate(backend, warm, root / "out-events")
    return result


if __name__ == "__main__":
    p = params_from_argv()
    emit(
        trio.run(
            main,
            int(p.get("plates", 100)),
            bool(p.get("tracemalloc", False)),
            int(p.get("control_requests", 0)),
            int(p.get("window", 64)),
            p.get("workers"),
            p.get("profile"),
            p.get("server", "embedded"),
            int(p.get("repeat", 1)),
        )
    )
