"""The window's layout: docks (plates | plate map | well view side by side, the log below) and the status bar.

Each dock has an ``objectName``, so ``QMainWindow.saveState()`` (:mod:`guest_mode.window_state`) remembers it. The
plate map and well view docks start with a placeholder; the data views replace it.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QDockWidget, QLabel, QMainWindow, QWidget

from guest_mode.plates_panel import WrappingLabel, placeholder

__all__ = ["lay_out_docks", "lay_out_status_bar"]


def _dock(window: QMainWindow, name: str, title: str, widget: QWidget) -> QDockWidget:
    dock = QDockWidget(title, window)
    dock.setObjectName(f"{name}_dock")  # saveState() names docks by objectName
    dock.setWidget(widget)
    return dock


def lay_out_docks(
    window: QMainWindow, plates: QWidget, log: QWidget
) -> tuple[QDockWidget, QDockWidget, QDockWidget, QDockWidget]:
    """Put ``plates``, a plate map, a well view and ``log`` in docks of ``window``; returns the four docks."""
    central = QWidget()  # Qt needs a central widget; hidden, the docks share all the room
    window.setCentralWidget(central)
    central.hide()
    plates_dock = _dock(window, "plates", "Plates", plates)
    plate_map_dock = _dock(window, "plate_map", "Plate map", placeholder("Select a plate"))
    well_view_dock = _dock(window, "well_view", "Well view", placeholder("Click a well"))
    log_dock = _dock(window, "log", "Log", log)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, plates_dock)
    window.splitDockWidget(plates_dock, plate_map_dock, Qt.Orientation.Horizontal)
    window.splitDockWidget(plate_map_dock, well_view_dock, Qt.Orientation.Horizontal)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, log_dock)
    window.resizeDocks([plates_dock, plate_map_dock, well_view_dock], [380, 520, 540], Qt.Orientation.Horizontal)
    window.resizeDocks([plates_dock, log_dock], [680, 160], Qt.Orientation.Vertical)  # the log: a few lines
    return plates_dock, plate_map_dock, well_view_dock, log_dock


def lay_out_status_bar(window: QMainWindow) -> tuple[WrappingLabel, QLabel]:
    """The status bar: the server's status (wrapped, so an error shows whole) and where results go."""
    server_label = WrappingLabel()
    server_label.setWordWrap(True)
    server_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    output_label = QLabel()
    output_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    status_bar = window.statusBar()
    assert status_bar is not None
    status_bar.addWidget(server_label, 1)
    status_bar.addPermanentWidget(output_label)
    return server_label, output_label
