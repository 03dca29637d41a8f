"""What both tables share: the header row and row count of their models, state colours, the progress-bar cell,
the column layout.

A progress cell is painted, not a widget: the view asks the model only for the rows on screen, so a repaint costs
the same for 10 rows as for 10,000.
"""

from __future__ import annotations

from collections.abc import Sequence

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
)

__all__ = ["ProgressDelegate", "RowsModel", "configure_table", "state_brush"]

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


class RowsModel(QAbstractTableModel):
    """A flat table with fixed column ``headers``; a subclass says how many rows (:meth:`row_count`) and what a
    cell shows (``data``)."""

    def __init__(self, headers: Sequence[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._headers = tuple(headers)

    def row_count(self) -> int:
        raise NotImplementedError

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


def configure_table(view: QTableView, widths: Sequence[int | None], *, progress_column: int) -> None:
    """Read-only rows, no row numbers; a ``None`` width stretches, the others are fixed (measuring columns to
    their contents re-reads every row), and ``progress_column`` is painted as a bar."""
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setWordWrap(False)
    vertical = view.verticalHeader()
    if vertical is not None:
        vertical.setVisible(False)
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    header = view.horizontalHeader()
    if header is not None:
        for column, width in enumerate(widths):
            if width is None:
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
            else:
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
                header.resizeSection(column, width)
    view.setItemDelegateForColumn(progress_column, ProgressDelegate(view))
