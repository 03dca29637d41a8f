"""A data panel's layout, written once: a bar (the title, stretched, then its tools) over one body widget that
takes the remaining room, without margins (the dock draws the frame)."""

from __future__ import annotations

from PyQt6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

__all__ = ["lay_out_panel"]


def lay_out_panel(owner: QWidget, title: QLabel, tools: list[QWidget], body: QWidget) -> None:
    """Give ``owner`` its layout: ``title`` and ``tools`` in a row above ``body``."""
    bar = QHBoxLayout()
    bar.addWidget(title, 1)
    for tool in tools:
        bar.addWidget(tool)
    layout = QVBoxLayout(owner)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addLayout(bar)
    layout.addWidget(body, 1)
