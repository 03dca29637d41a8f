"""``hcs-batch status | attach``: a server's status and execution records, and following live executions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import msgspec
import trio

from ..connect import open_backend
from ..protocol import StateEvent
from .exits import EXIT_OK

__all__ = ["main_attach", "main_status"]


def main_status(args: argparse.Namespace) -> int:
    """``hcs-batch status``: print the server's status (``--json``: one object); 0."""
    return trio.run(_status, args)


def main_attach(args: argparse.Namespace) -> int:
    """``hcs-batch attach``: see :func:`_attach`."""
    return trio.run(_attach, args)



async def _status(args: argparse.Namespace) -> int:
    async with open_backend(args.server, keys=args.keys) as backend:
        info = await backend.server_info(records=True)
    if args.json:
        print(json.dumps(msgspec.to_builtins(info), indent=2))
        return EXIT_OK
    print(
        f"server {info.instance} up {info.uptime:.0f} s: {info.workers} workers ({info.busy_workers} busy), "
        f"{info.queued} queued, {info.running} running"
    )
    for record in info.executions:
        line = (
            f"  {record.execution_id}  {record.plate_name:<20} {record.state:<10} "
            f"{record.wells_done}/{record.wells_total} wells"
        )
        print(line + (f"  {record.error}" if record.error else ""))
    if info.executions_omitted:
        print(f"  ({info.executions_omitted} older finished executions not shown)")
    return EXIT_OK


async def _attach(args: argparse.Namespace) -> int:
    """Follow the executions still live on a server until each is terminal, then print their outcomes.

    Executions whose client died keep running on the server: this is how a restarted client finds them.
    Returns 0 when every followed execution completed, 1 when one failed or was cancelled; a server lost or
    restarted meanwhile raises its ``TransportError`` (one line on stderr, exit 1).
    """
    async with open_backend(args.server, keys=args.keys) as backend:
        info = await backend.server_info(records=True)
        live = [r.execution_id for r in info.executions if r.state in ("queued", "running")]
        # On stderr even with --json (stdout stays one JSON object): tells a watcher that attach is following.
        print(f"following {len(live)} live executions on {args.server}", file=sys.stderr, flush=True)
        final: dict[str, Any] = {}
        async with backend.open_event_stream() as events:
            pending = set(live)
            while pending:
                records, unknown = await backend.status(sorted(pending))
                for record in records:
                    if record.state not in ("queued", "running"):
                        final[record.execution_id] = msgspec.to_builtins(record)
                        pending.discard(record.execution_id)
                pending -= set(unknown)
                if pending:
                    # Wake on the first state event of a followed execution; poll again at least every second.
                    with trio.move_on_after(1.0):
                        async for item in events:
                            if isinstance(item, StateEvent) and item.execution_id in pending:
                                break
                if backend.lost is not None:
                    raise backend.lost
        records_out = list(final.values())
    if args.json:
        print(json.dumps({"executions": records_out}, indent=2))
    else:
        for record in records_out:
            print(f"{record['execution_id']}  {record['plate_name']}  {record['state']}  {record['error']}")
    failed = any(r["state"] != "completed" for r in records_out)
    return 1 if failed else EXIT_OK
