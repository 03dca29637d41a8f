"""Execution records: the live state of every execution, kept for ``Status`` and ``ServerInfo(records=True)``.

Live executions are always kept; finished ones are evicted after ``max_age`` seconds or, beyond ``max_finished``,
oldest first.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator

import trio

from .. import protocol as p
from ..model import ExecutionState

__all__ = ["MAX_RECORD_ERROR", "Execution", "RecordStore"]

MAX_RECORD_ERROR = 8192
"""UTF-8 bytes of an execution's error kept in its record: bounds a record's size (see ``STATUS_CHUNK``)."""


def _clip(text: str) -> str:
    if len(text) <= MAX_RECORD_ERROR // 4:
        return text  # cannot be over the limit: the common case costs no encoding
    return text.encode()[:MAX_RECORD_ERROR].decode(errors="ignore")


class Execution:
    """The mutable server-side state of one execution (Trio thread only); :meth:`record` snapshots it.

    ``state`` is the life cycle (queued, running, terminal); ``paused`` is set by a ``Pause`` request: a live
    paused execution reports :attr:`shown_state` ``paused`` and starts no new well until :meth:`resume`.
    """

    __slots__ = (
        "artifact_id",
        "cancel_scope",
        "client_tag",
        "error",
        "execution_id",
        "finished_at",
        "finished_mono",
        "output",
        "paused",
        "plate_name",
        "resumed",
        "state",
        "submitted_at",
        "wells_done",
        "wells_skipped",
        "wells_total",
    )

    def __init__(self, *, artifact_id: str, plate_name: str, wells_total: int, output: str, client_tag: str) -> None:
        self.execution_id = uuid.uuid4().hex
        self.artifact_id = artifact_id
        self.plate_name = plate_name
        self.state = ExecutionState.QUEUED
        self.error = ""
        self.wells_done = 0
        self.wells_total = wells_total
        self.wells_skipped = 0
        self.output = output
        self.client_tag = client_tag
        self.submitted_at = time.time()
        self.finished_at = 0.0
        self.finished_mono = 0.0
        self.cancel_scope = trio.CancelScope()
        self.paused = False
        self.resumed = trio.Event()

    @property
    def shown_state(self) -> ExecutionState:
        """What status records and state events say: ``paused`` for a live paused execution, else ``state``."""
        if self.paused and not self.state.is_terminal:
            return ExecutionState.PAUSED
        return self.state

    def pause(self) -> bool:
        """Mark paused; False when it already was (or is terminal)."""
        if self.paused or self.state.is_terminal:
            return False
        self.paused = True
        self.resumed = trio.Event()
        return True

    def resume(self) -> bool:
        """Clear the pause and wake whatever waits in :meth:`wait_unpaused`; False when it was not paused."""
        if not self.paused:
            return False
        self.paused = False
        self.resumed.set()
        return True

    async def wait_unpaused(self) -> None:
        """Return at once when not paused, else when resumed. Cancellation: just stops waiting."""
        while self.paused:
            await self.resumed.wait()

    def record(self) -> p.ExecutionRecord:
        return p.ExecutionRecord(
            execution_id=self.execution_id,
            artifact_id=self.artifact_id,
            plate_name=self.plate_name,
            state=self.shown_state.value,
            error=_clip(self.error),
            wells_done=self.wells_done,
            wells_total=self.wells_total,
            wells_skipped=self.wells_skipped,
            output=self.output,
            submitted_at=self.submitted_at,
            finished_at=self.finished_at,
        )


class RecordStore:
    """Executions by id; bounded for finished ones. Not thread-safe: Trio thread only."""

    def __init__(
        self, *, max_finished: int = 100_000, max_age: float = 24 * 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._live: dict[str, Execution] = {}
        self._finished: OrderedDict[str, Execution] = OrderedDict()
        self._max_finished = max_finished
        self._max_age = max_age
        self._clock = clock
        self.queued = 0
        self.running = 0

    def add(self, execution: Execution) -> None:
        self._live[execution.execution_id] = execution
        self.queued += 1

    def get(self, execution_id: str) -> Execution | None:
        found = self._live.get(execution_id)
        return found if found is not None else self._finished.get(execution_id)

    def mark_running(self, execution: Execution) -> None:
        execution.state = ExecutionState.RUNNING
        self.queued -= 1
        self.running += 1

    def finish(self, execution: Execution, state: ExecutionState, error: str = "") -> None:
        """Move ``execution`` to a terminal ``state`` (once; later calls are ignored)."""
        if execution.state.is_terminal:
            return
        if execution.state is ExecutionState.QUEUED:
            self.queued -= 1
        else:
            self.running -= 1
        execution.state = state
        execution.error = error
        execution.finished_at = time.time()
        execution.finished_mono = self._clock()
        self._live.pop(execution.execution_id, None)
        self._finished[execution.execution_id] = execution
        self.evict()

    def live(self) -> Iterator[Execution]:
        return iter(list(self._live.values()))

    def all(self) -> list[Execution]:
        self.evict()
        return [*self._finished.values(), *self._live.values()]

    def evict(self) -> None:
        finished = self._finished
        while len(finished) > self._max_finished:
            finished.popitem(last=False)
        horizon = self._clock() - self._max_age
        while finished:
            oldest = next(iter(finished.values()))
            if oldest.finished_mono >= horizon:
                break
            finished.popitem(last=False)
