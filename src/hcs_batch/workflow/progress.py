"""Progress projection: what a host shows of a batch, derived from server events and plate states.

Pure policy, no I/O: the service feeds it and hosts read it. It keeps each plate's completed fraction, its
latest well and step, its state, and the server status line. Its ``changed`` flag lets the service coalesce host
updates (at most 30 a second) however fast events arrive.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ..model import TERMINAL_STATES, PlateState
from ..protocol import ProgressEvent, ServerInfoReply
from ..runtime import Snapshot

__all__ = [
    "MAX_WELLS",
    "BatchPlates",
    "PlateProgress",
    "ProgressTracker",
    "WellState",
    "server_info_key",
    "server_status_text",
]

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


class BatchPlates(Mapping[str, PlateProgress]):
    """The progress of every plate of a batch, by name. A plate's row is made when it is first read or changed:
    starting a 10,000-plate batch costs one dict of names, not 10,000 rows in one guest tick. An unknown name is a
    ``KeyError`` (``get`` gives None), a plate of the batch with no news yet is queued at 0 %."""

    __slots__ = ("_names", "_rows")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names = dict.fromkeys(names)
        self._rows: dict[str, PlateProgress] = {}

    def __getitem__(self, name: str) -> PlateProgress:
        row = self._rows.get(name)
        if row is None:
            if name not in self._names:
                raise KeyError(name)
            row = self._rows[name] = PlateProgress()
        return row

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class ProgressTracker:
    """The progress of the current batch, as hosts read it (in the Trio thread)."""

    def __init__(self) -> None:
        self.plates: BatchPlates = BatchPlates()
        self.server_status_text = ""
        self.final_states: frozenset[PlateState] = TERMINAL_STATES
        self.changed = False
        self._done = 0

    def reset(self, plate_names: Iterable[str], *, final_states: Collection[PlateState] = TERMINAL_STATES) -> None:
        """Start a new batch: every named plate queued at 0 %; a plate counts as done in ``final_states``
        (a compile-only batch adds ``compiled``). Costs one dict of the names (rows are made as they are used)."""
        self.plates = BatchPlates(plate_names)
        self.final_states = frozenset(final_states)
        self._done = 0
        self.changed = True

    def record(self, event: ProgressEvent) -> None:
        """Take a progress event; events of plates outside the batch, or out of order, are ignored. An event with
        an empty step marks its well running; one with a step marks it done."""
        if event.plate_name not in self.plates:
            return
        plate = self.plates[event.plate_name]
        if event.done < plate.done:
            return
        plate.done, plate.total = event.done, event.total
        plate.last_well, plate.last_step = event.well, event.step
        known = event.well in plate.wells
        if (event.step or not known) and (known or len(plate.wells) < MAX_WELLS):
            # A start marker (empty step) never undoes "done"; a server naming endless wells cannot grow the map.
            plate.wells[event.well] = WellState.DONE if event.step else WellState.RUNNING
        self.changed = True

    def set_state(self, plate_name: str, state: PlateState, error: str = "") -> None:
        """Show ``state`` (and ``error``) for a plate of the batch; a plate outside it is ignored."""
        if plate_name not in self.plates:
            return
        plate = self.plates[plate_name]
        self._done += (state in self.final_states) - (plate.state in self.final_states)
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
        """(plates final for the batch, all plates of the batch); kept as states change, so O(1)."""
        return self._done, len(self.plates)
