"""Executions started elsewhere, followed live: what the window shows when it connects (issue 6, reattach).

A client that went away (killed, or closed without Stop) leaves its executions running on the server. When the
window connects it asks the server for its execution records and follows the live ones (``queued``/``running``)
to their terminal state with :class:`AttachedExecutions`: state and progress events first, the batched polls of
one ``ExecutionStatusPoller`` as the fallback (a missed event, a gap). Two tasks follow all of them, however
many there are: the event router and the poller. Both end once nothing is live any more.

No Qt here: the window repaints from :meth:`AttachedExecutions.rows` when ``on_change`` fires.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from hcs_batch.backend import ConnectionLost, EventGap, ExecutionBackend, StreamItem
from hcs_batch.errors import HcsBatchError
from hcs_batch.model import ExecutionState
from hcs_batch.protocol import ExecutionRecord, ProgressEvent, StateEvent
from hcs_batch.runtime import ExecutionStatusPoller

__all__ = ["LIVE_STATES", "LOST", "UNKNOWN", "AttachedExecutions", "AttachedRow"]

log = logging.getLogger("guest_mode.attached")

LIVE_STATES = frozenset({ExecutionState.QUEUED.value, ExecutionState.RUNNING.value})
"""Execution states the window attaches to and follows."""

LOST = "lost"
"""Row state once the connection was lost while the execution was live (its fate is unknown here)."""

UNKNOWN = "unknown"
"""Row state once the server no longer knows the execution (its record was evicted)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedRow:
    """One execution started elsewhere, as last seen: an ``ExecutionState`` value, or :data:`LOST`/:data:`UNKNOWN`."""

    execution_id: str
    plate_name: str
    state: str
    percent: int = 0
    """0 to 100, from progress events or the record's ``wells_done``/``wells_total``; never goes back."""
    error: str = ""

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


class AttachedExecutions:
    """Follow the executions live on a server at connect time, to their terminal states.

    Args:
        backend: the connected server.
        on_change: called (in the Trio thread) after rows changed; many changes may share one call. Exceptions
            it raises are logged and swallowed.
        on_message: called with a line for the user (a failed listing or cancel); exceptions are swallowed.
        poll_interval, max_poll_interval: the fallback status poll period and its ceiling (backing off while
            nothing changes).
        request_timeout: bound on the listing, each status poll and a cancel request.

    Run :meth:`serve` in the connection's nursery (``await nursery.start(follower.serve)``).
    """

    def __init__(
        self,
        backend: ExecutionBackend,
        *,
        on_change: Callable[[], object] = lambda: None,
        on_message: Callable[[str], object] = lambda text: None,
        poll_interval: float = 1.0,
        max_poll_interval: float = 5.0,
        request_timeout: float = 10.0,
    ) -> None:
        self._backend = backend
        self._on_change = on_change
        self._on_message = on_message
        self._request_timeout = request_timeout
        self._rows: dict[str, AttachedRow] = {}
        self.settled = trio.Event()
        """Set once no followed execution is live (at once when none was live at connect)."""
        # Liveness is the connection's job (its heartbeat watchdog ends the event stream with ConnectionLost),
        # so the poller gets no deadline of its own: it would fail ids silently, without a row update.
        self._poller: ExecutionStatusPoller[ExecutionState] = ExecutionStatusPoller(
            fetch=self._fetch,
            is_terminal=lambda state: state.is_terminal,
            interval=poll_interval,
            max_interval=max_poll_interval,
            request_timeout=request_timeout,
            liveness_timeout=math.inf,
        )

    # ------------------------------------------------------------------ views

    def rows(self) -> list[AttachedRow]:
        """Every followed execution, in the order the server listed them."""
        return list(self._rows.values())

    def live_ids(self) -> list[str]:
        """The followed executions still queued or running."""
        return [row.execution_id for row in self._rows.values() if row.live]

    # ------------------------------------------------------------------ Trio side

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List the server's live executions, report started, then follow them until none is live.

        The event stream is opened before the listing, so no state change between the two is missed. A listing
        that fails or times out is reported through ``on_message`` and nothing is followed (the connection itself
        is not failed). Returns when every followed execution is terminal, lost or unknown; on cancellation the
        rows keep their last state. Never raises for a server error.
        """
        async with self._backend.open_event_stream() as events:
            await self._discover()
            if not self.live_ids():
                self.settled.set()
                task_status.started()
                return
            async with trio.open_nursery() as nursery:
                await nursery.start(self._poller.serve)
                task_status.started()
                await self._route(events)
                nursery.cancel_scope.cancel()

    async def cancel(self) -> list[str]:
        """Targeted cancel of every followed execution still live; returns the ids the server cancelled.

        The rows follow the server's confirmation (state events, or the poll this asks for at once).
        Raises what ``backend.cancel`` raises, and ``TimeoutError`` when no reply came within ``request_timeout``.
        """
        ids = self.live_ids()
        if not ids:
            return []
        with trio.fail_after(self._request_timeout):
            reply = await self._backend.cancel(ids)
        self._poller.poll_now()
        return list(reply.cancelled)

    async def _discover(self) -> None:
        with trio.move_on_after(self._request_timeout) as scope:
            try:
                info = await self._backend.server_info(records=True)
            except HcsBatchError as exc:
                self._say(f"could not list the server's executions: {exc}")
                return
        if scope.cancelled_caught:
            self._say(f"the server did not list its executions within {self._request_timeout:g} s")
            return
        for record in info.executions:
            if record.state in LIVE_STATES:
                self._rows[record.execution_id] = AttachedRow(
                    execution_id=record.execution_id,
                    plate_name=record.plate_name,
                    state=record.state,
                    percent=_wells_percent(record),
                )
                self._poller.track(record.execution_id)
        if self._rows:
            self._say(f"following {len(self._rows)} live executions started elsewhere")
            self._changed()

    async def _route(self, events: trio.MemoryReceiveChannel[StreamItem]) -> None:
        async for item in events:
            if isinstance(item, StateEvent):
                if item.execution_id in self._rows:
                    self._update(item.execution_id, state=item.state, error=item.error)
                    self._poller.push(item.execution_id, ExecutionState(item.state))
            elif isinstance(item, ProgressEvent):
                if item.execution_id in self._rows and item.total:
                    self._update(item.execution_id, percent=round(100 * item.done / item.total))
            elif isinstance(item, EventGap):
                self._poller.poll_now()
            elif isinstance(item, ConnectionLost):
                for execution_id in self.live_ids():
                    self._update(execution_id, state=LOST, error=str(item.error))
            if self.settled.is_set():
                return

    async def _fetch(self, execution_ids: Sequence[str]) -> dict[str, ExecutionState]:
        """The poller's one batched request; applies every record to the rows as it goes."""
        records, unknown = await self._backend.status(execution_ids)
        for record in records:
            if record.execution_id in self._rows:
                self._update(
                    record.execution_id, state=record.state, error=record.error, percent=_wells_percent(record)
                )
        for execution_id in unknown:
            if execution_id in self._rows:
                self._update(execution_id, state=UNKNOWN, error="the server no longer knows this execution")
        return {record.execution_id: ExecutionState(record.state) for record in records}

    # ------------------------------------------------------------------ the one row writer

    def _update(self, execution_id: str, *, state: str = "", error: str = "", percent: int = -1) -> None:
        """Apply what was learned; a row that is no longer live never changes again (terminal is final)."""
        row = self._rows[execution_id]
        if not row.live:
            return
        new = row
        if state and state != row.state:
            new = dataclasses.replace(new, state=state, error=error)
        if new.state == ExecutionState.COMPLETED:
            percent = 100
        if percent > new.percent:
            new = dataclasses.replace(new, percent=min(percent, 100))
        if new == row:
            return
        self._rows[execution_id] = new
        if not new.live:
            self._poller.fail(execution_id, LookupError(f"{execution_id} is {new.state}"))  # stop polling it
            if not self.live_ids():
                self.settled.set()
        self._changed()

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("on_change raised; following goes on")

    def _say(self, text: str) -> None:
        try:
            self._on_message(text)
        except Exception:
            log.exception("on_message raised; following goes on")


def _wells_percent(record: ExecutionRecord) -> int:
    if record.state == ExecutionState.COMPLETED:
        return 100
    return round(100 * record.wells_done / record.wells_total) if record.wells_total else 0
