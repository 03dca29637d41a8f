"""The session's two faces: :class:`SessionView`, what it tells the window (or a test), and :class:`SessionHost`,
the ``BatchHost`` through which the service talks to it. No Qt here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from hcs_batch.model import PlateState
from hcs_batch.workflow.host import BatchHost
from hcs_batch.workflow.service import BatchSummary

if TYPE_CHECKING:
    from guest_mode.session import BatchSession

__all__ = ["SessionHost", "SessionView"]


class SessionView(Protocol):
    """What a session tells its face. Every call comes in the Trio thread and must return quickly."""

    def log(self, text: str) -> None:
        """Show a line (or a traceback) to the user."""

    def schedule_refresh(self) -> None:
        """Plate or attached rows changed: repaint them soon (coalescing is the view's business)."""

    def refresh_now(self) -> None:
        """Repaint the rows now (a batch or a connection ended)."""

    def update_state(self) -> None:
        """The connection, the server status or what the buttons may do changed: re-read them."""

    def closed(self) -> None:
        """:meth:`BatchSession.serve` is returning after a close: the view may go away now."""


class SessionHost(BatchHost):
    """The ``BatchHost`` a session hands its service: every callback forwards to the session."""

    def __init__(self, session: BatchSession) -> None:
        super().__init__()
        self._session = session

    def emit_status(self, text: str) -> None:
        self._session.on_server_status(text)

    def emit_error(self, text: str) -> None:
        self._session.show_error(text)

    def emit_progress_started(self, total: int) -> None:
        self._session.on_progress(0, total)

    def emit_progress_updated(self, done: int, total: int) -> None:
        self._session.on_progress(done, total)

    def emit_progress_finished(self) -> None:
        self._session.view.schedule_refresh()

    def update_item_list(self) -> None:
        self._session.view.schedule_refresh()

    def update_button_states(self) -> None:
        self._session.view.update_state()

    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:
        self._session.view.schedule_refresh()

    def emit_orchestrator_states(self, plates: Sequence[str], state: PlateState) -> None:
        self._session.view.schedule_refresh()  # one repaint for every plate

    def on_plate_completed(self, plate: str, state: PlateState, error: str) -> None:
        self._session.on_plate_completed(plate, state, error)

    def emit_execution_complete(self, summary: BatchSummary) -> None:
        """Nothing to show: :meth:`on_all_plates_completed` follows for every batch."""

    def on_all_plates_completed(self, summary: BatchSummary) -> None:
        self._session.on_batch_finished(summary)
