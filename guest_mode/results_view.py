"""The results of a plate: its ``wells.csv`` as a sortable table, and "Open output folder".

:class:`CsvTableModel` holds a CSV's rows as read (strings) and sorts numeric columns as numbers (a column is
numeric when every non-empty value parses as a float); the well view uses it for a well's rows too.
:func:`read_results` reads the file (blocking: the window calls it in a thread).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QObject, QSortFilterProxyModel, Qt, QUrl
from PyQt6.QtGui import QDesktopServices, QGuiApplication
from PyQt6.QtWidgets import QAbstractItemView, QLabel, QPushButton, QTableView, QWidget

from guest_mode.panel import lay_out_panel

__all__ = ["SORT_ROLE", "CsvTableModel", "Results", "ResultsView", "open_folder", "read_results"]

logger = logging.getLogger("guest_mode.results")

SORT_ROLE = Qt.ItemDataRole.UserRole
"""The role the table sorts by: a float for numeric columns, the text otherwise."""

Results = tuple[list[str], list[dict[str, str]]]
"""A CSV's header and its rows."""


def read_results(path: Path) -> Results:
    """The header and rows of a CSV (blocking). Raises OSError (missing, unreadable) or UnicodeDecodeError."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class CsvTableModel(QAbstractTableModel):
    """Read-only rows of a CSV; numeric columns sort as numbers through :data:`SORT_ROLE`."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self._numeric: list[bool] = []

    def set_rows(self, header: Sequence[str], rows: Sequence[dict[str, str]]) -> None:
        """Show ``rows`` (dicts keyed by ``header``) instead of what was shown."""
        self.beginResetModel()
        self.header = list(header)
        self.rows = [[str(row.get(name) or "") for name in self.header] for row in rows]
        self._numeric = [
            all(_float(row[i]) is not None for row in self.rows if row[i]) and any(row[i] for row in self.rows)
            for i in range(len(self.header))
        ]
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.header)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.header[section] if 0 <= section < len(self.header) else None
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        text = self.rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return text
        if role == SORT_ROLE:
            if self._numeric[index.column()]:
                value = _float(text)
                return value if value is not None else float("-inf")
            return text
        if role == Qt.ItemDataRole.TextAlignmentRole and self._numeric[index.column()]:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def sortable_table(model: CsvTableModel, parent: QWidget | None = None) -> QTableView:
    """A read-only table view of ``model`` sorted by clicking a header (numbers as numbers)."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    view = QTableView(parent)
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # file order until a header is clicked
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setAlternatingRowColors(True)
    vertical = view.verticalHeader()
    if vertical is not None:
        vertical.setVisible(False)
        vertical.setDefaultSectionSize(20)
    return view


def open_folder(path: Path) -> bool:
    """Open ``path`` in the desktop's file manager; False (nothing launched) when it does not exist or Qt runs
    without a display (the offscreen platform, as in tests and ``--screenshot`` runs)."""
    if not path.is_dir():
        return False
    if QGuiApplication.platformName() in ("offscreen", "minimal"):
        return False
    return bool(QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))))


class ResultsView(QWidget):
    """A plate's ``wells.csv``, sortable, with "Open output folder" (see :func:`open_folder`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self.model = CsvTableModel(self)
        self.title = QLabel("No results yet: run a plate")
        self.open_button = QPushButton("Open output folder")
        self.open_button.setEnabled(False)
        self.table = sortable_table(self.model, self)
        lay_out_panel(self, self.title, [self.open_button], self.table)
        self.open_button.clicked.connect(self._on_open_clicked)

    def show_results(self, plate: str, folder: Path, results: Results | None, problem: str = "") -> None:
        """Show ``plate``'s results (None: none yet, with ``problem`` saying why) kept in ``folder``."""
        self.folder = folder
        header, rows = results if results is not None else ([], [])
        self.model.set_rows(header, rows)
        if results is None:
            self.title.setText(f"{plate}: {problem or 'no results yet'}")
        else:
            self.title.setText(f"{plate}: {len(rows)} rows of {folder / 'wells.csv'}")
        self.open_button.setEnabled(folder.is_dir())

    def _on_open_clicked(self, checked: bool = False) -> None:
        try:
            if self.folder is not None and not open_folder(self.folder):
                logger.warning("could not open %s in a file manager (no desktop session?)", self.folder)
                self.title.setToolTip(f"results folder: {self.folder}")
        except Exception:  # a slot must never raise (PyQt6 would abort)
            logger.exception("open output folder failed")
