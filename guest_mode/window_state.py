"""The window's remembered state: geometry and the dock and toolbar layout, in QSettings (an INI file of this
user: ``~/.config/hcs_batch/plate-manager.ini`` on Linux).

Tests redirect it with ``QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tmp)``. A
state that cannot be restored (another version's, or a damaged file) is ignored: the window keeps its default
layout.
"""

from __future__ import annotations

from PyQt6.QtCore import QByteArray, QCoreApplication, QSettings
from PyQt6.QtWidgets import QMainWindow

__all__ = ["APPLICATION", "ORGANIZATION", "STATE_VERSION", "restore", "save", "settings"]

ORGANIZATION = "hcs_batch"
APPLICATION = "plate-manager"
STATE_VERSION = 1
"""Bumped when the docks change: a saved layout of another version is not applied."""


def settings() -> QSettings:
    """This user's settings of the plate manager (the application's organization name, if it set one)."""
    organization = QCoreApplication.organizationName() or ORGANIZATION
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, organization, APPLICATION)


def save(window: QMainWindow) -> None:
    """Remember ``window``'s geometry and dock layout."""
    store = settings()
    store.setValue("window/geometry", window.saveGeometry())
    store.setValue("window/state", window.saveState(STATE_VERSION))
    store.sync()


def restore(window: QMainWindow) -> bool:
    """Apply the remembered geometry and dock layout to ``window``; False when there was nothing (usable)."""
    store = settings()
    geometry = store.value("window/geometry")
    state = store.value("window/state")
    restored = isinstance(geometry, QByteArray) and window.restoreGeometry(geometry)
    if isinstance(state, QByteArray):
        restored = window.restoreState(state, STATE_VERSION) and restored
    return bool(restored)
