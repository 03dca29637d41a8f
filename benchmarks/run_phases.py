"""Where the fixed time of ``hcs-batch run`` goes: the phases from process start to the first well, and from the
last well to exit, against the ``multiprocessing.Pool`` script's (issue 16).

``python -m benchmarks.run_phases '{"wells": 96, "repeat": 3}'`` runs, alternating, ``hcs-batch run PLATE
--workers 2 --json`` and ``python -m benchmarks.realplates_pool`` on the cached real plate
(:mod:`benchmarks._realdata`, the realplates case's quick plate unless ``wells``/``size``/``fields`` say
otherwise) with the benchmark-only tracer :mod:`benchmarks._phasetrace` first on ``PYTHONPATH``: every process of
the command logs its interpreter start, the end of some imports and the calls of the functions that mark a phase
(timestamps, ``time.time()``, comparable across processes). Each run reports seconds since the command was
launched for each phase, the start-up (launch -> first well running in a worker), the tail (last well done ->
exit), the wells' span and the workers' idle time between wells, and the medians over the runs. ``"variants"``
adds environment variants of the hcs command (``{"name": {"VAR": "value"}}``), alternated with the rest.
The tracer costs ~20 us an event (a few hundred events a run).
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import ROOT, child_env, emit, params_from_argv
from ._realdata import PlateSpec, ensure_plate
from ._realsteps import pipeline_text

TRACER = ROOT / "benchmarks" / "_phasetrace"

HCS_MARKS = (
    ("interpreter", "I", "main"),
    ("main", "B", "main"),
    ("import:hcs_batch.cli.batch", "I", "main"),
    ("compile_pipeline", "E", "main"),
    ("_run_batch", "B", "main"),
    ("import:hcs_batch.server.serve", "I", "main"),
    ("serve", "B", "main"),
    ("SpawnProcWorker.start", "B", "main"),
    ("interpreter", "I", "worker"),
    ("keep_heap", "B", "worker"),
    ("import:hcs_batch.server.worker", "I", "worker"),
    ("warm_up", "B", "worker"),
    ("warm_up", "E", "worker"),
    ("compile_plate", "B", "main"),
    ("compile_plate", "E", "main"),
    ("Executor.submit", "B", "main"),
    ("run_well", "B", "worker"),
)
"""(event, phase, process) of the start-up, in the order they usually come: the first of each is reported."""

TAIL_MARKS = (
    ("write_plate_results", "B"),
    ("write_plate_results", "E"),
    ("write_plate_map", "B"),
    ("write_plate_map", "E"),
    ("Executor._run", "E"),
    ("_run_batch", "E"),
    ("main", "E"),
    ("atexit", "I"),
)
"""Events after the last well: the last of each is reported, relative to the last well's end."""


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return sorted((json.loads(line) for line in path.read_text().splitlines() if line), key=lambda e: e["t"])


def _first(events: list[dict[str, Any]], ev: str, ph: str, pids: set[int] | None = None) -> float | None:
    found = (e["t"] for e in events if e["ev"] == ev and e["ph"] == ph and (pids is None or e["pid"] in pids))
    return next(found, None)


def _last(events: list[dict[str, Any]], ev: str, ph: str, pid: int | None = None) -> float | None:
    found = (e["t"] for e in reversed(events) if e["ev"] == ev and e["ph"] == ph and pid in (None, e["pid"]))
    return next(found, None)


def _wells(events: list[dict[str, Any]], name: str) -> tuple[list[tuple[int, float, float]], float]:
    """(pid, begin, end) of every well call, and the total idle time of the workers between their wells."""
    open_: dict[int, float] = {}
    spans: list[tuple[int, float, float]] = []
    for e in events:
        if e["ev"] != name:
            continue
        if e["ph"] == "B":
            open_[e["pid"]] = e["t"]
        elif e["pid"] in open_:
            spans.append((e["pid"], open_.pop(e["pid"]), e["t"]))
    idle = 0.0
    for pid in {s[0] for s in spans}:
        mine = sorted(s for s in spans if s[0] == pid)
        idle += sum(b[1] - a[2] for a, b in itertools.pairwise(mine))
    return spans, idle


def _analyse(kind: str, events: list[dict[str, Any]], launch: float, exit_: float, main_pid: int) -> dict[str, Any]:
    rel = {}
    well_call = "run_well" if kind == "hcs" else "process_well"
    spans, idle = _wells(events, well_call)
    if kind == "hcs":
        worker_pids = {e["pid"] for e in events if e["pid"] != main_pid}
        for ev, ph, where in HCS_MARKS:
            t = _first(events, ev, ph, {main_pid} if where == "main" else worker_pids)
            if t is not None:
                rel[f"{where}:{ev}:{ph}"] = round(t - launch, 3)
        ready = [e["t"] for e in events if e["ev"] == "warm_up" and e["ph"] == "E"]
        if ready:
            rel["workers_ready(last warm_up:E)"] = round(max(ready) - launch, 3)
    else:
        for ev, ph in (("interpreter", "I"), ("process_well", "B")):
            t = _first(events, ev, ph)
            if t is not None:
                rel[f"{ev}:{ph}"] = round(t - launch, 3)
    last_well = max((s[2] for s in spans), default=exit_)
    tail: dict[str, float] = {}
    marks = TAIL_MARKS if kind == "hcs" else (("write_rows", "B"), ("write_objects", "E"), ("atexit", "I"))
    for ev, ph in marks:
        t = _last(events, ev, ph, main_pid if ev == "atexit" else None)
        if t is not None and t >= last_well:
            tail[f"{ev}:{ph}"] = round(t - last_well, 3)
    tail["exit"] = round(exit_ - last_well, 3)
    first_well = min((s[1] for s in spans), default=launch)
    return {
        "wall_s": round(exit_ - launch, 3),
        "startup_s": round(first_well - launch, 3),
        "wells_span_s": round(last_well - first_well, 3),
        "tail_s": round(exit_ - last_well, 3),
        "well_calls": len(spans),
        "well_s_mean": round(statistics.fmean(s[2] - s[1] for s in spans), 4) if spans else None,
        "worker_idle_between_wells_s": round(idle, 3),
        "start": rel,
        "after_last_well": tail,
    }


def _run(kind: str, cmd: list[str], env: dict[str, str], trace: Path, timeout: float) -> dict[str, Any]:
    trace.unlink(missing_ok=True)
    env = {**env, "HCS_PHASES": str(trace), "PYTHONPATH": os.pathsep.join([str(TRACER), env["PYTHONPATH"]])}
    launch = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=timeout)
    exit_ = time.time()
    if proc.returncode != 0:
        return {"error": f"{kind} exited {proc.returncode}: {err.strip()[-600:]}"}
    return _analyse(kind, _events(trace), launch, exit_, proc.pid)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("wall_s", "startup_s", "wells_span_s", "tail_s", "worker_idle_between_wells_s")
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    for part in ("start", "after_last_well"):
        names = {n for r in runs for n in r[part]}
        out[part] = {n: round(statistics.median(r[part][n] for r in runs if n in r[part]), 3) for n in names}
        out[part] = dict(sorted(out[part].items(), key=lambda kv: kv[1]))
    return out


def main(p: dict[str, Any]) -> dict[str, Any]:
    spec = PlateSpec(
        wells=int(p.get("wells", 96)),
        sites=int(p.get("sites", 2)),
        channels=int(p.get("channels", 2)),
        size=int(p.get("size", 2048)),
        fields=int(p.get("fields", 48)),
    )
    workers, repeat = int(p.get("workers", 2)), int(p.get("repeat", 3))
    plate = ensure_plate(spec) / "plate"
    variants: dict[str, dict[str, str]] = {"hcs": {}, **p.get("variants", {})}
    kinds = [*variants, "pool"] if p.get("pool", True) else list(variants)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="run-phases-") as tmp:
        work = Path(tmp)
        pipeline = work / "pipeline.toml"
        pipeline.write_text(pipeline_text())
        for i in range(repeat):
            for kind in kinds if i % 2 == 0 else list(reversed(kinds)):
                out = work / f"{kind}-{i}"
                env = child_env()
                if kind == "pool":
                    cmd = [sys.executable, "-m", "benchmarks.realplates_pool", str(plate), f"{out}.csv"]
                    cmd += ["--workers", str(workers)]
                else:
                    env.update(variants[kind])
                    cmd = [sys.executable, "-m", "hcs_batch", "run", str(plate), "--pipeline", str(pipeline)]
                    cmd += ["--output", str(out), "--workers", str(workers), "--json"]
                result = _run("pool" if kind == "pool" else "hcs", cmd, env, work / "trace.jsonl", 900)
                result["loadavg"] = round(os.getloadavg()[0], 2)
                runs[kind].append(result)
                print(f"[run_phases] {kind} {i}: {json.dumps(result)}", file=sys.stderr, flush=True)
    ok = {k: [r for r in v if "error" not in r] for k, v in runs.items()}
    return {
        "plate": str(plate),
        "workers": workers,
        "median": {k: _median(v) for k, v in ok.items() if v},
        "runs": runs,
    }


if __name__ == "__main__":
    emit(main(params_from_argv()))
