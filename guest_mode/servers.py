"""The server field: an editable URL box that offers the servers this user runs on this machine.

The offers come from the server registry (``hcs_batch.server.registry``, issue 14: every ``hcs-batch serve``
registers itself in a per-user runtime folder). Reading it is a glance at a few small files, done when the list is
about to open, so it is never stale by more than one click. Without a registry (an older library) the field is a
plain URL box. Empty means an embedded local server.
"""

from __future__ import annotations

import logging

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QComboBox, QLineEdit, QWidget

__all__ = ["ServerField", "local_servers"]

log = logging.getLogger("guest_mode.servers")


def local_servers() -> dict[str, str]:
    """The live servers in this user's registry, oldest first: URL -> a tooltip naming its process, start time,
    executor and workers. Empty when there is none (or no registry). Never raises: a registry that cannot be read
    offers nothing."""
    try:
        from hcs_batch.server import registry
    except ImportError:
        return {}
    try:
        entries = registry.read_entries()
    except Exception:  # a damaged registry must not break the window; read_entries skips bad files itself
        log.exception("reading the server registry failed")
        return {}
    return {
        e.url: f"pid {e.pid}, started {e.started_at}, {e.executor} executor, {e.workers} workers"
        + (", CurveZMQ keys required" if getattr(e, "curve", False) else "")
        for e in entries
    }


class ServerField(QComboBox):
    """An editable combo box: type a URL, or pick one of this machine's servers (listed afresh on every open)."""

    def __init__(self, url: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(24)
        edit = self.lineEdit()
        assert edit is not None
        edit.setPlaceholderText("embedded local server")
        edit.setClearButtonEnabled(True)
        self.setToolTip(
            "Server URL (tcp://HOST:PORT); empty: an embedded local server. The list shows this machine's servers."
        )
        self.setEditText(url or "")

    @property
    def edit(self) -> QLineEdit:
        edit = self.lineEdit()
        assert edit is not None
        return edit

    def url(self) -> str | None:
        """The URL typed or picked; None (an embedded server) when empty."""
        return self.currentText().strip() or None

    def refresh(self) -> dict[str, str]:
        """List this machine's servers again, keeping what is typed; returns them (URL -> tooltip)."""
        typed = self.currentText()
        servers = local_servers()
        self.blockSignals(True)
        try:
            self.clear()
            for url, detail in servers.items():
                self.addItem(url, url)
                self.setItemData(self.count() - 1, detail, Qt.ItemDataRole.ToolTipRole)
            self.setCurrentIndex(-1)
            self.setEditText(typed)
        finally:
            self.blockSignals(False)
        return servers

    def offered(self) -> list[str]:
        """The URLs in the list now."""
        return [self.itemText(i) for i in range(self.count())]

    def showPopup(self) -> None:
        self.refresh()
        super().showPopup()
