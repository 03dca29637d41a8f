"""The window's actions: one ``QAction`` per command, with a Qt standard icon, a keyboard shortcut and a tooltip
that names it; the toolbar shows them as buttons. Run is Ctrl+R, Stop Ctrl+. (Ctrl+period), Compile Ctrl+B,
Pause/Resume Ctrl+P, Add plates Ctrl+O, Output folder Ctrl+Shift+O.
"""

from __future__ import annotations

from dataclasses import dataclass

from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import QAbstractButton, QComboBox, QLabel, QMainWindow, QPushButton, QStyle, QToolBar, QWidget

from guest_mode.servers import ServerField

__all__ = ["BUILTIN_PIPELINE_LABEL", "SHORTCUTS", "Actions", "SetupBar", "build_actions", "toolbar_buttons"]

BUILTIN_PIPELINE_LABEL = "Built-in: nucleus counter"

SP = QStyle.StandardPixmap

SHORTCUTS = {
    "add": "Ctrl+O",
    "compile": "Ctrl+B",
    "run": "Ctrl+R",
    "pause": "Ctrl+P",
    "stop": "Ctrl+.",
    "output": "Ctrl+Shift+O",
}
"""The keyboard shortcut of each action (portable text, as ``QKeySequence`` reads it)."""

_SPECS = {
    # name: (text, icon, tooltip)
    "add": ("Add plates…", SP.SP_DirOpenIcon, "Add plate folders to the list"),
    "remove": ("Remove", SP.SP_TrashIcon, "Remove the selected plates from the list"),
    "compile": ("Compile", SP.SP_BrowserReload, "Compile the selected plates (all when none is selected)"),
    "run": ("Run", SP.SP_MediaPlay, "Compile, then run the selected plates (all when none is selected)"),
    "pause": ("Pause", SP.SP_MediaPause, "Pause the batch: running wells finish, no new well starts"),
    "stop": ("Stop", SP.SP_MediaStop, "Stop the batch (asks first) and cancel its executions on the server"),
    "output": ("Output folder…", SP.SP_DirIcon, "Choose where run batches write their results"),
}


@dataclass(frozen=True, slots=True)
class Actions:
    """The window's commands."""

    add: QAction
    remove: QAction
    compile: QAction
    run: QAction
    pause: QAction
    stop: QAction
    output: QAction


def build_actions(window: QMainWindow) -> tuple[Actions, QToolBar]:
    """Make the actions (children of ``window``, so their shortcuts work anywhere in it) and the toolbar that
    shows them."""
    style = window.style()
    assert style is not None
    made: dict[str, QAction] = {}
    for name, (text, icon, tip) in _SPECS.items():
        action = QAction(style.standardIcon(icon), text, window)
        action.setObjectName(f"action_{name}")
        shortcut = SHORTCUTS.get(name)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            tip = f"{tip} ({QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)})"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        window.addAction(action)
        made[name] = action
    actions = Actions(**made)
    toolbar = QToolBar("Batch", window)
    toolbar.setObjectName("batch_toolbar")
    toolbar.setIconSize(QSize(20, 20))
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for group in (("add", "remove"), ("compile", "run", "pause", "stop"), ("output",)):
        if toolbar.actions():
            toolbar.addSeparator()
        for name in group:
            toolbar.addAction(made[name])
    return actions, toolbar


@dataclass(frozen=True, slots=True)
class Buttons:
    """The toolbar's button of each action (it follows the action's enabled state and text)."""

    add: QAbstractButton
    remove: QAbstractButton
    compile: QAbstractButton
    run: QAbstractButton
    pause: QAbstractButton
    stop: QAbstractButton
    output: QAbstractButton


def toolbar_buttons(toolbar: QToolBar, actions: Actions) -> Buttons:
    """The buttons ``toolbar`` shows for ``actions``."""
    found: dict[str, QAbstractButton] = {}
    for name in Actions.__slots__:
        button = toolbar.widgetForAction(getattr(actions, name))
        assert isinstance(button, QAbstractButton)
        found[name] = button
    return Buttons(**found)


class SetupBar(QToolBar):
    """Pipeline and server: what a batch runs and where (the pipeline chooser, the server field, Connect)."""

    def __init__(self, server: str | None, parent: QWidget | None = None) -> None:
        super().__init__("Pipeline and server", parent)
        self.setObjectName("setup_toolbar")
        self.addWidget(QLabel(" Pipeline: "))
        self.pipeline_combo = QComboBox()
        self.pipeline_combo.addItem(BUILTIN_PIPELINE_LABEL, None)
        self.pipeline_combo.setMinimumContentsLength(20)
        self.addWidget(self.pipeline_combo)
        self.pipeline_button = QPushButton("Open…")
        self.addWidget(self.pipeline_button)
        self.addSeparator()
        self.addWidget(QLabel(" Server: "))
        self.server_field = ServerField(server)
        self.addWidget(self.server_field)
        self.connect_button = QPushButton("Connect")
        self.addWidget(self.connect_button)
