"""The server's stores: compile artifacts (bounded in number, evicted by age) and execution records (the live
state of every execution, kept for ``Status`` and ``ServerInfo(records=True)``).

Live executions are always kept; finished ones are evicted after ``max_age`` seconds or, beyond ``max_finished``,
oldest first. Neither store is thread-safe: Trio thread only.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import trio

from .. import protocol as p
from .._util import clip_text
from ..errors import ArtifactNotFoundError
from ..model import ExecutionState
from .compiler import Plan

__all__ = ["ArtifactStore", "Execution", "RecordStore"]

V = TypeVar("V")


def _evict_oldest(entries: OrderedDict[str, V], max_items: int, horizon: float, stamp: Callable[[V], float]) -> None:
    """Drop the oldest ``entries`` (insertion order) beyond ``max_items``, then those whose ``stamp`` is before
    ``horizon`` (stamps grow in insertion order)."""
    while len(entries) > max_items:
        entries.popitem(last=False)
    while entries and stamp(next(iter(entries.values()))) < horizon:
        entries.popitem(last=False)


class ArtifactStore:
    """Plans by artifact id. An artifact lives ``max_age`` seconds from its last compile; beyond ``max_items``
    the oldest go first. Executing an artifact does not extend its life. Not thread-safe: Trio thread only.
    """

    def __init__(
        self, *, max_items: int = 100_000, max_age: float = 24 * 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._plans: OrderedDict[str, tuple[float, Plan]] = OrderedDict()
        self._max_items = max_items
        self._max_age = max_age
        self._clock = clock

    def __len__(self) -> int:
        return len(self._plans)

    def put(self, plan: Plan) -> None:
        """Store ``plan`` (again): its age restarts, and the oldest artifacts beyond the bound are dropped."""
        self._plans[plan.artifact_id] = (self._clock(), plan)
        self._plans.move_to_end(plan.artifact_id)
        self.evict()

    def get(self, artifact_id: str) -> Plan:
        """The plan stored under ``artifact_id``.

        Raises:
            ArtifactNotFoundError: never compiled here, evicted, or expired.
        """
        self.evict()
        entry = self._plans.get(artifact_id)
        if entry is None:
            raise ArtifactNotFoundError(
                f"compile artifact {artifact_id} is unknown or expired on this server; compile the plate again"
            )
        return entry[1]

    def evict(self) -> None:
        """Drop artifacts older than ``max_age`` and the oldest beyond ``max_items``."""
        _evict_oldest(self._plans, self._max_items, self._clock() - self._max_age, lambda entry: entry[0])


class Execution:
    """The mutable server-side state of one execution (Trio thread only); :meth:`record` snapshots it.

    ``state`` is the life cycle (queued, running, terminal); ``paused`` is set by a ``Pause`` request: a live
    paused execution reports :attr:`shown_state` ``paused`` and starts no new well until :meth:`resume`.
    """

    __slots__ = (
        "artifact_id",
        "cancel_scope",
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

    def __init__(self, *, artifact_id: str, plate_name: str, wells_total: int, output: str) -> None:
        self.execution_id = uuid.uuid4().hex
        self.artifact_id = artifact_id
        self.plate_name = plate_name
        self.state = ExecutionState.QUEUED
        self.error = ""
        self.wells_done = 0
        self.wells_total = wells_total
        self.wells_skipped = 0
        self.output = output
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
        return p.execution_record(
            self,
            state=self.shown_state,
            error=clip_text(self.error, p.MAX_ERROR_BYTES),
            wells_total=self.wells_total,
            wells_skipped=self.wells_skipped,
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

    def live(self) -> list[Execution]:
        """The executions not yet terminal (a copy: pausing one may publish, which must not mutate this)."""
        return list(self._live.values())

    def all(self) -> list[Execution]:
        self.evict()
        return [*self._finished.values(), *self._live.values()]

    def evict(self) -> None:
        horizon = self._clock() - self._max_age
        _evict_oldest(self._finished, self._max_finished, horizon, lambda execution: execution.finished_mono)
