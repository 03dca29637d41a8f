"""The "Started elsewhere (attached)" table: executions another client left running, followed live.

The model shows the :class:`~guest_mode.attached.AttachedRow` snapshot taken at its last :meth:`refresh`
(plate, state, progress, execution id); rows are never selected or edited. These executions are not plates of the
window: Run and Compile never act on them, so they live in their own table and the plate table's order stays the
plate order.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, Qt
from PyQt6.QtWidgets import QAbstractItemView, QWidget

from guest_mode.attached import AttachedRow
from guest_mode.session import BatchSession

from .common import RowsModel, RowsView, state_brush

__all__ = ["AttachedTableModel", "AttachedTableView"]

_HEADERS = ("Plate", "State", "Progress", "Execution")
_PLATE, _STATE, _PROGRESS, _EXECUTION = range(4)


class AttachedTableModel(RowsModel[AttachedRow]):
    """The attached executions of the session's current connection, as last refreshed."""

    def __init__(self, session: BatchSession, parent: QObject | None = None) -> None:
        super().__init__(_HEADERS, parent)
        self._session = session

    @property
    def rows(self) -> list[AttachedRow]:
        """The rows shown, in the order the server listed them."""
        return list(self._items)

    def row(self, execution_id: str) -> AttachedRow:
        """The shown row of ``execution_id``. Raises ``KeyError`` when it is not shown."""
        for row in self._items:
            if row.execution_id == execution_id:
                return row
        raise KeyError(f"execution {execution_id!r} is not shown")

    def refresh(self) -> None:
        """Take the session's rows now and repaint them."""
        rows = self._session.attached_rows()
        if [r.execution_id for r in rows] != [r.execution_id for r in self._items]:
            self.beginResetModel()
            self._items = rows
            self.endResetModel()
        else:
            self._items = rows
            self.repaint_columns(_STATE, _PROGRESS)

    # ------------------------------------------------------------------ QAbstractTableModel

    def cell(self, row: AttachedRow, column: int, role: int) -> object:
        if role == Qt.ItemDataRole.DisplayRole:
            return (row.plate_name, row.state, row.percent, row.execution_id)[column]
        if column == _STATE and role == Qt.ItemDataRole.ToolTipRole:
            return row.error or None
        if column == _STATE and role == Qt.ItemDataRole.ForegroundRole:
            return state_brush(row.state)
        return None


class AttachedTableView(RowsView):
    """The attached executions: nothing selectable, fixed State, Progress and Execution columns."""

    def __init__(self, model: AttachedTableModel, parent: QWidget | None = None) -> None:
        selection = QAbstractItemView.SelectionMode.NoSelection
        super().__init__(model, (None, 110, 200, 150), progress_column=_PROGRESS, selection=selection, parent=parent)
