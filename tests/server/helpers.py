"""Shared helpers for the server tests."""

from __future__ import annotations

import csv
import io
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


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file."""
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows
