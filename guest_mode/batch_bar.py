"""The overall bar of a batch: finished plates out of all, split by outcome so that a batch whose plates were all
cancelled (or mostly failed) never looks like a full, successful bar.

Green: done (completed, or compiled in a compile batch); red: failed; grey: cancelled; the rest of the groove is
what is still to finish. The text says the same in words, e.g. ``5 / 5 plates · 2 done · 3 failed``.
"""

from __future__ import annotations

from PyQt6.QtCore import QRect, QSize, Qt
from PyQt6.QtGui import QColor, QPainter, QPaintEvent, QPalette
from PyQt6.QtWidgets import QSizePolicy, QWidget

__all__ = ["COLORS", "BatchBar"]

COLORS = {"done": QColor(46, 139, 87), "failed": QColor(200, 40, 40), "cancelled": QColor(140, 140, 140)}
"""The colour of each outcome's segment."""


class BatchBar(QWidget):
    """Finished plates of the latest batch by outcome; :meth:`set_counts` updates it, ``value``/``maximum`` read
    it as a ``QProgressBar``'s would (finished plates, all plates)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._counts = {"done": 0, "failed": 0, "cancelled": 0}
        self._finished = 0
        self._total = 0
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(22)

    def set_counts(self, *, done: int, failed: int, cancelled: int, finished: int, total: int) -> None:
        """Show ``finished`` of ``total`` plates, of which ``done``, ``failed`` and ``cancelled`` (a finished plate
        not yet counted by outcome is drawn as done until its outcome arrives)."""
        counts = {"done": done, "failed": failed, "cancelled": cancelled}
        if (counts, finished, total) != (self._counts, self._finished, self._total):
            self._counts, self._finished, self._total = counts, finished, total
            self.setToolTip(self.text())
            self.update()

    def value(self) -> int:
        """Finished plates."""
        return self._finished

    def maximum(self) -> int:
        """Plates of the batch (0 before the first batch)."""
        return self._total

    def counts(self) -> dict[str, int]:
        """Finished plates by outcome: ``done``, ``failed``, ``cancelled``."""
        return dict(self._counts)

    def text(self) -> str:
        """What the bar says."""
        if not self._total:
            return "no batch yet"
        parts = [f"{self._finished} / {self._total} plates"]
        parts += [f"{n} {name}" for name, n in self._counts.items() if n]
        return " · ".join(parts)

    def segments(self) -> list[tuple[str, float]]:
        """The coloured segments, left to right: (outcome, fraction of the bar)."""
        if not self._total:
            return []
        counted = sum(self._counts.values())
        pending_done = max(self._finished - counted, 0)  # finished, outcome not yet announced
        widths = {**self._counts, "done": self._counts["done"] + pending_done}
        return [(name, n / self._total) for name, n in widths.items() if n]

    def sizeHint(self) -> QSize:
        return QSize(240, 22)

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        try:
            rect = self.rect().adjusted(0, 0, -1, -1)
            palette = self.palette()
            painter.setPen(palette.color(QPalette.ColorRole.Mid))
            painter.setBrush(palette.color(QPalette.ColorRole.Base))
            painter.drawRect(rect)
            inner = rect.adjusted(1, 1, 0, 0)
            x = inner.left()
            segments = self.segments()
            for index, (name, fraction) in enumerate(segments):
                right = inner.right() + 1 if index == len(segments) - 1 and self._finished >= self._total else None
                width = (right - x) if right is not None else round(fraction * inner.width())
                painter.fillRect(QRect(x, inner.top(), width, inner.height()), COLORS[name])
                x += width
            painter.setPen(palette.color(QPalette.ColorRole.Text))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.text())
        finally:
            painter.end()
