"""Where a host gets its backend: a connection to a named server, or an embedded server in the same Trio run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ._util import check_server_url
from .client.connection import DEFAULT_LIVENESS_TIMEOUT, ServerConnection, open_connection
from .errors import InputError, ServerUnreachableError
from .security import load_client_keys

if TYPE_CHECKING:
    from .server.worker_pool import WorkerPool

__all__ = ["EMBEDDED_MODES", "open_backend"]

EMBEDDED_MODES = ("inline", "process")
"""Where an embedded server runs: in the caller's Trio run, or in a child process of its own."""

SERVER_START_TIMEOUT = 60.0
"""Seconds a child server may take to import its modules and listen (a hang guard; ~1 s is usual)."""
SERVER_STOP_GRACE = 10.0
"""Seconds a child server gets to cancel its executions and stop its workers before it is killed."""


@asynccontextmanager
async def open_backend(
    server: str | None,
    *,
    workers: int | None = None,
    max_wells_per_worker: int | None = None,
    connect_timeout: float = 5.0,
    liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
    keys: str | Path | None = None,
    allow_steps: Sequence[str] = (),
    data_roots: Sequence[str | Path] = (),
    output_roots: Sequence[str | Path] = (),
    executor: str = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    embedded: str = "inline",
    worker_pool: WorkerPool | None = None,
) -> AsyncIterator[ServerConnection]:
    """Connect to ``server`` (``tcp://host:port``), or, when it is None, start an execution server on a free
    loopback port inside this Trio run and connect to that; it stops (cancelling its executions and killing its
    workers) when the context exits.

    ``keys`` is a CurveZMQ key folder (``hcs-batch keys generate``) for a server that requires them.
    ``allow_steps``, ``data_roots`` and ``output_roots`` configure an embedded server (see
    :func:`hcs_batch.server.serve`; roots default to the working directory); the connection to an embedded
    server may shut it down (it holds the server's shutdown token).
    ``workers`` and ``max_wells_per_worker`` configure the embedded server only.
    ``executor``, ``scheduler`` and ``scheduler_file`` too: e.g. ``executor="dask"`` runs its wells on a Dask
    cluster.
    ``embedded="process"`` runs the embedded server in a child process (``python -m hcs_batch.server.child``)
    instead of this Trio run: its work then never takes this thread's time (a GUI's guest ticks stay short). The
    child stops when the context exits (cancelling its executions; killed after ``SERVER_STOP_GRACE`` seconds)
    and also when this process dies (it watches its stdin).
    ``worker_pool`` (an inline embedded server with the local executor only) is a pool of worker processes the
    caller opened, and perhaps started, before (:mod:`hcs_batch.server.worker_pool`): the server runs its wells
    there, and the pool stays the caller's; ``workers`` and ``max_wells_per_worker`` are then the pool's.

    Raises:
        InputError: ``server`` is not of the form ``tcp://HOST:PORT`` (before any connection attempt).
        ServerUnreachableError: nothing answered at ``server`` within ``connect_timeout`` (also what a server
            that does not accept our keys looks like: it completes no handshake).
        SecurityError: the key folder is missing or unreadable.
        InputError: the embedded server's executor options are refused (e.g. an unreachable Dask scheduler);
            ``embedded`` is not one of ``EMBEDDED_MODES``; a ``worker_pool`` with ``embedded="process"`` (or
            with a named ``server``, ``workers``, ``max_wells_per_worker`` or ``executor="dask"``).
        ServerUnreachableError: a child server did not start listening within ``SERVER_START_TIMEOUT``.
    """
    if embedded not in EMBEDDED_MODES:
        raise InputError(f"embedded must be one of {', '.join(EMBEDDED_MODES)}, got {embedded!r}")
    if worker_pool is not None and (server is not None or embedded == "process"):
        raise InputError("a worker pool serves an embedded server in this process only")
    if server is not None:
        check_server_url(server)
        options = load_client_keys(keys).socket_options() if keys is not None else {}
        async with open_connection(
            server, connect_timeout=connect_timeout, liveness_timeout=liveness_timeout, socket_options=options
        ) as connection:
            yield connection
        return
    options = {
        "workers": workers,
        "max_wells_per_worker": max_wells_per_worker,
        "allow_steps": list(allow_steps),
        "data_roots": [str(root) for root in data_roots],
        "output_roots": [str(root) for root in output_roots],
        "executor": executor,
        "scheduler": scheduler,
        "scheduler_file": scheduler_file,
    }
    if embedded == "process":
        async with (
            _open_server_process(options) as (url, token),
            open_connection(url, connect_timeout=connect_timeout, liveness_timeout=liveness_timeout) as connection,
        ):
            connection.shutdown_token = token
            yield connection
        return
    from .server import open_embedded_server  # the server layer only when a host embeds one in this run

    async with (
        open_embedded_server(**options, worker_pool=worker_pool) as address,
        open_connection(
            address.control_url, connect_timeout=connect_timeout, liveness_timeout=liveness_timeout
        ) as connection,
    ):
        connection.shutdown_token = address.shutdown_token
        yield connection


@asynccontextmanager
async def _open_server_process(options: dict[str, object]) -> AsyncIterator[tuple[str, str]]:
    """Start ``python -m hcs_batch.server.child`` and yield its control URL and shutdown token once it listens.

    The child imports from this process's ``sys.path``, runs in a session of its own (a terminal's Ctrl-C is ours
    to handle) and stops when its stdin closes; on exit we close it, wait up to ``SERVER_STOP_GRACE`` seconds
    (shielded), then kill the child.
    """
    command = [sys.executable, "-m", "hcs_batch.server.child", json.dumps(options)]
    # The same code as this process: its import path (which a host or a test runner may have extended) first.
    path = [entry for entry in sys.path if entry]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        assert process.stdout is not None
        with trio.move_on_after(SERVER_START_TIMEOUT):
            line = await _first_line(process.stdout)
        try:
            ready = json.loads(line) if line else {}
        except ValueError:
            ready = {}
        if "error" in ready:
            raise InputError(str(ready["error"]))
        if not isinstance(ready.get("control_url"), str) or not isinstance(ready.get("shutdown_token"), str):
            raise ServerUnreachableError(
                f"the embedded server process did not start within {SERVER_START_TIMEOUT:g} s "
                f"(exit code {process.returncode}); run 'hcs-batch serve' to see why"
            )
        yield ready["control_url"], ready["shutdown_token"]
    finally:
        with trio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()  # the child's cue to stop
            with trio.move_on_after(SERVER_STOP_GRACE):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


async def _first_line(stream: trio.abc.ReceiveStream) -> bytes:
    """Bytes up to the first newline (or the end of the stream), at most 64 KiB."""
    data = b""
    while b"\n" not in data and len(data) < 65536:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]
