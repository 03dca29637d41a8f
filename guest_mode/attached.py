"""Executions started elsewhere, followed live: what the window shows when it connects (issue 6, reattach).

A client that went away (killed, or closed without Stop) leaves its executions running on the server. When the
window connects it asks the server for its execution records and follows the live ones (``queued``/``running``)
to their ends with :class:`AttachedExecutions`, a thin shell over the one execution follower of the policy layer
(:class:`hcs_batch.workflow.follow.ExecutionFollower`: events first, batched polls as the fallback).

No Qt here: the window repaints from :meth:`AttachedExecutions.rows` when ``on_change`` fires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import trio

from hcs_batch._util import call_logged
from hcs_batch.backend import ExecutionBackend
from hcs_batch.errors import HcsBatchError
from hcs_batch.workflow.follow import LIVE_STATES, Ending, ExecutionFollower, FollowedExecution

__all__ = ["LIVE_STATES", "LOST", "UNKNOWN", "AttachedExecutions", "AttachedRow"]

log = logging.getLogger("guest_mode.attached")

AttachedRow = FollowedExecution
"""One execution started elsewhere, as last seen: an ``ExecutionState``, or :data:`LOST`/:data:`UNKNOWN`."""

LOST = Ending.LOST
"""Row state once the connection was lost while the execution was live (its fate is unknown here)."""

UNKNOWN = Ending.UNKNOWN
"""Row state once the server no longer knows the execution (its record was evicted)."""


class AttachedExecutions:
    """Follow the executions live on a server at connect time, to their ends.

    Args:
        backend: the connected server.
        on_change: called (in the Trio thread) after rows changed; many changes may share one call. Exceptions
            it raises are logged and swallowed.
        on_message: called with a line for the user (a failed listing or cancel); exceptions are swallowed.
        poll_interval, max_poll_interval: the fallback status poll period and its ceiling (backing off while
            nothing changes).
        request_timeout: bound on the listing, each status poll and a cancel request.

    Run :meth:`serve` in the connection's nursery (``await nursery.start(follower.serve)``). Liveness is the
    connection's job (its heartbeat watchdog ends the event stream with ``ConnectionLost``: every live row ends
    :data:`LOST`).
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
        self.settled = trio.Event()
        """Set once no followed execution is live (at once when none was live at connect)."""
        self._follower = ExecutionFollower(
            backend,
            on_change=self._changed,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            request_timeout=request_timeout,
        )

    def rows(self) -> list[AttachedRow]:
        """Every followed execution, in the order the server listed them."""
        return self._follower.rows()

    def live_ids(self) -> list[str]:
        """The followed executions still queued or running."""
        return self._follower.live_ids()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List the server's live executions, report started, then follow them until none is live.

        The event stream is opened before the listing, so no state change between the two is missed. A listing
        that fails or times out is reported through ``on_message`` and nothing is followed (the connection itself
        is not failed). Returns when every followed execution has ended; on cancellation the rows keep their last
        state. Never raises for a server error.
        """
        async with self._backend.open_event_stream() as events:
            await self._discover()
            if self._follower.settled:
                self.settled.set()
                task_status.started()
                return
            await self._follower.serve(events, until_settled=True, task_status=task_status)

    async def cancel(self, execution_ids: Sequence[str] | None = None) -> list[str]:
        """Targeted cancel of the followed executions still live (only those of ``execution_ids`` when given; ids
        not followed or no longer live are ignored); returns the ids the server cancelled.

        The rows follow the server's confirmation (state events, or the poll this asks for at once).
        Raises what ``backend.cancel`` raises, and ``TimeoutError`` when no reply came within ``request_timeout``.
        """
        live = self.live_ids()
        ids = live if execution_ids is None else [i for i in live if i in set(execution_ids)]
        if not ids:
            return []
        with trio.fail_after(self._request_timeout):
            reply = await self._backend.cancel(ids)
        self._follower.poll_now()
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
        live = [record for record in info.executions if record.state in LIVE_STATES]
        if live:
            self._say(f"following {len(live)} live executions started elsewhere")
        for record in live:
            self._follower.follow_record(record)

    def _changed(self) -> None:
        if self._follower.settled and self._follower.rows():
            self.settled.set()
        call_logged(log, "following", self._on_change)

    def _say(self, text: str) -> None:
        call_logged(log, "following", self._on_message, text)
