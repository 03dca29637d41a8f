"""Shared helpers for the server tests."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import trio

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


async def seconds_to_cancel(conn: ServerConnection, execution_id: str) -> float:
    """Cancel ``execution_id`` and return the seconds until its ``cancelled`` state event (asserting the server
    cancelled it and that this is the state it reports)."""
    async with conn.open_event_stream() as events:
        assert (await conn.cancel([execution_id])).cancelled == [execution_id]
        asked = trio.current_time()
        async for event in events:
            if isinstance(event, p.StateEvent) and event.execution_id == execution_id:
                assert event.state == "cancelled"
                break
        return trio.current_time() - asked


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file."""
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows
