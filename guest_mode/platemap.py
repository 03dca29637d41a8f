"""The live plate map: a plate's wells on its grid (96, 384 or 1,536, the smallest holding every well found),
coloured by state while it runs and by a measurement once its results are in, with a colour bar.

- :func:`well_states` (Qt-free) derives each well's state from the plate's state and the service's per-well
  progress (:attr:`~hcs_batch.workflow.progress.PlateProgress.wells`): ``queued``, ``running``, ``done``,
  ``failed`` (the well its plate's error names, or every unfinished well when the error names none; with a
  per-well report, ``"2 of 8 wells failed: A03: ...; B01: ..."``, exactly the wells it names, each with its own
  error, the other wells of the plate being done), and ``cancelled`` (unfinished wells of a cancelled plate).
- :class:`PlateMapWidget` paints the grid itself (one ``paintEvent``, no widget per well: a 1,536-well plate costs
  one repaint), shows a well's state, value and error on hover, and emits :attr:`PlateMapWidget.well_clicked`.
  "Colour by" offers "State" and every numeric column of the plate's ``wells.csv`` (mean per well; default
  ``object_count``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from PyQt6.QtCore import QEvent, QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QHelpEvent, QLinearGradient, QMouseEvent, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import QComboBox, QLabel, QSizePolicy, QToolTip, QWidget

from guest_mode.panel import lay_out_panel
from hcs_batch.model import PlateState
from hcs_batch.server.layouts.index import ROWS
from hcs_batch.server.plate_map import numeric_columns, plate_format, viridis, well_means, well_position
from hcs_batch.workflow.progress import PlateProgress, WellState

__all__ = ["STATE_COLORS", "STATE_MODE", "PlateMapWidget", "value_color", "well_states"]

STATE_MODE = "State"
"""The "Colour by" entry that colours wells by their state."""

STATE_COLORS = {
    "queued": QColor("#c8ccd2"),
    "running": QColor("#f2a93b"),
    "done": QColor("#3a9d5d"),
    "failed": QColor("#d7263d"),
    "cancelled": QColor("#6e6e6e"),
}
_NO_VALUE = QColor("#eeeeee")
_WELL_IN_ERROR = re.compile(r"\bwell ([A-Z]{1,2}\d{1,2})\b")
_PER_WELL_REPORT = re.compile(r"^\d+ of \d+ wells failed: ")
_REPORT_ENTRY = re.compile(r"(?:^\d+ of \d+ wells failed: |; )([A-Z]{1,2}\d{1,2}): ")
_REPORT_MORE = re.compile(r"; and \d+ more \(see manifest\.json\)$")


def _per_well_errors(error: str) -> tuple[dict[str, str], bool] | None:
    """From the server's per-well report (``"2 of 8 wells failed: A03: ...; B01: ..."``): each named well's own
    error, and whether the report leaves wells unnamed (``"; and 3 more"``); None for any other error."""
    if not _PER_WELL_REPORT.match(error):
        return None
    more = _REPORT_MORE.search(error)
    text = error[: more.start()] if more else error
    entries = list(_REPORT_ENTRY.finditer(text))
    ends = [entry.start() for entry in entries[1:]] + [len(text)]
    return {entry.group(1): text[entry.end() : end] for entry, end in zip(entries, ends, strict=True)}, bool(more)


def value_color(fraction: float) -> QColor:
    """Viridis at ``fraction`` (0..1, clipped): the colour scale of the map and of ``plate_map.png``."""
    return QColor.fromRgbF(*viridis(fraction))


def well_states(wells: Iterable[str], state: PlateState, progress: PlateProgress | None) -> dict[str, tuple[str, str]]:
    """Each well's (state, error) for a plate in ``state`` with ``progress`` (None: the plate is in no batch)."""
    seen = progress.wells if progress is not None else {}
    error = progress.error if progress is not None else ""
    named = set(_WELL_IN_ERROR.findall(error))
    report = _per_well_errors(error) if state is PlateState.FAILED else None
    result: dict[str, tuple[str, str]] = {}
    for well in wells:
        mark = seen.get(well)
        if state is PlateState.COMPLETED or mark is WellState.DONE:
            result[well] = ("done", "")
        elif report is not None:  # the wells failed alone: the others were computed (or reused)
            own, unnamed = report
            if well in own:
                result[well] = ("failed", f"{well}: {own[well]}")
            else:
                result[well] = ("failed", error) if unnamed else ("done", "")
        elif state is PlateState.FAILED and (well in named or not named):
            result[well] = ("failed", error)
        elif state in (PlateState.FAILED, PlateState.CANCELLED):
            result[well] = ("cancelled", "")
        elif mark is WellState.RUNNING and state is PlateState.RUNNING:
            result[well] = ("running", "")
        else:
            result[well] = ("queued", "")
    return result


class PlateMapWidget(QWidget):
    """The plate map of one plate. Feed it with :meth:`set_plate`, :meth:`set_states` and :meth:`set_results`."""

    well_clicked = pyqtSignal(str)
    """A well of the plate was clicked (its name)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plate = ""
        self.wells: list[str] = []
        self.rows, self.cols = plate_format(())
        self.states: dict[str, tuple[str, str]] = {}
        self.results: list[dict[str, str]] = []
        self.values: dict[str, float] = {}
        self.selected = ""
        self.title = QLabel("Plate map: select a plate")
        self.color_by = QComboBox()
        self.color_by.addItem(STATE_MODE)
        self.color_by.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.color_by.setToolTip("colour wells by their state, or by a measurement of wells.csv (mean per well)")
        self.canvas = _Canvas(self)
        lay_out_panel(self, self.title, [QLabel("Colour by:"), self.color_by], self.canvas)
        self.color_by.currentTextChanged.connect(self._on_mode_changed)

    # ------------------------------------------------------------------ feeding

    def set_plate(self, plate: str, wells: Sequence[str]) -> None:
        """Show ``plate`` with ``wells`` (its grid from them); states, results and the selection are cleared."""
        self.plate, self.wells = plate, list(wells)
        self.rows, self.cols = plate_format(self.wells)
        self.states, self.values, self.results, self.selected = {}, {}, [], ""
        self._set_columns([])
        self._retitle()
        self.canvas.update()

    def set_states(self, states: Mapping[str, tuple[str, str]]) -> None:
        """Each well's (state, error); repaints only when something changed."""
        if dict(states) != self.states:
            self.states = dict(states)
            self._retitle()
            self.canvas.update()

    def set_results(self, rows: Sequence[dict[str, str]], *, choose: bool = True) -> None:
        """The plate's ``wells.csv`` rows: "Colour by" offers its numeric columns; with ``choose``,
        ``object_count`` (else the first) is chosen, without it the choice is kept when still offered."""
        keep = self.mode
        self.results = list(rows)
        columns = numeric_columns(self.results)
        self._set_columns(columns)
        if not choose:
            self.color_by.setCurrentText(keep)
        elif columns:
            self.color_by.setCurrentText("object_count" if "object_count" in columns else columns[0])
        self._on_mode_changed(self.color_by.currentText())

    def select(self, well: str) -> None:
        """Outline ``well`` as the one shown in the well view."""
        self.selected = well
        self.canvas.update()

    @property
    def mode(self) -> str:
        """What colours the wells: :data:`STATE_MODE` or a column name."""
        return self.color_by.currentText()

    def set_mode(self, mode: str) -> None:
        self.color_by.setCurrentText(mode)

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the shown measurement ((0, 1) when none)."""
        finite = [v for v in self.values.values() if math.isfinite(v)]
        return (min(finite), max(finite)) if finite else (0.0, 1.0)

    def color_of(self, well: str) -> QColor:
        """The fill of ``well`` as painted now."""
        if self.mode == STATE_MODE:
            return STATE_COLORS[self.states.get(well, ("queued", ""))[0]]
        value = self.values.get(well)
        if value is None:
            return _NO_VALUE
        low, high = self.value_range()
        return value_color(0.5 if high == low else (value - low) / (high - low))

    def tooltip(self, well: str) -> str:
        """What hovering ``well`` shows: its name, state, value and (failed) error."""
        state, error = self.states.get(well, ("queued", ""))
        parts = [f"{well}: {state}"]
        if self.mode != STATE_MODE and well in self.values:
            parts.append(f"{self.mode} = {self.values[well]:.4g} (mean)")
        if error:
            parts.append(error if len(error) < 600 else error[:600] + "…")
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals

    def _set_columns(self, columns: list[str]) -> None:
        self.color_by.blockSignals(True)
        try:
            self.color_by.clear()
            self.color_by.addItem(STATE_MODE)
            self.color_by.addItems(columns)
        finally:
            self.color_by.blockSignals(False)

    def _on_mode_changed(self, mode: str) -> None:
        self.values = well_means(self.results, mode) if mode and mode != STATE_MODE else {}
        self.canvas.update()

    def _retitle(self) -> None:
        counts: dict[str, int] = {}
        for state, _ in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{n} {s}" for s in STATE_COLORS if (n := counts.get(s)))
        size = self.rows * self.cols
        self.title.setText(
            f"<b>{self.plate}</b> · {size}-well plate, {len(self.wells)} wells" + (f" · {summary}" if summary else "")
        )


class _Canvas(QWidget):
    """The painted grid, labels and colour bar of a :class:`PlateMapWidget`."""

    _BAR = 70  # pixels right of the grid for the colour bar or legend

    def __init__(self, owner: PlateMapWidget) -> None:
        super().__init__(owner)
        self.owner = owner
        self.setMouseTracking(True)
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def _geometry(self) -> tuple[float, float, float]:
        """(left, top, cell size) of the grid in this widget."""
        rows, cols = self.owner.rows, self.owner.cols
        label = 22.0
        cell = max(4.0, min((self.width() - label - self._BAR - 8) / cols, (self.height() - label - 4) / rows))
        return label, label, cell

    def well_rect(self, well: str) -> QRectF:
        """The cell of ``well`` in widget coordinates (empty for a name off the grid)."""
        pos = well_position(well)
        if pos is None:
            return QRectF()
        left, top, cell = self._geometry()
        return QRectF(left + pos[1] * cell, top + pos[0] * cell, cell, cell)

    def well_at(self, x: float, y: float) -> str | None:
        """The plate's well under (x, y), or None."""
        left, top, cell = self._geometry()
        col, row = math.floor((x - left) / cell), math.floor((y - top) / cell)
        if not (0 <= row < self.owner.rows and 0 <= col < self.owner.cols):
            return None
        name = f"{ROWS[row]}{col + 1:02d}"
        return name if name in self.owner.states or name in self.owner.wells else None

    def paintEvent(self, event: QPaintEvent | None) -> None:
        owner = self.owner
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            left, top, cell = self._geometry()
            rows, cols = owner.rows, owner.cols
            font = QFont(painter.font())
            font.setPointSizeF(max(5.0, min(9.0, cell * 0.45)))
            painter.setFont(font)
            painter.setPen(self.palette().text().color())
            step = 1 if cell >= 14 else 2 if cell >= 7 else 4
            for c in range(0, cols, step):
                painter.drawText(QRectF(left + c * cell, 0, cell * step, top), Qt.AlignmentFlag.AlignLeft, str(c + 1))
            for r in range(0, rows, 1 if cell >= 9 else 2):
                painter.drawText(QRectF(0, top + r * cell, left - 3, cell), _RIGHT_CENTER, ROWS[r])
            present = set(owner.wells)
            outline = QPen(QColor("#9aa0a6"), 0.6)
            for r in range(rows):
                for c in range(cols):
                    name = f"{ROWS[r]}{c + 1:02d}"
                    rect = QRectF(left + c * cell + 1, top + r * cell + 1, cell - 2, cell - 2)
                    if name in present:
                        painter.setPen(Qt.PenStyle.NoPen)
                        painter.setBrush(owner.color_of(name))
                    else:
                        painter.setPen(outline)
                        painter.setBrush(Qt.BrushStyle.NoBrush)
                    painter.drawEllipse(rect)
            if owner.selected:
                painter.setPen(QPen(self.palette().highlight().color(), 2.5))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(self.well_rect(owner.selected).adjusted(0.5, 0.5, -0.5, -0.5))
            self._paint_bar(painter, left + cols * cell + 12, top, rows * cell)
        finally:
            painter.end()

    def _paint_bar(self, painter: QPainter, x: float, top: float, height: float) -> None:
        owner = self.owner
        painter.setPen(self.palette().text().color())
        if owner.mode == STATE_MODE:
            y = top
            for state, color in STATE_COLORS.items():
                painter.setBrush(color)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.drawEllipse(QRectF(x, y + 2, 10, 10))
                painter.setPen(self.palette().text().color())
                painter.drawText(QPointF(x + 14, y + 11), state)
                y += 16
            return
        low, high = owner.value_range()
        bar_height = max(40.0, height - 24)
        gradient = QLinearGradient(0, top + 12 + bar_height, 0, top + 12)
        for i in range(11):
            gradient.setColorAt(i / 10, value_color(i / 10))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(gradient)
        painter.drawRect(QRectF(x, top + 12, 12, bar_height))
        painter.setPen(self.palette().text().color())
        painter.drawText(QPointF(x + 15, top + 20), f"{high:.3g}")
        painter.drawText(QPointF(x + 15, top + 12 + bar_height), f"{low:.3g}")
        painter.drawText(QPointF(x - 4, top + 6), "mean")

    def event(self, event: QEvent | None) -> bool:
        if event is not None and event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            well = self.well_at(event.pos().x(), event.pos().y())
            if well is None:
                QToolTip.hideText()
                event.ignore()
            else:
                QToolTip.showText(event.globalPos(), self.owner.tooltip(well), self)
            return True
        return super().event(event)

    def mousePressEvent(self, event: QMouseEvent | None) -> None:
        if event is None or event.button() != Qt.MouseButton.LeftButton:
            return
        well = self.well_at(event.position().x(), event.position().y())
        if well is not None:
            self.owner.select(well)
            self.owner.well_clicked.emit(well)


_RIGHT_CENTER = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
