"""The control commands: ``hcs-batch pause | resume | cancel | servers | shutdown`` (``status``: :mod:`.observe`).

They act on a running server (``--server URL``), never start one. Output is one line per execution or server
(``--json``: one JSON document on stdout). Exit codes: 0 done; 1 some named execution is unknown to the server
(named on stderr), or the server refused; 2 bad usage (e.g. ``status`` without ``--server``); 3 unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import trio

from ..errors import SecurityError, TransportError
from .exits import EXIT_FAILED, EXIT_OK, error

if TYPE_CHECKING:
    from ..server.registry import ServerEntry

# The transport (zmq) and the server package are imported inside the commands that use them: building the parser,
# which every hcs-batch command does, must not load them.

__all__ = ["add_control_parsers", "main_control"]

_QUERY_TIMEOUT = 2.0
"""Seconds ``servers`` waits for each listed server's counts (they are asked all at once)."""
_SHUTDOWN_WAIT = 60.0
"""Seconds ``shutdown`` waits for a signalled server process to exit (it cancels its executions first)."""


def add_control_parsers(sub: Any) -> None:
    """Add the control commands (not ``status``) to the ``hcs-batch`` subparsers ``sub``."""

    def server_option(p: argparse.ArgumentParser, *, required: bool = True) -> None:
        p.add_argument("--server", required=required, default=None, help="server URL, e.g. tcp://127.0.0.1:7700")
        p.add_argument("--keys", default=None, help="CurveZMQ key folder for a server that requires keys")

    for name, verb in (("pause", "pause"), ("resume", "resume")):
        p = sub.add_parser(name, help=f"{verb} executions on a server (all live ones when no ID is given)")
        server_option(p)
        p.add_argument("ids", nargs="*", metavar="ID", help="execution ids (default: every live execution)")
    cancel = sub.add_parser("cancel", help="cancel exactly the named executions on a server")
    server_option(cancel)
    cancel.add_argument("ids", nargs="+", metavar="ID", help="execution ids")
    servers = sub.add_parser("servers", help="list the servers this user runs on this machine")
    servers.add_argument("--json", action="store_true", help="print a JSON list of servers")
    servers.add_argument("--keys", default=None, help="CurveZMQ key folder, to ask servers that require keys")
    shutdown = sub.add_parser("shutdown", help="stop a server (a signal to a local one this user started)")
    server_option(shutdown)


def main_control(args: argparse.Namespace) -> int:
    """Run one control command; returns its exit code (errors: :func:`.exits.guarded`)."""
    if args.command == "servers":
        return trio.run(_servers, args)
    if args.command == "shutdown":
        return trio.run(_shutdown, args)
    return trio.run(_ON_SERVER[args.command], args)


# ---------------------------------------------------------------------------------------------- executions


async def _pause(args: argparse.Namespace) -> int:
    from ..connect import open_backend

    paused = args.command == "pause"
    async with open_backend(args.server, keys=args.keys) as backend:
        reply = await backend.pause(args.ids, paused=paused)
    done = "paused" if paused else "resumed"
    for execution_id in reply.changed:
        print(f"{execution_id}: {done}")
    for execution_id in reply.unchanged:
        print(f"{execution_id}: {'already paused' if paused else 'was not paused'}")
    for execution_id in reply.already_terminal:
        print(f"{execution_id}: already finished")
    if not args.ids and not reply.changed and not reply.unchanged:
        print(f"no live executions to {args.command}")
    return _unknown(reply.unknown)


async def _cancel(args: argparse.Namespace) -> int:
    from ..connect import open_backend

    async with open_backend(args.server, keys=args.keys) as backend:
        reply = await backend.cancel(args.ids)
        records, _ = await backend.status(reply.already_terminal) if reply.already_terminal else ([], [])
    states = {record.execution_id: record.state for record in records}
    for execution_id in reply.cancelled:
        print(f"{execution_id}: cancelled")
    for execution_id in reply.already_terminal:
        print(f"{execution_id}: already {states.get(execution_id, 'finished')}")
    return _unknown(reply.unknown)


def _unknown(ids: list[str]) -> int:
    if not ids:
        return EXIT_OK
    error(f"unknown to the server (finished long ago, or a typo): {', '.join(ids)}")
    return EXIT_FAILED


# ---------------------------------------------------------------------------------------------- servers


async def _counts(entry: ServerEntry, keys: str | None) -> tuple[int, int] | None:
    from ..connect import open_backend

    if entry.curve and keys is None:
        return None
    try:
        async with open_backend(entry.url, keys=keys, connect_timeout=_QUERY_TIMEOUT) as backend:
            with trio.move_on_after(_QUERY_TIMEOUT):
                info = await backend.server_info()
                return info.queued, info.running
    except (TransportError, SecurityError):
        pass
    return None


async def _servers(args: argparse.Namespace) -> int:
    from ..server.registry import read_entries

    entries = read_entries()
    counts: dict[int, tuple[int, int] | None] = {}

    async def ask(index: int, entry: ServerEntry) -> None:
        counts[index] = await _counts(entry, args.keys)

    async with trio.open_nursery() as nursery:
        for index, entry in enumerate(entries):
            nursery.start_soon(ask, index, entry)
    rows = []
    for index, entry in enumerate(entries):
        known = counts.get(index)
        rows.append(
            {
                "url": entry.url,
                "pid": entry.pid,
                "started_at": entry.started_at,
                "executor": entry.executor,
                "workers": entry.workers,
                "queued": None if known is None else known[0],
                "running": None if known is None else known[1],
                "reachable": known is not None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no hcs-batch servers of this user on this machine (start one with 'hcs-batch serve')")
    for row in rows:
        load = (
            f"{row['queued']} queued, {row['running']} running"
            if row["reachable"]
            else "not answering (or needs --keys)"
        )
        print(f"{row['url']}  pid {row['pid']}  started {row['started_at']}  {row['executor']}  {load}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- shutdown


def _local(url: str) -> bool:
    return any(host in url for host in ("//127.", "//localhost:", "//[::1]:"))


async def _wait_gone(pid: int, limit: float) -> bool:
    """Wait (a bounded poll: the process is not our child) until ``pid`` no longer exists."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not _exists(pid):
            return True
        await trio.sleep(0.05)
    return False


def _exists(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (an exited one its parent has not reaped yet is a
    zombie: it has stopped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no procfs: the signal test is all we have


async def _shutdown(args: argparse.Namespace) -> int:
    """SIGTERM to a local server this user registered (the server's own clean stop); otherwise a ``Shutdown``
    request, which the server may refuse."""
    from ..connect import open_backend
    from ..server.registry import find_entry

    entry = find_entry(args.server) if _local(args.server) else None
    if entry is not None:
        try:
            os.kill(entry.pid, signal.SIGTERM)
        except ProcessLookupError:
            print(f"server {args.server} (pid {entry.pid}) had already stopped")
            return EXIT_OK
        if await _wait_gone(entry.pid, _SHUTDOWN_WAIT):
            print(f"stopped server {args.server} (pid {entry.pid})")
            return EXIT_OK
        error(f"server {args.server} (pid {entry.pid}) got SIGTERM but is still running after {_SHUTDOWN_WAIT:g} s")
        return EXIT_FAILED
    async with open_backend(args.server, keys=args.keys) as backend:
        await backend.shutdown()
    print(f"asked server {args.server} to shut down")
    return EXIT_OK


_ON_SERVER = {"pause": _pause, "resume": _pause, "cancel": _cancel}
