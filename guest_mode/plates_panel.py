"""The plates dock's content: the plate count, the plate table, the executions started elsewhere, the batch bar,
and the rows' context menus (cancel one plate; cancel one execution started elsewhere).

Menus are built by :meth:`PlatesPanel.plate_menu` / :meth:`PlatesPanel.attached_menu` and shown with ``popup()``
(never ``exec()``, which would run a nested event loop and freeze Trio), so tests trigger their actions directly.
"""

from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtGui import QResizeEvent
from PyQt6.QtWidgets import QLabel, QMenu, QPlainTextEdit, QSplitter, QStyle, QTableView, QVBoxLayout, QWidget

from guest_mode.batch_bar import BatchBar
from guest_mode.session import BatchSession
from guest_mode.tables.executions import AttachedTableModel, AttachedTableView
from guest_mode.tables.plates import PlateTableModel, PlateTableView

__all__ = ["PlatesPanel", "WrappingLabel", "log_pane", "placeholder"]


class PlatesPanel(QWidget):
    """The plate list and what goes with it; the models are the window's."""

    def __init__(
        self,
        session: BatchSession,
        plate_model: PlateTableModel,
        attached_model: AttachedTableModel,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._session = session
        self.plate_model = plate_model
        self.attached_model = attached_model
        self.count_label = QLabel("no plates")
        self.table = PlateTableView(plate_model)
        self.batch_bar = BatchBar()
        self.attached_box = QWidget()
        attached_layout = QVBoxLayout(self.attached_box)
        attached_layout.setContentsMargins(0, 0, 0, 0)
        self.attached_label = QLabel("Started elsewhere (attached): Stop cancels them; right-click cancels one")
        self.attached_table = AttachedTableView(attached_model)
        attached_layout.addWidget(self.attached_label)
        attached_layout.addWidget(self.attached_table)
        self.attached_box.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.count_label)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.attached_box)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.batch_bar)

        for view, handler in ((self.table, self._on_plate_menu), (self.attached_table, self._on_attached_menu)):
            view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            view.customContextMenuRequested.connect(handler)

    def set_count(self, n: int) -> None:
        self.count_label.setText("no plates" if n == 0 else f"{n} plate{'s' if n != 1 else ''}")

    def plate_menu(self, row: int) -> QMenu:
        """The context menu of plate row ``row``: cancel that plate (enabled while it is live in a batch)."""
        controls = self._session.controls
        plates = self.plate_model.plates_at([row])
        if not plates:
            return QMenu(self)
        name = plates[0].name
        return _cancel_menu(self, f"Cancel plate {name}", controls.can_cancel_plate(name), controls.cancel_plate, name)

    def attached_menu(self, row: int) -> QMenu:
        """The context menu of an attached execution's row: cancel that execution only."""
        controls = self._session.controls
        rows = self.attached_model.rows
        if not 0 <= row < len(rows):
            return QMenu(self)
        execution_id = rows[row].execution_id
        text = f"Cancel {rows[row].plate_name} ({execution_id})"
        return _cancel_menu(
            self, text, controls.can_cancel_execution(execution_id), controls.cancel_execution, execution_id
        )

    def _on_plate_menu(self, pos: QPoint) -> None:
        _popup(self.table, pos, self.plate_menu)

    def _on_attached_menu(self, pos: QPoint) -> None:
        _popup(self.attached_table, pos, self.attached_menu)


def _popup(view: QTableView, pos: QPoint, build: object) -> None:
    index = view.indexAt(pos)
    viewport = view.viewport()
    if index.isValid() and viewport is not None and callable(build):
        menu = build(index.row())
        assert isinstance(menu, QMenu)
        menu.popup(viewport.mapToGlobal(pos))


def _cancel_menu(parent: QWidget, text: str, enabled: bool, cancel: Callable[[str], object], name: str) -> QMenu:
    """A context menu of one action, ``text`` with the cancel icon, that calls ``cancel(name)``."""
    menu = QMenu(parent)
    style = menu.style()
    icon = QStyle.StandardPixmap.SP_DialogCancelButton
    action = menu.addAction(style.standardIcon(icon), text) if style is not None else menu.addAction(text)
    assert action is not None
    action.setEnabled(enabled)
    action.triggered.connect(lambda *_: cancel(name))
    return menu


def log_pane() -> QPlainTextEdit:
    """The log dock's content: read-only, the last 5,000 lines."""
    pane = QPlainTextEdit()
    pane.setReadOnly(True)
    pane.setMaximumBlockCount(5000)
    pane.setPlaceholderText("errors and tracebacks of failed plates appear here")
    return pane


def placeholder(text: str) -> QLabel:
    """A greyed, centred line for a dock whose content is not there yet."""
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setEnabled(False)
    return label


class WrappingLabel(QLabel):
    """A word-wrapped label that asks for every line its text needs (the status bar's layout ignores
    height-for-width), so a long message (an unreachable server's) is shown whole, never cut off."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)

    def fit(self) -> None:
        self.setMinimumHeight(self.heightForWidth(self.width() if self.width() > 50 else 200))

    def resizeEvent(self, event: QResizeEvent | None) -> None:
        super().resizeEvent(event)
        self.fit()
