"""Dialogs without nested event loops: opened with ``.open()`` (window-modal, non-blocking) and awaited through a
``trio.Event`` set by their ``finished`` signal. A modal ``exec()`` from a Trio task would freeze every other Trio
task while it is open (NOTES.md); these never do.
"""

from __future__ import annotations

import trio
from PyQt6.QtWidgets import QDialog, QFileDialog, QMessageBox, QWidget

__all__ = ["ask", "open_dialog", "stop_question"]


async def open_dialog(dialog: QDialog) -> int:
    """Open ``dialog`` with ``.open()`` and wait until it is finished; return its result code.

    On cancellation the dialog is rejected (closed) and ``Cancelled`` propagates. The caller still owns the dialog.
    """
    finished = trio.Event()
    result: list[int] = []

    def on_finished(code: int) -> None:
        result.append(code)
        finished.set()

    dialog.finished.connect(on_finished)
    dialog.open()
    try:
        await finished.wait()
    finally:
        if not result:
            dialog.reject()
    return result[0]


def stop_question(parent: QWidget, text: str) -> QMessageBox:
    """The "Stop the batch?" question: Stop (destructive) or Continue, Continue the default."""
    box = QMessageBox(QMessageBox.Icon.Question, "Stop the batch?", text, QMessageBox.StandardButton.NoButton, parent)
    box.setObjectName("stop_question")
    stop = box.addButton("Stop", QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton("Continue", QMessageBox.ButtonRole.RejectRole)
    assert stop is not None and keep is not None
    stop.setObjectName("stop")
    keep.setObjectName("continue")
    box.setDefaultButton(keep)
    box.setEscapeButton(keep)
    return box


async def ask(box: QMessageBox, yes_name: str) -> bool:
    """Open ``box`` non-modally and return whether the button named ``yes_name`` was the one clicked."""
    await open_dialog(box)
    clicked = box.clickedButton()
    return clicked is not None and clicked.objectName() == yes_name


def file_dialog(parent: QWidget, title: str, mode: QFileDialog.FileMode, name_filter: str = "") -> QFileDialog:
    """Qt's own (non-native) file dialog, not yet open; a folder dialog shows no files."""
    dialog = QFileDialog(parent, title, "", name_filter)
    dialog.setFileMode(mode)
    if mode is QFileDialog.FileMode.Directory:
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    return dialog


async def chosen_paths(dialog: QFileDialog) -> list[str]:
    """Open ``dialog`` non-modally and wait for it; the paths picked, none when cancelled. The dialog is deleted
    afterwards (on cancellation too)."""
    try:
        code = await open_dialog(dialog)
    finally:
        dialog.deleteLater()
    return dialog.selectedFiles() if code == QFileDialog.DialogCode.Accepted else []
