"""Shared helpers for the server tests (imported as a plain module: this folder is on sys.path)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from hcs_batch import protocol as p
from hcs_batch.client import ServerConnection

TERMINAL = {"completed", "failed", "cancelled"}


async def wait_terminal(conn: ServerConnection, execution_ids: Sequence[str]) -> dict[str, p.ExecutionRecord]:
    """Wait until every execution is terminal: re-check on every event (heartbeats arrive every second).

    The caller bounds it with ``trio.fail_after``.
    """
    async with conn.open_event_stream() as events:
        while True:
            records, unknown = await conn.status(execution_ids)
            assert not unknown
            if all(r.state in TERMINAL for r in records):
                return {r.execution_id: r for r in records}
            await events.receive()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def children_of(pid: int) -> set[int]:
    """Direct child pids of ``pid`` (from /proc)."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry))
    return found


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file."""
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows
