"""The benchmark harness runs a tiny configuration end to end and writes a valid result set.

Runs ``python -m benchmarks --tiny`` in a child process (as ``make bench`` does) on the cases that need no bench
extra (the floor, and the no-op overhead series through the embedded server); the zmqruntime anchor joins when the
bench extra is installed. Checks the JSON's shape and that the figures are real measurements, not placeholders.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_benchmark_run_writes_valid_results(tmp_path: Path) -> None:
    cases = ["floor", "noop", "realplates"]
    if importlib.util.find_spec("zmqruntime") is not None:
        cases.append("anchor")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--no-readme", "--out", str(tmp_path), "--only", *cases],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["meta"]["mode"] == "tiny"
    assert set(data["cases"]) == set(cases)
    for case in cases:
        assert "error" not in data["cases"][case], (case, data["cases"][case])

    floor = data["cases"]["floor"]
    assert 0 < floor["rt_pipe_us"] < floor["rt_seq_us"], floor  # pipelining must beat one-at-a-time
    assert floor["messages_per_plate"] == sum(floor["plate_messages"].values())

    series = data["cases"]["noop"]["series"]
    assert sorted(int(n) for n in series) == data["meta"]["config"]["noop"]["sizes"]
    for n, r in series.items():
        assert r["outcomes"].get("completed") == int(n), r  # every plate really ran to completion
        assert r["wall_s"] > 0 and r["per_plate_us"] > 0
        assert r["tracemalloc_per_plate_bytes"] > 0
    assert series[max(series, key=int)]["control"]["seq_per_s"] > 0

    real = data["cases"]["realplates"]  # hcs-batch run, the Pool script and the single-core scripts, side by side
    compared = real["agreement"]["compared"]  # the Dask case joins when its executor is available
    assert {"hcs", "pool"} <= set(compared) <= {"dask", "hcs", "pool"} and not real["agreement"]["mismatches"], real
    assert real["agreement"]["images"] == 8 and real["single"]["images"] == 2
    for name in ("hcs", "pool"):
        assert real[name]["wells_per_s"] > 0 and real[name]["cpu_s"] > 0 and real[name]["peak_rss_per_worker_mib"] > 0
    assert real["ratios"]["hcs_vs_pool"] > 0 and real["ratios"]["counter_vs_reference"] > 0
    assert real["ratios"]["pool_parallel_efficiency"] > 0 and real["single"]["serial_cpu_s_per_well"] > 0
    for name in ("hcs", "pool"):  # CPU a well of the command's own process and of its workers
        assert real[name]["worker_cpu_s_per_well"] > 0 and real[name]["main_cpu_s_per_well"] >= 0
    # The interpreter baseline is a warm worker's own peak: never a larger parent's (ru_maxrss once read 375 MiB).
    assert 0 < real["interpreter_rss_mib"] <= 1.2 * real["hcs"]["peak_rss_per_worker_mib"], real
    assert "skipped" in real["dask"] or "wells_per_s" in real["dask"]

    rows = {r["case"].split(" (")[0]: r for r in data["rows"]}
    assert rows["real plates: hcs-batch run vs multiprocessing.Pool"]["ratio"] > 0
    overhead = rows["overhead vs floor"]
    assert overhead["ratio"] > 0 and isinstance(overhead["met"], bool)

    table = (tmp_path / "latest.md").read_text()
    assert table.count("\n| ") == len(data["rows"]) + 2  # header, rule, one line per row
    assert "overhead vs floor" in table
