"""A real Dask cluster for tests: one ``dask scheduler`` and ``dask worker`` processes (each under its nanny) on
127.0.0.1, started from the venv's own ``dask`` command (the bin folder of ``sys.executable``).

Each process is ready once it logs its address (read from its stderr, no polling); the rest of its log is drained
by a thread and kept for failure messages. Workers import ``tests.support.slow_steps`` and this tree's
``hcs_batch`` through the test environment's PYTHONPATH (:func:`tests.support.serverproc.env`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .procs import descendants
from .serverproc import env

DASK = Path(sys.executable).parent / "dask"
_SCHEDULER_AT = re.compile(r"Scheduler at:\s+(tcp://\S+)")
_WORKER_AT = re.compile(r"Start worker at:\s+(tcp://\S+)")
_REGISTERED = re.compile(r"Registered to:")


@dataclass
class DaskProcess:
    """A ``dask`` process this test started: its Popen (the nanny for a worker), address and log lines."""

    proc: subprocess.Popen[str]
    address: str
    log: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def worker_pids(self) -> set[int]:
        """The processes below this one (a worker's process under its nanny)."""
        return descendants(self.pid)


@dataclass
class DaskCluster:
    scheduler: DaskProcess
    workers: list[DaskProcess]
    scheduler_file: Path

    @property
    def worker_addresses(self) -> set[str]:
        return {w.address for w in self.workers}


def _start(args: list[str], ready: re.Pattern[str], *, then: re.Pattern[str] | None = None) -> DaskProcess:
    proc = subprocess.Popen([str(DASK), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    assert proc.stderr is not None
    lines: list[str] = []
    address = ""
    for line in proc.stderr:
        lines.append(line)
        match = ready.search(line)
        if match and not address:
            address = match.group(1)
            if then is None:
                break
        elif address and then is not None and then.search(line):
            break
    if not address or proc.poll() is not None:
        proc.kill()
        proc.wait()
        proc.stderr.close()
        raise AssertionError(f"dask {args[0]} did not start:\n{''.join(lines[-30:])}")
    stream = proc.stderr
    drain = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
    drain.start()
    return DaskProcess(proc=proc, address=address, log=lines, drain=drain)


def start_scheduler(scheduler_file: Path) -> DaskProcess:
    """``dask scheduler`` on a free 127.0.0.1 port, writing ``scheduler_file``; returns once it listens."""
    return _start(
        ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        _SCHEDULER_AT,
    )


def start_worker(scheduler: str, name: str) -> DaskProcess:
    """A single-threaded ``dask worker`` (with its nanny) on 127.0.0.1; returns once the scheduler registered it."""
    return _start(
        ["worker", scheduler, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard", "--name", name],
        _WORKER_AT,
        then=_REGISTERED,
    )


def stop(process: DaskProcess) -> None:
    """End a process this test started and everything below it: SIGTERM, then SIGKILL after 10 s."""
    below = process.worker_pids()
    if process.proc.poll() is None:
        process.proc.send_signal(signal.SIGTERM)
        try:
            process.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.drain is not None:
        process.drain.join(timeout=10)  # the pipe ends when the process and its children are gone
    if process.proc.stderr is not None:
        process.proc.stderr.close()


@contextmanager
def dask_cluster(folder: Path, *, workers: int = 2) -> Iterator[DaskCluster]:
    """A scheduler and ``workers`` workers for the block (blocking: start it in a thread from Trio code)."""
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    scheduler = start_scheduler(scheduler_file)
    started: list[DaskProcess] = []
    try:
        for i in range(workers):
            started.append(start_worker(scheduler.address, f"w{i}"))
        yield DaskCluster(scheduler=scheduler, workers=started, scheduler_file=scheduler_file)
    finally:
        for worker in started:
            stop(worker)
        stop(scheduler)


def keys_on_cluster(scheduler: str, prefix: str) -> tuple[set[str], set[str]]:
    """(keys starting with ``prefix`` the scheduler has processing on a worker, keys a worker thread is computing
    right now). Asks through a Dask client of the test's own. Blocking: call it in a thread from Trio code."""
    from distributed import Client

    from hcs_batch.server.executor.dask import _executing

    with Client(scheduler, set_as_default=False, timeout=10) as client:
        processing = {str(k) for ks in client.processing().values() for k in ks if str(k).startswith(prefix)}
        executing = {str(k) for ks in client.run(_executing, prefix).values() for k in ks}
    return processing, executing


def cluster_workers(scheduler: str) -> set[str]:
    """The addresses of the workers registered with ``scheduler`` (blocking)."""
    from distributed import Client

    with Client(scheduler, set_as_default=False, timeout=10) as client:
        return set(client.scheduler_info(n_workers=-1)["workers"])
