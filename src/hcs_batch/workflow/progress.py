"""Progress projection: what a host shows of a batch, derived from server events and plate states.

Pure policy, no I/O: the service feeds it and hosts read it. It keeps each plate's completed fraction, its
latest well and step, its state, and the server status line. Its ``changed`` flag lets the service coalesce host
updates (at most 30 a second) however fast events arrive.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from ..model import TERMINAL_STATES, PlateState
from ..protocol import ProgressEvent, ServerInfoReply
from ..runtime import Snapshot

__all__ = ["MAX_WELLS", "PlateProgress", "ProgressTracker", "WellState", "server_info_key", "server_status_text"]

MAX_WELLS = 4096
"""At most this many wells a plate's progress keeps states for (a 1,536-well plate fits; a hostile server's
flood of invented well names does not grow it further)."""


class WellState(StrEnum):
    """A well's progress as the events show it (a well not yet seen is queued)."""

    RUNNING = "running"
    DONE = "done"


def server_info_key(info: ServerInfoReply) -> tuple[int, int, int, int]:
    """What of a server's status a host shows: a snapshot is a change only when this differs."""
    return (info.queued, info.running, info.busy_workers, info.workers)


def server_status_text(snapshot: Snapshot[ServerInfoReply]) -> str:
    """The server status line a host shows for one status snapshot (or its error)."""
    if snapshot.error is not None:
        return f"server unreachable: {snapshot.error}"
    info = snapshot.value
    assert info is not None
    return (
        f"server connected: {info.queued} queued, {info.running} running, "
        f"{info.busy_workers}/{info.workers} workers busy"
    )


@dataclass(slots=True, kw_only=True)
class PlateProgress:
    """One plate's live progress; ``done`` and ``total`` count (well, step) units of its execution."""

    state: PlateState = PlateState.QUEUED
    done: int = 0
    total: int = 0
    last_well: str = ""
    last_step: str = ""
    error: str = ""
    wells: dict[str, WellState] = field(default_factory=dict)
    """Each well seen in the events: ``running`` once started, ``done`` once its steps finished (a well not in
    it is still queued)."""

    @property
    def fraction(self) -> float:
        """0.0 to 1.0; 1.0 once completed, whatever the counts say."""
        if self.state is PlateState.COMPLETED:
            return 1.0
        return self.done / self.total if self.total else 0.0


class ProgressTracker:
    """The progress of the current batch, as hosts read it (in the Trio thread)."""

    def __init__(self) -> None:
        self.plates: dict[str, PlateProgress] = {}
        self.server_status_text = ""
        self.final_states: frozenset[PlateState] = TERMINAL_STATES
        self.changed = False

    def reset(self, plate_names: Iterable[str], *, final_states: Collection[PlateState] = TERMINAL_STATES) -> None:
        """Start a new batch: every named plate queued at 0 %; a plate counts as done in ``final_states``
        (a compile-only batch adds ``compiled``)."""
        self.plates = {name: PlateProgress() for name in plate_names}
        self.final_states = frozenset(final_states)
        self.changed = True

    def record(self, event: ProgressEvent) -> None:
        """Take a progress event; events of plates outside the batch, or out of order, are ignored. An event with
        an empty step marks its well running; one with a step marks it done."""
        plate = self.plates.get(event.plate_name)
        if plate is None or event.done < plate.done:
            return
        plate.done, plate.total = event.done, event.total
        plate.last_well, plate.last_step = event.well, event.step
        known = event.well in plate.wells
        if (event.step or not known) and (known or len(plate.wells) < MAX_WELLS):
            # A start marker (empty step) never undoes "done"; a server naming endless wells cannot grow the map.
            plate.wells[event.well] = WellState.DONE if event.step else WellState.RUNNING
        self.changed = True

    def set_state(self, plate_name: str, state: PlateState, error: str = "") -> None:
        plate = self.plates.setdefault(plate_name, PlateProgress())
        plate.state, plate.error = state, error
        self.changed = True

    def set_server_status(self, text: str) -> None:
        if text != self.server_status_text:
            self.server_status_text = text
            self.changed = True

    def plate_percent(self, plate_name: str) -> float:
        """0 to 100 for a plate of the batch, 0 for an unknown one."""
        plate = self.plates.get(plate_name)
        return 100.0 * plate.fraction if plate else 0.0

    def counts(self) -> tuple[int, int]:
        """(terminal plates, all plates) of the batch."""
        done = sum(1 for plate in self.plates.values() if plate.state in self.final_states)
        return done, len(self.plates)
