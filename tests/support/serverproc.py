"""``hcs-batch serve`` as a subprocess for the fault tests: start (on a chosen or free port), kill, freeze, reap.

The server prints exactly one line once it listens; :func:`start_server` reads it, so a returned server answers.
Worker processes of a killed server are not reaped by anyone: tests that kill a server collect the pids of the
workers blocked in a step (from the files the step writes) and end them with :func:`kill_pids`.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from .procs import reap_process
from .slow_steps import release_gate

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: ``tests.support.slow_steps`` is importable from it."""
STEP_PACKAGE = Path(__file__).resolve().parent / "dist"
"""Only the ``hcs_batch_test_steps`` dist-info (no module): it registers ``tests.support.slow_steps`` and
``tests.support.user_steps`` under the ``hcs_batch.steps`` entry-point group, as a lab registers its step package,
so servers allow them. pytest has it on ``sys.path`` (``pythonpath`` in pyproject.toml); subprocesses get it here."""
TMP = tempfile.gettempdir()
LINE = re.compile(r"^hcs-batch server listening on (tcp://127\.0\.0\.1:(\d+)) \(events on (\d+)\)$")


def env() -> dict[str, str]:
    """The environment for hcs-batch subprocesses: ``tests.support`` importable (by workers too) and registered as
    a step package, no COLUMNS."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(STEP_PACKAGE), environment.get("PYTHONPATH", "")])
    environment.pop("COLUMNS", None)
    return environment


def free_port_pair() -> int:
    """A loopback port P with P+1 free too (the server binds events on P+1 for an explicit port)."""
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free loopback ports")


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    events_port: int

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_server(*, workers: int = 2, port: int = 0, extra: Sequence[str] = ()) -> Server:
    """Start ``hcs-batch serve`` on ``port`` (0: free ports) and return once it listens. Blocking: call it in a
    thread from Trio code. Its data and output root is the temporary folder (tests' plates live there) unless
    ``extra`` arguments name roots."""
    roots = [] if any(a.endswith("-root") for a in extra) else ["--data-root", TMP, "--output-root", TMP]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hcs_batch",
            "serve",
            "--bind",
            f"tcp://127.0.0.1:{port}",
            "--workers",
            str(workers),
            *roots,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    match = LINE.match(line)
    if match is None:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise AssertionError(f"unexpected first line from hcs-batch serve: {line!r}")
    return Server(proc=proc, url=match.group(1), events_port=int(match.group(3)))


def reap(server: Server) -> None:
    """Make sure the server process is gone (SIGCONT, SIGKILL if still there) and close its pipe."""
    if server.proc.poll() is None:
        os.kill(server.pid, signal.SIGCONT)
    reap_process(server.proc)


def stop(server: Server) -> int:
    """SIGINT (a clean stop), then the exit code."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)
    try:
        return server.proc.wait(timeout=30)
    finally:
        reap(server)


@contextmanager
def running_server(*, workers: int = 2, port: int = 0) -> Iterator[Server]:
    """A server for the block; stopped cleanly if it is still running at the end, killed if that fails."""
    server = start_server(workers=workers, port=port)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            try:
                stop(server)
            except subprocess.TimeoutExpired:
                reap(server)
        else:
            reap(server)


def pids_in(folder: Path) -> set[int]:
    """The pids recorded by blocked steps (``<pid>.pid`` files) in ``folder``."""
    return {int(p.stem) for p in folder.glob("*.pid")}


def kill_pids(pids: Iterable[int]) -> None:
    """SIGKILL processes this test started (directly or through a server it started), ignoring gone ones."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


GATE_PIPELINE = """
name = "gated"
[[steps]]
func = "tests.support.slow_steps:gate"
gate_dir = "{gate_dir}"
"""
"""A pipeline whose wells wait at ``tests.support.slow_steps:gate`` in ``gate_dir`` (format it with ``gate_dir=``)."""


@asynccontextmanager
async def gated_server(gate_dir: Path, *, stop_cleanly: bool) -> AsyncIterator[Server]:
    """A ``hcs-batch serve`` process with two workers, for tests whose wells wait at the gate in ``gate_dir``.

    On exit, with ``stop_cleanly`` a server still running has its gate released and is stopped with SIGINT (it
    must exit 0); in every case it is reaped and the workers still held at the gate (a killed server's) are
    killed by pid.
    """
    srv = await trio.to_thread.run_sync(functools.partial(start_server, workers=2))
    try:
        yield srv
    finally:
        if stop_cleanly and srv.proc.poll() is None:
            release_gate(gate_dir)  # let held wells finish, so the clean stop has nothing to kill
            assert await trio.to_thread.run_sync(stop, srv) == 0
        await trio.to_thread.run_sync(reap, srv)
        kill_pids(pids_in(gate_dir))


async def wait_for_pids(folder: Path, count: int) -> set[int]:
    """Wait until ``count`` workers have recorded their pid in ``folder``. The files are written by worker
    processes, so this is a bounded poll: the caller's ``trio.fail_after`` is the bound."""
    while len(pids := pids_in(folder)) < count:  # noqa: ASYNC110
        await trio.sleep(0.02)
    return pids
