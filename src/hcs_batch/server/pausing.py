"""Pause and resume: which executions a request names, and the gate a paused execution's wells wait at.

A paused execution keeps its running wells (they finish and are reported) but starts no new one: every well
acquires a worker slot through :class:`PauseGate`, which holds the slot back while its execution is paused,
including a well that was already waiting for a worker when the pause came. Resuming wakes the waiting wells;
the execution goes on where it stopped (wells already done are not run again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

import trio

from .stores import Execution, RecordStore

__all__ = ["PauseGate", "PauseOutcome", "set_paused"]

PauseOutcome = tuple[list[str], list[str], list[str], list[str]]
"""(changed, unchanged, already terminal, unknown) execution ids."""


def set_paused(
    records: RecordStore, execution_ids: Iterable[str], *, paused: bool, publish: Callable[[Execution], None]
) -> PauseOutcome:
    """Pause (or resume) the named executions; with no ids, every live one. ``publish`` is called for each
    execution whose shown state changed, so a state event announces ``paused`` (or the state it resumed to)."""
    ids = list(execution_ids)
    targets: list[tuple[str, Execution | None]]
    if ids:
        targets = [(execution_id, records.get(execution_id)) for execution_id in ids]
    else:
        targets = [(execution.execution_id, execution) for execution in records.live()]
    changed: list[str] = []
    unchanged: list[str] = []
    terminal: list[str] = []
    unknown: list[str] = []
    for execution_id, execution in targets:
        if execution is None:
            unknown.append(execution_id)
        elif execution.state.is_terminal:
            terminal.append(execution_id)
        elif execution.pause() if paused else execution.resume():
            changed.append(execution_id)
            publish(execution)
        else:
            unchanged.append(execution_id)
    return changed, unchanged, terminal, unknown


class PauseGate:
    """A worker slot for one well of ``execution``: an async context manager standing in for the shared
    :class:`trio.CapacityLimiter` (trio-parallel only enters and exits its ``limiter``).

    Entering waits until the execution is not paused, then takes a slot; if a pause arrived while it waited
    for the slot, it gives the slot back (to other executions) and waits again. Cancellation: nothing is held.
    """

    __slots__ = ("_execution", "_limiter")

    def __init__(self, limiter: trio.CapacityLimiter, execution: Execution) -> None:
        self._limiter = limiter
        self._execution = execution

    async def __aenter__(self) -> None:
        while True:
            await self._execution.wait_unpaused()
            await self._limiter.acquire()
            if not self._execution.paused:
                return
            self._limiter.release()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._limiter.release()
