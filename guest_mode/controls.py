"""The plate manager's batch controls beyond Run and Stop: pause and resume, cancel one plate, cancel one execution
started elsewhere, and the tally of finished plates by outcome. No Qt here: the window's buttons and row menus call
these, and tests drive them with a recording view.

Everything runs in the Trio thread. A command that talks to the server runs as a task in the session's connection
nursery and returns at once (True: started); its outcome is logged through the view, its failure shown as an error
line, never raised into a Qt slot.

The service's ``pause()``/``resume()``/``paused``/``cancel_plate()`` (issue 14) are reached through
:func:`service_supports`: a service without them (an older server library) leaves the controls disabled.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hcs_batch.errors import HcsBatchError
from hcs_batch.model import PlateState
from hcs_batch.workflow.service import BatchState, BatchWorkflowService

if TYPE_CHECKING:
    from guest_mode.session import BatchSession

__all__ = ["BatchControls", "Tally", "service_supports"]

log = logging.getLogger("guest_mode.controls")

_PAUSABLE = (BatchState.COMPILING, BatchState.RUNNING)
_DONE = (PlateState.COMPLETED, PlateState.COMPILED)


def service_supports(service: BatchWorkflowService | None, *names: str) -> bool:
    """The service has every one of these attributes (issue 14's pause/resume/cancel_plate)."""
    return service is not None and all(hasattr(service, name) for name in names)


class Tally:
    """The finished plates of the latest batch by outcome: ``done`` (completed, or compiled in a compile batch),
    ``failed`` and ``cancelled``. Counted once per plate as the service announces it, so reading it costs nothing
    per plate."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._seen: set[str] = set()

    def reset(self) -> None:
        self._counts.clear()
        self._seen.clear()

    def add(self, plate: str, state: PlateState) -> None:
        """Count ``plate`` once, in its terminal ``state``."""
        if plate in self._seen:
            return
        self._seen.add(plate)
        key = "done" if state in _DONE else state.value
        self._counts[key] += 1

    @property
    def done(self) -> int:
        return self._counts["done"]

    @property
    def failed(self) -> int:
        return self._counts["failed"]

    @property
    def cancelled(self) -> int:
        return self._counts["cancelled"]


class BatchControls:
    """Pause/resume and per-row cancels of one session (see the module docstring)."""

    def __init__(self, session: BatchSession) -> None:
        self._session = session
        self._pausing = False
        self.tally = Tally()
        """The finished plates of the latest batch, by outcome."""

    # ------------------------------------------------------------------ what the view reads

    @property
    def paused(self) -> bool:
        """The active batch is paused (the service says so)."""
        service = self._session.service
        return service_supports(service, "paused") and bool(getattr(service, "paused").value)  # noqa: B009

    @property
    def can_pause(self) -> bool:
        """Pause (or Resume, when :attr:`paused`) would do something now."""
        session = self._session
        return (
            service_supports(session.service, "pause", "resume", "paused")
            and session.batch_state in _PAUSABLE
            and not session.closing
            and not self._pausing
        )

    def can_cancel_plate(self, name: str) -> bool:
        """Plate ``name`` belongs to the active batch and has not finished."""
        session = self._session
        if not service_supports(session.service, "cancel_plate") or session.batch_state not in _PAUSABLE:
            return False
        state = session.plate_state(name)
        return state not in (PlateState.IDLE, PlateState.COMPLETED, PlateState.FAILED, PlateState.CANCELLED)

    def can_cancel_execution(self, execution_id: str) -> bool:
        """``execution_id`` is an execution started elsewhere that is still live."""
        follower = self._session.attached
        return follower is not None and execution_id in follower.live_ids()

    # ------------------------------------------------------------------ commands

    def toggle_pause(self) -> bool:
        """Pause the active batch, or resume it when paused; False when not possible now."""
        service = self._session.service
        if not self.can_pause or service is None:
            return False
        resume = self.paused
        call: Callable[[], Awaitable[list[str]]] = getattr(service, "resume" if resume else "pause")
        self._pausing = True
        started = self._session.spawn(self._pause_task, call, "resumed" if resume else "paused")
        if not started:
            self._pausing = False
        self._session.view.update_state()
        return started

    def cancel_plate(self, name: str) -> bool:
        """Cancel plate ``name`` of the active batch (the others go on); False when it is not live in one."""
        service = self._session.service
        if not self.can_cancel_plate(name) or service is None:
            return False
        self._session.view.log(f"cancelling plate {name}…")
        return self._session.spawn(self._cancel_plate_task, getattr(service, "cancel_plate"), name)  # noqa: B009

    def cancel_execution(self, execution_id: str) -> bool:
        """Targeted cancel of one execution started elsewhere; False when it is not live."""
        follower = self._session.attached
        if follower is None or not self.can_cancel_execution(execution_id):
            return False
        self._session.view.log(f"cancelling execution {execution_id} (started elsewhere)…")
        return self._session.spawn(self._cancel_execution_task, follower.cancel, execution_id)

    # ------------------------------------------------------------------ Trio side

    async def follow_paused(self, service: BatchWorkflowService) -> None:
        """Re-read the buttons whenever the service's ``paused`` changes (run in the connection's nursery)."""
        if not service_supports(service, "paused"):
            return
        value: Any = getattr(service, "paused")  # noqa: B009
        async with contextlib.aclosing(value.eventual_values()) as values:
            async for _ in values:
                self._session.view.update_state()

    async def _pause_task(self, call: Callable[[], Awaitable[list[str]]], verb: str) -> None:
        try:
            ids = await call()
            self._session.view.log(f"batch {verb} ({len(ids)} execution{'s' if len(ids) != 1 else ''} on the server)")
        except HcsBatchError as exc:
            self._session.show_error(f"could not change pause: {exc}")
        finally:
            self._pausing = False
            self._session.view.update_state()
            self._session.view.schedule_refresh()

    async def _cancel_plate_task(self, call: Callable[[str], Awaitable[bool]], name: str) -> None:
        try:
            if not await call(name):
                self._session.view.log(f"plate {name} had already finished")
        except HcsBatchError as exc:
            self._session.show_error(f"could not cancel plate {name}: {exc}")
        finally:
            self._session.view.schedule_refresh()

    async def _cancel_execution_task(
        self, call: Callable[[list[str]], Awaitable[list[str]]], execution_id: str
    ) -> None:
        try:
            cancelled = await call([execution_id])
            if not cancelled:
                self._session.view.log(f"execution {execution_id} had already finished")
        except (HcsBatchError, TimeoutError) as exc:
            self._session.show_error(f"could not cancel execution {execution_id}: {exc}")
        finally:
            self._session.view.schedule_refresh()
