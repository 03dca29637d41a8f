"""A host's embedded server in a process of its own: ``python -m hcs_batch.server.child OPTIONS_JSON``.

Started by :func:`hcs_batch.connect.open_backend` with ``embedded="process"`` (the GUI does: the server's compile,
execution and file work and its objects then cost the GUI thread nothing), never by a user.

Promises:

- ``OPTIONS_JSON`` is an object with the keyword arguments of :func:`~hcs_batch.server.serve.open_embedded_server`
  that are plain data (``workers``, ``max_wells_per_worker``, ``allow_steps``, ``data_roots``, ``output_roots``,
  ``executor``, ``scheduler``, ``scheduler_file``); any other key is refused.
- The server binds a free loopback port; once it listens, exactly one JSON line goes to stdout:
  ``{"control_url": ..., "events_port": ..., "shutdown_token": ...}`` (the token reaches only the parent, through
  its pipe). A server that cannot start writes ``{"error": "<one line>"}`` instead and exits with 2.
- The parent owns the lifetime: when stdin reaches end of file (the parent closed it, exited or died) the server
  stops as on a ``Shutdown`` (executions cancelled, workers stopped) and the process exits with 0. A ``Shutdown``
  carrying the token stops it too. SIGINT is ignored: a Ctrl-C in the terminal is the parent's to handle (it
  still needs the server to cancel its batch).
- It runs at a lower scheduling priority than its parent (:data:`NICENESS`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import Any

import trio

from .._util import collapse_single_exception_group
from ..errors import HcsBatchError

__all__ = ["NICENESS", "OPTIONS", "main"]

NICENESS = 10
"""How much lower than its parent's the server's scheduling priority is (its workers inherit it): on a busy machine
the kernel runs the GUI thread first, so the server's work does not stretch the GUI's ticks; an idle GUI leaves the
server every core."""

OPTIONS = frozenset(
    {
        "workers",
        "max_wells_per_worker",
        "allow_steps",
        "data_roots",
        "output_roots",
        "executor",
        "scheduler",
        "scheduler_file",
    }
)
"""The option names a parent may pass."""


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _wait_for_end_of_stdin() -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while await stream.receive_some(4096):
            pass


async def _serve(options: dict[str, Any]) -> None:
    import secrets

    from .serve import serve

    stop = trio.Event()
    token = secrets.token_urlsafe(24)
    with collapse_single_exception_group():
        async with trio.open_nursery() as nursery:

            async def run_server(*, task_status: trio.TaskStatus[Any]) -> None:
                await serve("tcp://127.0.0.1:0", shutdown_token=token, stop=stop, task_status=task_status, **options)
                nursery.cancel_scope.cancel()  # stopped by a Shutdown: stop watching stdin

            address = await nursery.start(run_server)
            _say({"control_url": address.control_url, "events_port": address.events_port, "shutdown_token": token})
            await _wait_for_end_of_stdin()
            stop.set()  # the parent is gone or done: stop as on a Shutdown


def main(argv: list[str]) -> int:
    """Serve until stdin closes; returns the exit code (0 stopped, 2 could not start)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # not every platform or container lets a process change its priority
        os.nice(NICENESS)
    try:
        options = json.loads(argv[0]) if argv else {}
        if not isinstance(options, dict) or not OPTIONS.issuperset(options):
            raise ValueError(f"expected a JSON object with keys from {sorted(OPTIONS)}")
    except ValueError as exc:
        _say({"error": f"bad options for the embedded server: {exc}"})
        return 2
    try:
        trio.run(_serve, options)
    except HcsBatchError as exc:
        _say({"error": str(exc)})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
