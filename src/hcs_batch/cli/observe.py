"""``hcs-batch status | attach``: a server's status and execution records, and following live executions."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

import msgspec
import trio

from .._util import check_server_url
from ..connect import open_backend
from ..model import ExecutionState
from ..protocol import ExecutionRecord, ServerInfoReply
from ..workflow.follow import LIVE_STATES, ExecutionFollower
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error

__all__ = ["main_attach", "main_status", "status_json"]


def main_status(args: argparse.Namespace) -> int:
    """``hcs-batch status``: print the server's status (``--json``: ``{"server": {...}, "executions": [...]}``);
    0. Without ``--server`` it lists this user's servers (never starts one) and returns 2."""
    if args.server is None:
        return _status_without_server()
    check_server_url(args.server)
    return trio.run(_status, args)


def main_attach(args: argparse.Namespace) -> int:
    """``hcs-batch attach``: see :func:`_attach`."""
    check_server_url(args.server)
    return trio.run(_attach, args)


def _iso(timestamp: float) -> str | None:
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def _execution_json(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "execution_id": record.execution_id,
        "plate": record.plate_name,
        "state": record.state,
        "wells_done": record.wells_done,
        "wells_total": record.wells_total,
        "wells_skipped": record.wells_skipped,
        "error": record.error,
        "output": record.output,
        "artifact_id": record.artifact_id,
        "submitted_at": _iso(record.submitted_at),
        "finished_at": _iso(record.finished_at),
    }


def status_json(url: str, info: ServerInfoReply) -> dict[str, Any]:
    """``{"server": {...}, "executions": [...]}``: a server's status as data (no protocol fields)."""
    return {
        "server": {
            "url": url,
            "instance": info.instance,
            "version": info.version,
            "uptime": round(info.uptime, 3),
            "workers": info.workers,
            "busy_workers": info.busy_workers,
            "queued": info.queued,
            "running": info.running,
            "executions_omitted": info.executions_omitted,
        },
        "executions": [_execution_json(record) for record in info.executions],
    }


async def _status(args: argparse.Namespace) -> int:
    async with open_backend(args.server, keys=args.keys) as backend:
        info = await backend.server_info(records=True)
    if args.json:
        print(json.dumps(status_json(args.server, info), indent=2))
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


def _status_without_server() -> int:
    """``status`` names no server: list this user's servers (never start a throwaway one), exit 2."""
    from ..server.registry import read_entries

    entries = read_entries()
    if entries:
        print("servers on this machine (hcs-batch servers):")
        for entry in entries:
            print(f"  {entry.url}  pid {entry.pid}  started {entry.started_at}")
        error("name one: hcs-batch status --server URL")
    else:
        error("no server is running for this user here; start one with 'hcs-batch serve' or name one with --server URL")
    return EXIT_USAGE


async def _attach(args: argparse.Namespace) -> int:
    """Follow the executions still live on a server until each is terminal, then print their outcomes.

    Executions whose client died keep running on the server: this is how a restarted client finds them.
    Returns 0 when every followed execution completed, 1 when one failed or was cancelled; a server lost or
    restarted meanwhile raises its ``TransportError`` (one line on stderr, exit 1).
    """
    async with open_backend(args.server, keys=args.keys) as backend, backend.open_event_stream() as events:
        info = await backend.server_info(records=True)
        ended: list[str] = []  # in the order they ended, as printed

        def note_ends() -> None:
            ended.extend(r.execution_id for r in follower.rows() if not r.live and r.execution_id not in ended)

        # Wakes on the state events of followed executions; polls again at least every second.
        follower = ExecutionFollower(backend, on_change=note_ends, poll_interval=1.0, max_poll_interval=1.0)
        for record in info.executions:
            if record.state in LIVE_STATES:
                follower.follow_record(record)
        # On stderr even with --json (stdout stays one JSON object): tells a watcher that attach is following.
        print(f"following {len(follower.live_ids())} live executions on {args.server}", file=sys.stderr, flush=True)
        await follower.serve(events, until_settled=True)
        if backend.lost is not None:
            raise backend.lost
        records, _unknown = await backend.status(ended) if ended else ([], [])
        records_out: list[dict[str, Any]] = [msgspec.to_builtins(record) for record in records]
    if args.json:
        print(json.dumps({"executions": records_out}, indent=2))
    else:
        for out in records_out:
            print(f"{out['execution_id']}  {out['plate_name']}  {out['state']}  {out['error']}")
    failed = any(out["state"] != ExecutionState.COMPLETED for out in records_out)
    return EXIT_FAILED if failed else EXIT_OK
