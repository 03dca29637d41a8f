"""The plate table: one row per plate of the window (name, state, progress, pipeline), as a Qt model and its view.

The model holds the plate list and nothing else: a row's state and progress are read from the
:class:`~guest_mode.session.BatchSession` when the view paints it, so only the rows on screen cost anything and a
repaint of every row is one ``dataChanged`` signal (:meth:`PlateTableModel.refresh`), however many plates there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from PyQt6.QtCore import QModelIndex, QObject, Qt
from PyQt6.QtWidgets import QAbstractItemView, QWidget

from guest_mode.session import BatchSession
from hcs_batch.model import PlateRef

from .common import RowsModel, RowsView, state_brush

__all__ = ["PlateTableModel", "PlateTableView"]

_HEADERS = ("Plate", "State", "Progress", "Pipeline")
_NAME, _STATE, _PROGRESS, _PIPELINE = range(4)


class PlateTableModel(RowsModel[PlateRef]):
    """The plates in row order; state, progress and the pipeline a plate compiled with (its own when its
    ``hcs_batch.toml`` names one, empty before its first compile) come from ``session`` at paint time."""

    def __init__(self, session: BatchSession, parent: QObject | None = None) -> None:
        super().__init__(_HEADERS, parent)
        self._session = session
        self._rows: dict[str, int] = {}

    # ------------------------------------------------------------------ the plate list

    @property
    def plates(self) -> list[PlateRef]:
        """Every plate, in row order."""
        return list(self._items)

    def plate(self, name: str) -> PlateRef | None:
        """The plate named ``name``, or None."""
        row = self._rows.get(name)
        return None if row is None else self._items[row]

    def plates_at(self, rows: Iterable[int]) -> list[PlateRef]:
        """The plates of these row numbers, in row order (rows out of range are ignored)."""
        return [self._items[row] for row in sorted(set(rows)) if 0 <= row < len(self._items)]

    def add(self, plates: Sequence[PlateRef]) -> None:
        """Append plates; the caller makes sure no name is listed twice."""
        if not plates:
            return
        first = len(self._items)
        self.beginInsertRows(QModelIndex(), first, first + len(plates) - 1)
        for offset, plate in enumerate(plates):
            self._rows[plate.name] = first + offset
            self._items.append(plate)
        self.endInsertRows()

    def remove(self, names: Iterable[str]) -> None:
        """Drop the plates named (unknown names are ignored)."""
        doomed = {name for name in names if name in self._rows}
        if not doomed:
            return
        self.beginResetModel()
        self._items = [plate for plate in self._items if plate.name not in doomed]
        self._rows = {plate.name: row for row, plate in enumerate(self._items)}
        self.endResetModel()

    # ------------------------------------------------------------------ what a row shows

    def state_text(self, name: str) -> str:
        """The state the row of plate ``name`` shows. Raises ``KeyError`` for a plate not listed."""
        self._check(name)
        return self._session.plate_state(name).value

    def percent(self, name: str) -> int:
        """The progress (0 to 100) the row of plate ``name`` shows. Raises ``KeyError`` for a plate not listed."""
        self._check(name)
        return self._session.plate_percent(name)

    def pipeline(self, name: str) -> str:
        """The name of the pipeline plate ``name`` last compiled with ("" before). Raises ``KeyError`` for a plate
        not listed."""
        self._check(name)
        return self._pipeline(name)

    def _pipeline(self, name: str) -> str:
        compiled = self._session.host.plate_compiled_data.get(name)
        return compiled.pipeline if compiled is not None else ""

    def _check(self, name: str) -> None:
        if name not in self._rows:
            raise KeyError(f"no plate named {name!r} is listed")

    def refresh(self) -> None:
        """Repaint the state, progress and pipeline of every row (the view re-reads only the rows on screen)."""
        self.repaint_columns(_STATE, _PIPELINE)

    # ------------------------------------------------------------------ QAbstractTableModel

    def cell(self, plate: PlateRef, column: int, role: int) -> object:
        if role == Qt.ItemDataRole.DisplayRole:
            if column == _NAME:
                return plate.name
            if column == _STATE:
                return self._session.plate_state(plate.name).value
            if column == _PIPELINE:
                return self._pipeline(plate.name)
            return self._session.plate_percent(plate.name)
        if role == Qt.ItemDataRole.ToolTipRole and column == _NAME:
            return str(plate.path)
        if role == Qt.ItemDataRole.ForegroundRole and column == _STATE:
            return state_brush(self._session.plate_state(plate.name))
        return None


class PlateTableView(RowsView):
    """The plate table: whole rows selected (several at once), fixed State, Progress and Pipeline columns."""

    def __init__(self, model: PlateTableModel, parent: QWidget | None = None) -> None:
        selection = QAbstractItemView.SelectionMode.ExtendedSelection
        super().__init__(model, (None, 110, 260, 150), progress_column=_PROGRESS, selection=selection, parent=parent)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)

    def selected_rows(self) -> list[int]:
        """The selected row numbers, in order."""
        selection = self.selectionModel()
        return sorted({index.row() for index in selection.selectedRows()}) if selection is not None else []
