"""What both tables share: the header row, row count and cell lookup of their models, state colours, the
progress-bar cell, the column layout.

A progress cell is painted, not a widget: the view asks the model only for the rows on screen, so a repaint costs
the same for 10 rows as for 10,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt
from PyQt6.QtGui import QBrush, QColor, QPainter
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QWidget,
)

__all__ = ["ProgressDelegate", "RowsModel", "RowsView", "state_brush"]

T = TypeVar("T")

_STATE_COLORS = {
    "failed": Qt.GlobalColor.red,
    "lost": Qt.GlobalColor.red,
    "unknown": Qt.GlobalColor.red,
    "cancelled": Qt.GlobalColor.darkYellow,
    "completed": Qt.GlobalColor.darkGreen,
}
_BRUSHES = {state: QBrush(QColor(color)) for state, color in _STATE_COLORS.items()}


def state_brush(state: str) -> QBrush | None:
    """The text colour of a state cell: red for failures, yellow cancelled, green completed; None: the palette's."""
    return _BRUSHES.get(state)


class RowsModel(QAbstractTableModel, Generic[T]):
    """A flat table with fixed column ``headers``, one row per item of ``_items`` (the subclass keeps that list
    current); a subclass says what a cell of an item shows (:meth:`cell`)."""

    def __init__(self, headers: Sequence[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._headers = tuple(headers)
        self._items: list[T] = []

    def row_count(self) -> int:
        return len(self._items)

    def cell(self, item: T, column: int, role: int) -> object:
        """What ``column`` of ``item``'s row shows for ``role``; None: nothing (Qt's default)."""
        raise NotImplementedError

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or index.row() >= len(self._items):
            return None
        return self.cell(self._items[index.row()], index.column(), role)

    def repaint_columns(self, first: int, last: int) -> None:
        """Tell the views that columns ``first`` to ``last`` of every row changed (one signal)."""
        rows = self.row_count()
        if rows:
            self.dataChanged.emit(self.index(0, first), self.index(rows - 1, last))

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else self.row_count()

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._headers)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if orientation is Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self._headers[section] if 0 <= section < len(self._headers) else None
        return None


class ProgressDelegate(QStyledItemDelegate):
    """Paints an ``int`` 0-100 display value as a progress bar with its percentage, as ``QProgressBar`` shows it."""

    def paint(self, painter: QPainter | None, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        value = index.data(Qt.ItemDataRole.DisplayRole)
        if not isinstance(value, int) or painter is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect
        bar.palette = option.palette
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        bar.minimum, bar.maximum, bar.progress = 0, 100, value
        bar.text = f"{value}%"
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)


class RowsView(QTableView):
    """A view of a :class:`RowsModel`: read-only rows selected as ``selection`` says, no row numbers; a ``None``
    width stretches, the others are fixed (measuring columns to their contents re-reads every row), and
    ``progress_column`` is painted as a bar."""

    def __init__(
        self,
        model: RowsModel[Any],
        widths: Sequence[int | None],
        *,
        progress_column: int,
        selection: QAbstractItemView.SelectionMode,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setModel(model)
        self.setSelectionMode(selection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWordWrap(False)
        vertical = self.verticalHeader()
        if vertical is not None:
            vertical.setVisible(False)
            vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = self.horizontalHeader()
        if header is not None:
            for column, width in enumerate(widths):
                if width is None:
                    header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
                else:
                    header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
                    header.resizeSection(column, width)
        self.setItemDelegateForColumn(progress_column, ProgressDelegate(self))
