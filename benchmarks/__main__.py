"""``python -m benchmarks [--full] [--tiny] [--only CASE ...] [--out DIR] [--no-readme] [--from-json FILE]``.

Runs the cases and writes the results.

Each case runs in a child process of its own (see ``_common.run_case``). The results go to ``DIR/latest.json``,
``DIR/latest.md`` (the table: case, figure, target, ratio, met?) and ``DIR/latest.png``; unless ``--no-readme``, the
table is also copied between the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` marks of README.md.

``--tiny`` is the smoke configuration the test suite runs: a few plates per case, seconds in all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import report
from ._common import ROOT, run_case

CASES = ("floor", "anchor", "noop", "gui", "cancel", "realwork", "realplates", "dask")


def configuration(full: bool, tiny: bool) -> dict[str, Any]:
    """How big each case is. Quick (default) fits ``make bench`` in about 6 minutes on 2 cores."""
    if tiny:
        return {
            "floor": {"seq": 200, "pipe": 2000},
            "anchor": {"plates": 3, "requests": 10},
            "noop": {"sizes": [3, 10], "memory": True, "control_requests": 200},
            "gui": {"plates": 20, "idle_s": 0.3},
            "cancel": {"plates": 20, "pipeline": "default"},
            "realwork": {"plates": 1, "wells": 2, "size": 64, "workers": 2},
            "realplates": {
                "wells": 2,
                "sites": 2,
                "channels": 2,
                "size": 64,
                "single_images": 2,
                "single_wells": 1,
                "repeat": 1,
            },
            "dask": {"plates": 1, "wells": 2, "size": 64, "workers": 2, "repeat": 1},
        }
    return {
        "floor": {"seq": 3000, "pipe": 30000},
        "anchor": {"plates": 1000 if full else 100, "requests": 300},
        "noop": {
            "sizes": [10, 100, 1000, 10000],  # issue 16: the no-op guard is 10,000 plates, quick too (~70 s)
            "memory": True,
            "control_requests": 5000,
            "repeat": 3,
        },
        "gui": {"plates": 1000, "idle_s": 2.0, "repeat": 2, "scale_plates": 10000},
        "cancel": {"plates": 1000, "pipeline": "default"},
        "realwork": {"plates": 4 if full else 2, "wells": 24, "size": 1024, "workers": 2},
        # Issue 16: 2,048-pixel uint16 fields, 2 sites x 2 channels a well; 48 distinct fields hard-linked in turn.
        "realplates": {
            "wells": 384 if full else 96,
            "sites": 2,
            "channels": 2,
            "size": 2048,
            "fields": 48,
            "workers": 2,
            "single_images": 8,
            "single_wells": 6,
            "repeat": 3 if full else 2,
        },
        "dask": {"plates": 4 if full else 2, "wells": 24, "size": 1024, "workers": 2, "repeat": 3},
    }


TIMEOUTS = {
    "floor": 60,
    "anchor": 120,
    "noop": 400,
    "gui": 120,
    "cancel": 120,
    "realwork": 300,
    "realplates": 900,
    "dask": 300,
}


def run(cases: list[str], config: dict[str, Any], *, full: bool, tiny: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    load: dict[str, Any] = {"start": os.getloadavg()}
    for case in cases:
        t0 = time.perf_counter()
        print(f"[bench] {case} ...", file=sys.stderr, flush=True)
        timeout = TIMEOUTS[case] * (3 if full else 1)
        if case == "noop":
            results[case] = run_noop(config[case], timeout=timeout)
        elif case == "gui":
            results[case] = run_gui(config[case], timeout=timeout)
        elif case == "cancel":
            results[case] = run_case("cancel", config[case], timeout=timeout)
            results[case]["noop_variant"] = run_case("cancel", {**config[case], "pipeline": "noop"}, timeout=timeout)
        elif case == "anchor":
            results[case] = run_case("anchor", config[case], timeout=timeout * (10 if full else 1))
        elif case == "dask":
            results[case] = run_case("dask_executor", config[case], timeout=timeout)
        else:
            results[case] = run_case(case, config[case], timeout=timeout)
        load[case] = os.getloadavg()  # the machine is shared: a high 1-minute load means noisy figures
        status = "error: " + results[case]["error"] if "error" in results[case] else "ok"
        print(f"[bench] {case} {status} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "mode": "tiny" if tiny else ("full" if full else "quick"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": _cpus(),
            "config": config,
            "loadavg": {k: [round(x, 2) for x in v] for k, v in load.items()},
        },
        "cases": results,
    }


def run_noop(config: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """The overhead/scale series, one child per measurement.

    Per N: a timed run through the embedded server (control requests/s and the real event count at the largest N
    only), then a memory run with tracemalloc against a ``hcs-batch serve`` child (so the figure is the client's
    alone). Once: the largest N up to 1,000 timed with the server in its own process (a core each).
    """
    series: dict[str, Any] = {}
    sizes = config["sizes"]
    for n in sizes:
        control = config["control_requests"] if n == max(sizes) else 0
        repeat = config.get("repeat", 1) if n <= 1000 else 1
        timed = run_case("noop", {"plates": n, "control_requests": control, "repeat": repeat}, timeout=timeout)
        if config.get("memory") and "error" not in timed:
            mem = run_case("noop", {"plates": n, "tracemalloc": True, "server": "process"}, timeout=timeout)
            timed["tracemalloc_peak_bytes"] = mem.get("tracemalloc_peak_bytes")
            timed["tracemalloc_per_plate_bytes"] = mem.get("tracemalloc_per_plate_bytes")
            timed["memory_server"] = "process"
            # The client's alone (the server in its own process), but under tracemalloc, which slows it.
            timed["client_cpu_per_plate_us_traced"] = mem.get("cpu_per_plate_us")
            if "error" in mem:
                timed["memory_error"] = mem["error"]
        series[str(n)] = timed
        if "error" in timed:
            return {"error": f"N={n}: {timed['error']}", "series": series, "stderr": timed.get("stderr", "")}
    n = max(k for k in sizes if k <= 1000) if min(sizes) <= 1000 else min(sizes)
    process = run_case("noop", {"plates": n, "server": "process", "repeat": config.get("repeat", 1)}, timeout=timeout)
    return {"series": series, "server_process": process}


def run_gui(config: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """The GUI case ``repeat`` times as shipped (kept: the run with the lowest timer p99, like best-of for the
    other cases; every run's figures stay in ``runs``), then once with ``gc.freeze()`` after the warm-up and once
    with a ``hcs-batch serve`` the window connects to by URL; with ``scale_plates``, the real window with that many
    plates (its embedded server a child process, as shipped) and the same with the server inside its Trio run."""
    params = {k: v for k, v in config.items() if k != "repeat"}
    runs = [run_case("gui", params, timeout=timeout) for _ in range(config.get("repeat", 1))]
    good = [r for r in runs if "error" not in r]
    best = dict(min(good, key=lambda r: r["run"]["p99_ms"]) if good else runs[0])
    best["runs"] = [{k: r.get(k) for k in ("run", "idle", "longest_tick_ms", "error")} for r in runs]
    best["gc_freeze_variant"] = run_case("gui", {**params, "gc": "freeze"}, timeout=timeout)
    best["server_process_variant"] = run_case("gui", {**params, "server": "process"}, timeout=timeout)
    if config.get("scale_plates"):  # issue 15: the real window with this many plate rows, longest tick <= 16 ms
        scale = {"plates": config["scale_plates"], "idle_s": 0.5}
        best["scale_variant"] = run_case("gui", scale, timeout=timeout * 5)
        # The same with the embedded server inside the GUI's Trio run, as before issue 15's fix: the comparison.
        best["scale_inline_variant"] = run_case("gui", {**scale, "server": "inline"}, timeout=timeout * 5)
    return best


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="adds 10,000 plates and the 1,000-plate anchor")
    parser.add_argument("--tiny", action="store_true", help="the smoke configuration (seconds)")
    parser.add_argument("--only", nargs="+", choices=CASES, help="run only these cases")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    parser.add_argument("--no-readme", action="store_true", help="do not copy the table into README.md")
    parser.add_argument("--from-json", metavar="FILE", help="measure nothing: redraw table and plot from FILE")
    args = parser.parse_args(argv)

    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
    else:
        config = configuration(args.full, args.tiny)
        data = run(list(args.only or CASES), config, full=args.full, tiny=args.tiny)
    data["rows"] = report.rows(data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    table = report.markdown(data)
    (out / "latest.md").write_text(table)
    try:
        report.plot(data, out / "latest.png")
    except ImportError as exc:  # matplotlib comes with the bench extra only; the smoke test runs without it
        print(f"[bench] no plot: {exc} (install '.[bench]')", file=sys.stderr)
    if not args.no_readme:
        report.update_readme(ROOT / "README.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
