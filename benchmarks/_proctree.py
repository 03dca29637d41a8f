"""Run a command and watch its whole process tree: wall time, and the peak resident memory of every process in it.

The peak is the kernel's own high-water mark (``VmHWM`` in ``/proc/PID/status``), read every ``interval`` seconds
for every descendant, so a worker that lives for less than ``interval`` may be missed, but a worker's peak is
never under-read while it lives. Linux only (elsewhere the peaks are empty). CPU time comes from
``RUSAGE_CHILDREN``: run one command at a time per process.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TreeRun", "descendants", "run_tree", "tree_cpu"]


@dataclass(slots=True)
class TreeRun:
    """What :func:`run_tree` saw: exit code, wall seconds, CPU seconds (user + system) of the command and every
    descendant it reaped (workers included), output, and pid -> (peak RSS bytes, command line)."""

    pid: int
    returncode: int
    wall_s: float
    cpu_s: float
    stdout: str
    stderr: str
    peaks: dict[int, tuple[int, str]] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    """pid -> CPU seconds (user + system) at the last sample: where the time went, to within one interval."""

    def children(self) -> dict[int, tuple[int, str]]:
        """The peaks of every process below the command's own."""
        return {pid: v for pid, v in self.peaks.items() if pid != self.pid}


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, now."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every process below it now, as far as they have run."""
    return sum(_cpu(pid) or 0.0 for pid in descendants(root))


def _hwm(pid: int) -> tuple[int, str] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024, cmd[:160]
    return None


def run_tree(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float, interval: float = 0.05) -> TreeRun:
    """Run ``cmd`` to its end (killed at ``timeout`` seconds, by its own pid), sampling its tree's peaks."""
    peaks: dict[int, tuple[int, str]] = {}
    cpus: dict[int, float] = {}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            if os.path.isdir("/proc"):
                for pid in descendants(proc.pid):
                    seen = _hwm(pid)
                    if seen is not None and seen[0] >= peaks.get(pid, (0, ""))[0]:
                        peaks[pid] = seen
                    used = _cpu(pid)
                    if used is not None:
                        cpus[pid] = used
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[bench] killed after {timeout:g} s"
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    done.set()
    sampler.join()
    return TreeRun(proc.pid, proc.returncode, wall, cpu, out, err, peaks, cpus)
