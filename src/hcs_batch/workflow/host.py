"""The host contract: what a GUI or terminal must provide to host ``BatchWorkflowService``.

``BatchHost`` is nominal: a host *subclasses* it and the service refuses anything else with ``TypeError``.
Every callback is called in the Trio thread (in guest mode, the Qt main thread), synchronously, and must return
quickly without awaiting or blocking; an exception escaping a callback is logged by the service and swallowed
so that one broken widget cannot wedge a batch. Plates are keyed by ``PlateRef.name`` (unique per batch).

The defaults do nothing, so a host overrides only what it shows. The stores are plain dicts that the service
writes and the host reads.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from ..model import CompiledPlate, PlateState

if TYPE_CHECKING:
    from .progress import ProgressTracker

__all__ = ["BatchHost"]


class BatchHost(abc.ABC):  # noqa: B024 - nominal base: every callback has a no-op default on purpose
    """Base class of every host. Subclass it, call ``super().__init__()``, override the callbacks you show."""

    def __init__(self) -> None:
        self.plate_compiled_data: dict[str, CompiledPlate] = {}
        """Compiled artifacts by plate name; kept across batches so Run can reuse a compile-only result."""
        self.plate_execution_states: dict[str, PlateState] = {}
        """The latest state of every plate of the current batch."""
        self.plate_execution_ids: dict[str, str] = {}
        """The server's execution id of every plate submitted in the current batch."""
        self.progress_tracker: ProgressTracker | None = None
        """Set by the service: the live progress projection of the current batch."""

    # --- status and errors
    def emit_status(self, text: str) -> None:  # noqa: B027
        """A one-line human status (batch phase, server status)."""

    def emit_error(self, text: str) -> None:  # noqa: B027
        """A human error message; for a failed plate it names the plate and what to do."""

    # --- batch progress
    def emit_progress_started(self, total: int) -> None:  # noqa: B027
        """A batch of ``total`` plates started."""

    def emit_progress_updated(self, done: int, total: int) -> None:  # noqa: B027
        """``done`` of ``total`` plates are terminal (at most 30 calls a second)."""

    def emit_progress_finished(self) -> None:  # noqa: B027
        """The batch ended (every plate terminal)."""

    # --- views
    def update_item_list(self) -> None:  # noqa: B027
        """Plate rows or their progress changed: re-read the stores and ``progress_tracker``."""

    def update_button_states(self) -> None:  # noqa: B027
        """The batch state changed: enable or disable Compile/Run/Stop."""

    # --- plate and batch outcomes
    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:  # noqa: B027
        """``plate`` moved to ``state``. Called once per transition; never again after a terminal state."""

    def on_plate_completed(self, plate: str, state: PlateState, error: str) -> None:  # noqa: B027
        """``plate`` reached a terminal ``state`` (``error`` is empty unless failed or cancelled)."""

    def emit_execution_complete(self, summary: Any) -> None:  # noqa: B027
        """A run batch ended; ``summary`` is a ``BatchSummary``."""

    def on_all_plates_completed(self, summary: Any) -> None:  # noqa: B027
        """Every plate of the batch is terminal. Called exactly once per batch."""
