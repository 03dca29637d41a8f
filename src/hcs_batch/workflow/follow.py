"""``ExecutionFollower``: follow executions on one server to their ends; the one place that does it.

Used by the batch service (its executions), ``hcs-batch attach`` and the GUI's attached view (executions started
elsewhere), and the service's cancel-on-stop (:func:`follow_to_end`). State and progress events come first; the
batched polls of one :class:`~hcs_batch.runtime.ExecutionStatusPoller` are the fallback (a missed event, a gap).
One task routes events and one polls, however many executions are followed.

Every followed execution has one :class:`FollowedExecution` row, written only by :meth:`ExecutionFollower._apply`:
a row that has ended (a terminal state, :attr:`Ending.LOST` or :attr:`Ending.UNKNOWN`) never changes again, and
its progress never goes back.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from .._util import call_logged
from ..backend import ConnectionLost, EventGap, ExecutionBackend, StreamItem
from ..model import ExecutionState
from ..protocol import ExecutionRecord, ProgressEvent, StateEvent
from ..runtime import ExecutionStatusPoller, map_in_slices

__all__ = ["LIVE_STATES", "Ending", "ExecutionFollower", "FollowedExecution", "follow_to_end"]

log = logging.getLogger(__name__)

LIVE_STATES = frozenset({ExecutionState.QUEUED, ExecutionState.RUNNING, ExecutionState.PAUSED})
"""Execution states that are still going somewhere (``paused`` too: it is resumed, cancelled or lost later)."""

_EARLY_LIMIT = 4096
"""State events kept for ids not followed yet (they may overtake the reply that names the id)."""


class Ending(enum.StrEnum):
    """How following ended when the execution's own end could not be learned."""

    LOST = "lost"
    """The connection was lost (or the server stopped answering) while it was live: its fate is unknown here."""
    UNKNOWN = "unknown"
    """The server no longer knows the execution (its record was evicted, or it restarted)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowedExecution:
    """One followed execution as last seen."""

    execution_id: str
    plate_name: str = ""
    state: ExecutionState | Ending = ExecutionState.QUEUED
    error: str = ""
    percent: int = 0
    """0 to 100, from progress events or a record's ``wells_done``/``wells_total``; never goes back."""
    wells_total: int = 0
    wells_reused: int = 0
    """Wells whose results an earlier run of the same images and pipeline left (from a state event or record)."""

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def _percent(record: ExecutionRecord) -> int:
    if record.state is ExecutionState.COMPLETED:
        return 100
    return round(100 * record.wells_done / record.wells_total) if record.wells_total else 0


def _lost_error(timeout: float) -> Exception:
    return TimeoutError(f"server lost: no answer to status polls for {timeout:g} s")


def _ignore(*args: object) -> None:
    """A released follower's callbacks."""


class ExecutionFollower:
    """Follow executions (by id) on ``backend`` to their ends.

    Args:
        backend: the connected server.
        on_change: called (Trio thread) after rows changed; many changes may share one call.
        on_progress: called with every progress event of a followed execution.
        poll_interval, max_poll_interval: the fallback poll period and its ceiling (it backs off while nothing
            changes).
        request_timeout: bound on one status poll.
        liveness_timeout: when executions are live and neither a poll succeeded nor a state event came for this
            long, every live row ends :attr:`Ending.LOST` with ``liveness_error(timeout)``. The default (never)
            leaves liveness to the connection's heartbeat watchdog (``ConnectionLost`` in the event stream).

    Exceptions raised by the callbacks are logged and swallowed. Run :meth:`serve` with an event stream of
    ``backend`` opened before the executions to follow were listed or submitted, so no event is missed.
    """

    def __init__(
        self,
        backend: ExecutionBackend,
        *,
        on_change: Callable[[], object] = lambda: None,
        on_progress: Callable[[ProgressEvent], object] = lambda event: None,
        poll_interval: float = 1.0,
        max_poll_interval: float = 5.0,
        request_timeout: float = 10.0,
        liveness_timeout: float = math.inf,
        liveness_error: Callable[[float], Exception] = _lost_error,
    ) -> None:
        self._backend = backend
        self._on_change = on_change
        self._on_progress = on_progress
        self._liveness_error = liveness_error
        self._rows: dict[str, FollowedExecution] = {}
        self._live = 0
        """How many rows are live: kept as a count so that 10,000 executions ending is linear, not quadratic."""
        self._changed_ids: dict[str, None] = {}
        self._ended: dict[str, trio.Event] = {}
        self._errors: dict[str, BaseException] = {}
        self._early: OrderedDict[str, StateEvent] = OrderedDict()
        self._settled = trio.Event()
        self._settled.set()
        self._poller: ExecutionStatusPoller[ExecutionState] = ExecutionStatusPoller(
            fetch=self._fetch,
            is_terminal=lambda state: state.is_terminal,
            interval=poll_interval,
            max_interval=max_poll_interval,
            request_timeout=request_timeout,
            liveness_timeout=liveness_timeout,
            liveness_error=self._lose_all,
            unknown_error=self._unknown,
        )

    async def release(self) -> None:
        """Forget every followed execution and stop reporting: for an owner done with this follower (nobody waits
        on it any more; what still arrives while it serves is treated as news of unknown executions).

        The poller and the owner's callbacks refer back to the follower, so it is freed only by the cyclic GC; a
        GUI that freezes the GC's survivors never frees it. Releasing lets reference counting free its rows (a few
        objects an execution, and whatever the callbacks hold): the follower starts afresh at once, the old rows
        are dropped in slices (10,000 at once would hold a guest tick). Not a cancellation point.
        """
        self._on_change = _ignore
        self._on_progress = _ignore
        old = (self._rows, self._changed_ids, self._ended, self._errors, self._early)
        self._rows, self._changed_ids, self._ended, self._errors = {}, {}, {}, {}
        self._early = OrderedDict()
        self._live = 0
        for table in old:
            await _drop_in_slices(table)

    # ------------------------------------------------------------------ views

    def rows(self) -> list[FollowedExecution]:
        """Every followed execution, in the order it was first followed."""
        return list(self._rows.values())

    def take_changed(self) -> list[FollowedExecution]:
        """The rows that changed since the last call (each once, in the order they first changed), for an
        ``on_change`` that must look at the changed rows only (a batch of 10,000 stays linear)."""
        changed = [self._rows[execution_id] for execution_id in self._changed_ids]
        self._changed_ids.clear()
        return changed

    def live_ids(self) -> list[str]:
        """The followed executions still live (queued, running or paused)."""
        return [row.execution_id for row in self._rows.values() if row.live]

    @property
    def settled(self) -> bool:
        """No followed execution is live (true before anything is followed)."""
        return self._settled.is_set()

    # ------------------------------------------------------------------ following

    def follow(self, execution_id: str, plate_name: str = "") -> None:
        """Start following ``execution_id`` (idempotent); a state event that overtook this call applies now."""
        if execution_id in self._rows:
            return
        self._add(FollowedExecution(execution_id=execution_id, plate_name=plate_name))
        early = self._early.pop(execution_id, None)
        if early is not None:
            self._apply(
                execution_id, state=early.state, error=early.error, wells=(early.wells_total, early.wells_skipped)
            )

    def follow_record(self, record: ExecutionRecord) -> None:
        """Start following the execution of ``record`` (a listing), from the state and progress it shows."""
        if record.execution_id in self._rows:
            return
        self._add(
            FollowedExecution(
                execution_id=record.execution_id,
                plate_name=record.plate_name,
                state=record.state,
                error=record.error,
                percent=_percent(record),
                wells_total=record.wells_total,
                wells_reused=record.wells_skipped,
            )
        )

    def poll_now(self) -> None:
        """Poll every live execution as soon as possible (something may have been missed)."""
        self._poller.poll_now()

    async def wait(self, execution_id: str) -> FollowedExecution:
        """Wait until the followed ``execution_id`` has ended; return its row when its terminal state is known.

        Raises the error that ended following it instead (``ConnectionLost.error``, the liveness error, or a
        ``LookupError`` when the server no longer knows it), and ``KeyError`` for an id not followed.
        Cancellation leaves the row as it is.
        """
        await self._ended[execution_id].wait()
        error = self._errors.get(execution_id)
        if error is not None:
            raise error
        return self._rows[execution_id]

    async def wait_settled(self) -> None:
        """Wait until no followed execution is live."""
        while not self._settled.is_set():
            await self._settled.wait()

    async def serve(
        self,
        events: trio.MemoryReceiveChannel[StreamItem],
        *,
        until_settled: bool = False,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Route ``events`` and poll until cancelled (``until_settled``: until nothing followed is live).

        Also returns when ``events`` ends (after a ``ConnectionLost``, every live row has ended lost). Never
        raises for a server error.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self._poller.serve)
            task_status.started()
            if not (until_settled and self.settled):
                await self._route(events, until_settled=until_settled)
            nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ inputs

    async def _route(self, events: trio.MemoryReceiveChannel[StreamItem], *, until_settled: bool) -> None:
        async for item in events:
            if isinstance(item, StateEvent):
                if item.execution_id in self._rows:
                    wells = (item.wells_total, item.wells_skipped)
                    self._apply(item.execution_id, state=item.state, error=item.error, wells=wells)
                else:
                    self._early[item.execution_id] = item
                    while len(self._early) > _EARLY_LIMIT:
                        self._early.popitem(last=False)
            elif isinstance(item, ProgressEvent):
                if item.execution_id in self._rows:
                    call_logged(log, "following", self._on_progress, item)
                    if item.total:
                        self._apply(item.execution_id, percent=round(100 * item.done / item.total))
            elif isinstance(item, EventGap):
                self._poller.poll_now()
            elif isinstance(item, ConnectionLost):
                self._end_live(Ending.LOST, item.error)
            if until_settled and self.settled:
                return

    async def _fetch(self, execution_ids: Sequence[str]) -> dict[str, ExecutionState]:
        """The poller's one batched request; applies every record to the rows as it goes, in slices (a poll of
        10,000 executions must not hold one guest tick; a row that ended meanwhile is never changed again)."""
        records, _unknown = await self._backend.status(execution_ids)

        def apply(record: ExecutionRecord) -> None:
            if record.execution_id in self._rows:
                wells = (record.wells_total, record.wells_skipped)
                self._apply(
                    record.execution_id, state=record.state, error=record.error, percent=_percent(record), wells=wells
                )

        await map_in_slices(apply, records)
        return {record.execution_id: record.state for record in records}

    def _lose_all(self, timeout: float) -> Exception:
        """The poller's liveness rule fired: every live row ends lost with this error."""
        error = self._liveness_error(timeout)
        self._end_live(Ending.LOST, error)
        return error

    def _unknown(self, execution_id: str, polls: int) -> Exception:
        """The poller's unknown rule fired for one id."""
        error = LookupError(f"the server no longer knows execution {execution_id} ({polls} polls)")
        self._end(execution_id, Ending.UNKNOWN, error)
        return error

    # ------------------------------------------------------------------ the one row writer

    def _add(self, row: FollowedExecution) -> None:
        self._rows[row.execution_id] = row
        self._changed_ids[row.execution_id] = None
        self._ended[row.execution_id] = trio.Event()
        if row.live:
            self._live += 1
            if self._settled.is_set():
                self._settled = trio.Event()
            self._poller.track(row.execution_id)
        else:
            self._ended[row.execution_id].set()
        self._changed()

    def _end_live(self, ending: Ending, error: BaseException) -> None:
        for execution_id in self.live_ids():
            self._end(execution_id, ending, error)

    def _end(self, execution_id: str, ending: Ending, error: BaseException) -> None:
        self._errors[execution_id] = error
        self._apply(execution_id, state=ending, error=str(error))

    def _apply(
        self,
        execution_id: str,
        *,
        state: ExecutionState | Ending | None = None,
        error: str = "",
        percent: int = -1,
        wells: tuple[int, int] = (0, 0),
    ) -> None:
        """Apply what was learned; a row that has ended never changes again. ``wells``: (total, reused), 0 unknown."""
        row = self._rows[execution_id]
        if not row.live:
            return
        new = row
        if wells[0] and wells != (row.wells_total, row.wells_reused):
            new = dataclasses.replace(new, wells_total=wells[0], wells_reused=wells[1])
        if state is not None and state != row.state:
            new = dataclasses.replace(new, state=state, error=error)
        if new.state is ExecutionState.COMPLETED:
            percent = 100
        if percent > new.percent:
            new = dataclasses.replace(new, percent=min(percent, 100))
        if new == row:
            return
        self._rows[execution_id] = new
        self._changed_ids[execution_id] = None
        if not new.live:
            self._live -= 1
            self._poller.forget(execution_id)
            self._ended[execution_id].set()
            if not self._live:
                self._settled.set()
        self._changed()

    def _changed(self) -> None:
        call_logged(log, "following", self._on_change)


async def _drop_in_slices(table: dict[str, Any]) -> None:
    """Empty ``table`` a slice at a time: what its values free goes over several guest ticks."""

    def drop(_: int) -> None:
        table.popitem()  # the item is not returned: map_in_slices would keep every one alive until the end

    await map_in_slices(drop, range(len(table)))


async def follow_to_end(
    backend: ExecutionBackend,
    execution_ids: Iterable[str],
    *,
    events: trio.MemoryReceiveChannel[StreamItem],
    poll_interval: float = 1.0,
    max_poll_interval: float = 5.0,
    request_timeout: float = 10.0,
) -> list[FollowedExecution]:
    """Follow ``execution_ids`` on ``backend`` (``events``: a stream of it, opened before the ids were learned)
    until none is live; returns their rows. Callers bound it (``trio.move_on_after``)."""
    follower = ExecutionFollower(
        backend, poll_interval=poll_interval, max_poll_interval=max_poll_interval, request_timeout=request_timeout
    )
    for execution_id in execution_ids:
        follower.follow(execution_id)
    await follower.serve(events, until_settled=True)
    return follower.rows()
