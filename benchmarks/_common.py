"""Helpers shared by the benchmark cases: free ports, child processes, clocks, memory, JSON hand-off.

Every case module is runnable as ``python -m benchmarks.<case> '<json params>'``: it prints exactly one JSON
object on its last stdout line. :func:`run_case` starts such a child, waits with a deadline, and parses that
line, so each case runs in a process of its own (isolation: no state, imports or threads leak between cases).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_MARK = "BENCH-RESULT "


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair(offset: int) -> int:
    """A port ``p`` such that both ``p`` and ``p + offset`` were free (zmqruntime pairs data and control)."""
    for _ in range(200):
        p = free_port()
        if p + offset > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p + offset))
            except OSError:
                continue
        return p
    raise RuntimeError(f"no free loopback port pair with offset {offset} found in 200 tries")


def child_env() -> dict[str, str]:
    """Environment for a child: the project importable, Qt offscreen, no stray bytecode writes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def emit(result: dict[str, Any]) -> None:
    """Print a case's result as the marked JSON line :func:`run_case` looks for."""
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_case(module: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> '<params>'`` and return its result.

    Never raises for a failed case: returns ``{"error": ...}`` with the child's stderr tail instead, so one broken
    case does not lose the others' figures. A child still running at ``timeout`` is killed (by its own pid).
    """
    cmd = [sys.executable, "-m", f"benchmarks.{module}", json.dumps(params)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"error": f"timed out after {timeout:g} s", "stderr": err[-2000:]}
    elapsed = time.perf_counter() - started
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            result.setdefault("case_wall_s", round(elapsed, 3))
            return result
    return {"error": f"exit code {proc.returncode}, no result line", "stderr": err[-3000:], "stdout": out[-1000:]}


def params_from_argv() -> dict[str, Any]:
    """The JSON parameters a case was started with (``{}`` when none)."""
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def peak_rss_bytes() -> int:
    """This process's own peak resident set size so far: ``VmHWM`` of /proc. Not ``ru_maxrss`` (the fallback
    elsewhere): Linux carries a parent's peak into it across ``exec``, so a child of a large parent reads as large."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    """This process's resident set size now (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max / mean of durations given in seconds, reported in milliseconds."""
    if not values_s:
        return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    return {
        "n": len(values_s),
        "p50_ms": round(percentile(values_s, 50) * 1e3, 3),
        "p99_ms": round(percentile(values_s, 99) * 1e3, 3),
        "max_ms": round(max(values_s) * 1e3, 3),
        "mean_ms": round(statistics.fmean(values_s) * 1e3, 3),
    }


@contextlib.contextmanager
def child_process(
    cmd: list[str], *, ready_prefix: str, timeout: float = 20.0
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``cmd``, wait for a stdout line starting with ``ready_prefix``, yield (process, that line).

    On exit the child gets SIGTERM, then SIGKILL after 5 s; only this child's pid is signalled.
    """
    # stderr goes to a file: a chatty child (zmqruntime logs every message) must never block on a full pipe.
    errfile = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=errfile, text=True, bufsize=1
    )
    try:
        assert proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            # A reader thread, so a child that hangs before printing cannot hang the harness past ``timeout``.
            for text in stdout:
                lines.put(text)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        line = ""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                break
            if not line or line.startswith(ready_prefix):
                break
        if not line.startswith(ready_prefix):
            proc.kill()
            proc.wait(timeout=5)
            errfile.seek(0)
            err = errfile.read()
            raise RuntimeError(f"{cmd!r} did not print {ready_prefix!r} within {timeout:g} s; stderr: {err[-2000:]}")
        yield proc, line.strip()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        errfile.close()


def python_module_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def now() -> float:
    return time.perf_counter()
