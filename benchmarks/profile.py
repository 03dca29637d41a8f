"""Where the time of N no-op plates goes: pyinstrument on the client and on a ``hcs-batch serve`` process.

Writes ``<out>/profile-client.txt`` (the benchmark process: service, engine, connection) and
``<out>/profile-server.txt`` (the server process, stopped with SIGINT so pyinstrument writes its report). Sampling
slows both sides down, so the wall time printed here is not a benchmark figure; the proportions are what matter.

Run as ``python -m benchmarks.profile '{"plates": 1000, "out": "benchmarks/results"}'``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from ._common import ROOT, child_env, emit, now, params_from_argv
from ._hcs import SERVE_ROOTS, SilentHost, make_plate_refs, make_service, noop_pipeline, open_backend, temp_dir


async def _client(url: str, plates: int, out: Path) -> float:
    from pyinstrument import Profiler

    with temp_dir("profile") as tmp:
        refs = make_plate_refs(Path(tmp) / "plates", plates=plates)
        warm = make_plate_refs(Path(tmp) / "warm", plates=20, seed=1)
        async with open_backend(url) as backend:
            await make_service(
                SilentHost(), backend, pipeline_text=noop_pipeline(), output_dir=Path(tmp) / "w"
            ).run_plates(warm)
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            service = make_service(SilentHost(), backend, pipeline_text=noop_pipeline(), output_dir=Path(tmp) / "o")
            profiler.start()
            t0 = now()
            await service.run_plates(refs)
            wall = now() - t0
            profiler.stop()
    (out / "profile-client.txt").write_text(profiler.output_text(unicode=False, color=False))
    return wall


def main(plates: int, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    server_report = out / "profile-server.txt"
    cmd = [sys.executable, "-m", "pyinstrument", "-i", "0.0005", "-r", "text", "-o", str(server_report)]
    cmd += ["-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", "1", *SERVE_ROOTS]
    server = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the server under pyinstrument did not start: {line!r}")
        wall = trio.run(_client, line.split()[4], plates, out)
    finally:
        server.send_signal(signal.SIGINT)  # the server exits cleanly on SIGINT; pyinstrument then writes its report
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {
        "plates": plates,
        "profiled_wall_s": round(wall, 3),
        "client": str(out / "profile-client.txt"),
        "server": str(server_report),
    }


if __name__ == "__main__":
    p = params_from_argv()
    emit(main(int(p.get("plates", 1000)), Path(p.get("out", str(ROOT / "benchmarks" / "results")))))
