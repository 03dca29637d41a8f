"""The host contract: what a GUI or terminal provides to host ``BatchWorkflowService``, documented here only.

``BatchHost`` is nominal: a host *subclasses* it (and calls ``super().__init__()``); the service refuses anything
else with ``TypeError``. Plates are keyed by ``PlateRef.name`` (unique per batch).

Callbacks (the seed's names). The service calls them in the Trio thread (in guest mode, the Qt main thread),
synchronously; each must return quickly without awaiting or blocking. An exception escaping one is logged by the
service and swallowed, so one broken widget cannot wedge a batch. A host must show plate states and errors
(the two abstract methods); the others default to doing nothing.

===========================================  ===================================================================
``emit_orchestrator_state(plate, state)``    ``plate`` moved to ``state``; once per transition, never again after
                                             a terminal state (abstract)
``emit_orchestrator_states(plates, state)``  every plate of ``plates`` moved to ``state`` at once (a batch
                                             starting: all queued); by default ``emit_orchestrator_state`` for
                                             each in order. One call for 10,000 plates lets a GUI repaint once
``emit_error(text)``                         a human error message; for a failed plate it names the plate and
                                             what to do (abstract)
``emit_status(text)``                        a one-line human status (batch phase, server status)
``emit_progress_started(total)``             a batch of ``total`` plates started
``emit_progress_updated(done, total)``       ``done`` of ``total`` plates are final (at most 30 calls a second)
``emit_progress_finished()``                 the batch ended (every plate final)
``update_item_list()``                       plate rows or their progress changed: re-read the views below
``update_button_states()``                   the batch state changed: enable or disable Compile/Run/Stop
``on_plate_completed(plate, state, error)``  ``plate`` is final (``error`` empty unless failed or cancelled)
``emit_execution_complete(summary)``         a run batch ended; ``summary`` is a ``BatchSummary``
``on_all_plates_completed(summary)``         every plate of the batch is final; exactly once per batch
===========================================  ===================================================================

Views (read-only; the service owns the state and is its only writer, see :class:`HostStores`):
``plate_compiled_data`` (compiled artifacts by plate: the service's compile cache, kept across its batches so
Run reuses a compile-only result), ``plate_execution_states`` (the latest state of every plate of the current
batch), ``plate_execution_ids`` (the server's execution id of every plate submitted in the current batch) and
``progress_tracker`` (the live :class:`~.progress.ProgressTracker` of the current batch; None before a service
is bound).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..model import CompiledPlate, CompileJob, PlateState
from .progress import ProgressTracker

if TYPE_CHECKING:
    from .service import BatchSummary

__all__ = ["BatchHost", "HostStores"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostStores:
    """The state a service keeps for its host. The service creates it, binds it (:meth:`BatchHost.bind_stores`)
    and alone writes it; the host reads it through read-only views."""

    compiled: dict[str, CompiledPlate] = field(default_factory=dict)
    states: dict[str, PlateState] = field(default_factory=dict)
    execution_ids: dict[str, str] = field(default_factory=dict)
    tracker: ProgressTracker = field(default_factory=ProgressTracker)

    def reusable(self, job: CompileJob, *, instance: str, config: tuple[tuple[str, str], ...]) -> CompiledPlate | None:
        """The cached compile of ``job``'s plate when it still holds: same folder, pipeline, server instance and
        compile config; else None."""
        cached = self.compiled.get(job.plate.name)
        if cached is None or (cached.plate.path, cached.pipeline_text) != (job.plate.path, job.pipeline_text):
            return None
        return cached if (cached.server_instance, cached.config) == (instance, config) else None


class BatchHost(abc.ABC):
    """Base class of every host: subclass it, call ``super().__init__()``, implement the abstract callbacks and
    override the others you show (see the module docstring for the whole contract)."""

    def __init__(self) -> None:
        self._stores: HostStores | None = None

    def bind_stores(self, stores: HostStores) -> None:
        """Called by the service that hosts this object: the views read ``stores`` from now on."""
        self._stores = stores

    # ------------------------------------------------------------------ views

    @property
    def plate_compiled_data(self) -> Mapping[str, CompiledPlate]:
        return MappingProxyType(self._stores.compiled if self._stores else {})

    @property
    def plate_execution_states(self) -> Mapping[str, PlateState]:
        return MappingProxyType(self._stores.states if self._stores else {})

    @property
    def plate_execution_ids(self) -> Mapping[str, str]:
        return MappingProxyType(self._stores.execution_ids if self._stores else {})

    @property
    def progress_tracker(self) -> ProgressTracker | None:
        return self._stores.tracker if self._stores else None

    # ------------------------------------------------------------------ callbacks a host must implement

    @abc.abstractmethod
    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None: ...

    @abc.abstractmethod
    def emit_error(self, text: str) -> None: ...

    # ------------------------------------------------------------------ callbacks with a default

    def emit_orchestrator_states(self, plates: Sequence[str], state: PlateState) -> None:
        for plate in plates:
            self.emit_orchestrator_state(plate, state)

    # ------------------------------------------------------------------ callbacks with a default (nothing)

    def emit_status(self, text: str) -> None:
        return None

    def emit_progress_started(self, total: int) -> None:
        return None

    def emit_progress_updated(self, done: int, total: int) -> None:
        return None

    def emit_progress_finished(self) -> None:
        return None

    def update_item_list(self) -> None:
        return None

    def update_button_states(self) -> None:
        return None

    def on_plate_completed(self, plate: str, state: PlateState, error: str) -> None:
        return None

    def emit_execution_complete(self, summary: BatchSummary) -> None:
        return None

    def on_all_plates_completed(self, summary: BatchSummary) -> None:
        return None
