"""The well view: one well's image (site and channel selectable, contrast-stretched) with its objects overlaid,
and its rows of the plate's results.

- :func:`load_well_image` (blocking, Qt-free; the window runs it in a thread) reads the plane with the server's own
  loader (:func:`hcs_batch.server.images.load_plane` on the plate index of
  :func:`hcs_batch.server.layouts.read_plate`), so every plate layout works, stretches it to 8 bits between its
  0.5th and 99.8th percentiles, and reads the image's objects (centroid and equivalent diameter) from
  ``objects.parquet``.
- :class:`WellView` shows it: "Centroids" marks each object's centre, "Outlines" draws its equivalent-diameter
  circle (``objects.parquet`` keeps shape measurements, not the masks). It never loads anything itself: it emits
  :attr:`WellView.image_wanted` when the site or channel changes, and the window loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from hcs_batch.server.images import load_plane
from hcs_batch.server.layouts import PlateIndex

from .results_view import CsvTableModel, sortable_table

__all__ = ["OVERLAYS", "WellImage", "WellView", "load_well_image", "stretch"]

OVERLAYS = ("Centroids", "Outlines", "None")


@dataclass(frozen=True, slots=True, kw_only=True)
class WellImage:
    """One loaded plane of a well, ready to paint."""

    well: str
    site: int
    channel: int
    timepoint: int
    pixels: NDArray[np.uint8]
    """The plane stretched to 0..255 (rows, columns)."""
    limits: tuple[float, float]
    """The raw intensities mapped to 0 and 255."""
    objects: NDArray[np.float64]
    """One row per object: x (column), y (row), equivalent diameter, in pixels."""


def stretch(plane: NDArray[Any], low: float = 0.5, high: float = 99.8) -> tuple[NDArray[np.uint8], float, float]:
    """``plane`` mapped to 0..255 between its ``low`` and ``high`` percentiles: (pixels, raw low, raw high)."""
    data = np.asarray(plane, dtype=np.float64)
    lo, hi = (float(v) for v in np.percentile(data, [low, high]))
    if hi <= lo:
        hi = lo + 1.0
    scaled = np.clip((data - lo) * (255.0 / (hi - lo)), 0, 255)
    return np.ascontiguousarray(scaled.astype(np.uint8)), lo, hi


def _objects(path: Path | None, well: str, site: int, timepoint: int) -> NDArray[np.float64]:
    empty = np.zeros((0, 3))
    if path is None or not path.is_file():
        return empty
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    if not {"Location_Center_X", "Location_Center_Y", "well", "site", "timepoint"} <= names:
        return empty
    columns = ["Location_Center_X", "Location_Center_Y"]
    if "AreaShape_EquivalentDiameter" in names:
        columns.append("AreaShape_EquivalentDiameter")
    filters = [("well", "=", well), ("site", "=", site), ("timepoint", "=", timepoint)]
    table = pq.read_table(path, columns=columns, filters=filters).to_pydict()
    xs, ys = table["Location_Center_X"], table["Location_Center_Y"]
    diameters = table.get("AreaShape_EquivalentDiameter") or [6.0] * len(xs)
    return np.array([xs, ys, diameters], dtype=np.float64).T.reshape(-1, 3)


def load_well_image(
    index: PlateIndex,
    well: str,
    site: int,
    channel: int,
    *,
    timepoint: int | None = None,
    objects_path: Path | None = None,
    projection: str = "max",
) -> WellImage:
    """Load, stretch and annotate one plane of ``well`` (blocking I/O: run it in a thread).

    ``timepoint`` None takes the well's first. Raises ``KeyError`` naming what the index lacks (well, site,
    channel), :class:`~hcs_batch.server.images.ImageError` for an unreadable image, and pyarrow's errors for a
    damaged ``objects.parquet``.
    """
    sets = index.wells.get(well)
    if not sets:
        raise KeyError(f"well {well} has no images in {index.path}")
    for set_site, set_timepoint, channels in sets:
        if set_site == site and (timepoint is None or set_timepoint == timepoint):
            sources = dict(channels).get(channel)
            if sources is None:
                raise KeyError(f"well {well} site {site} has no channel {channel}")
            plane = load_plane(index.path, sources, projection)
            pixels, lo, hi = stretch(plane)
            return WellImage(
                well=well,
                site=site,
                channel=channel,
                timepoint=set_timepoint,
                pixels=pixels,
                limits=(lo, hi),
                objects=_objects(objects_path, well, site, set_timepoint),
            )
    raise KeyError(f"well {well} has no site {site}")


def well_choices(index: PlateIndex, well: str) -> tuple[list[int], list[int]]:
    """The sites and channels ``well`` has in ``index`` (ascending)."""
    sets = index.wells.get(well, ())
    return sorted({s for s, _, _ in sets}), sorted({c for _, _, chans in sets for c, _ in chans})


class WellView(QWidget):
    """One well: its image with the chosen overlay, and its rows of ``wells.csv``."""

    image_wanted = pyqtSignal()
    """The site or channel changed: load :attr:`site` / :attr:`channel` of :attr:`well`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.well = ""
        self.image: WellImage | None = None
        self.title = QLabel("Well view: click a well of the plate map")
        self.site_box = QComboBox()
        self.channel_box = QComboBox()
        self.overlay_box = QComboBox()
        self.overlay_box.addItems(OVERLAYS)
        for box in (self.site_box, self.channel_box, self.overlay_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.canvas = _ImageCanvas(self)
        self.rows_model = CsvTableModel(self)
        self.rows_table = sortable_table(self.rows_model, self)
        bar = QHBoxLayout()
        bar.addWidget(self.title, 1)
        for label, box in (("Site", self.site_box), ("Channel", self.channel_box), ("Objects", self.overlay_box)):
            bar.addWidget(QLabel(label))
            bar.addWidget(box)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.canvas)
        split.addWidget(self.rows_table)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        self.site_box.activated.connect(lambda _: self.image_wanted.emit())
        self.channel_box.activated.connect(lambda _: self.image_wanted.emit())
        self.overlay_box.currentIndexChanged.connect(lambda _: self.canvas.update())

    @property
    def site(self) -> int:
        return int(self.site_box.currentData() or 1)

    @property
    def channel(self) -> int:
        return int(self.channel_box.currentData() or 1)

    @property
    def overlay(self) -> str:
        return self.overlay_box.currentText()

    def show_well(
        self,
        well: str,
        sites: Sequence[int],
        channels: Sequence[int],
        rows: Sequence[dict[str, str]],
        header: Sequence[str],
        channel_names: Mapping[int, str] | None = None,
    ) -> None:
        """Switch to ``well``: its choices (the current site and channel kept when it has them; channels by their
        names when the plate names them) and its rows."""
        self.well = well
        names = channel_names or {}
        for box, values, named in ((self.site_box, sites, {}), (self.channel_box, channels, names)):
            keep = box.currentData()
            box.clear()
            for value in values:
                box.addItem(f"{value} {named[value]}" if value in named else str(value), value)
            if keep in values:
                box.setCurrentIndex(list(values).index(keep))
        self.rows_model.set_rows(header, rows)
        self.title.setText(f"<b>{well}</b> · loading…")

    def show_image(self, image: WellImage) -> None:
        self.image = image
        lo, hi = image.limits
        self.title.setText(
            f"<b>{image.well}</b> · site {image.site} · channel {image.channel} · {len(image.objects)} objects"
            f" · display {lo:.0f} to {hi:.0f}"
        )
        self.canvas.set_pixels(image.pixels)

    def clear(self) -> None:
        """Show nothing (another plate was chosen)."""
        self.well = ""
        self.image = None
        self.rows_model.set_rows([], [])
        self.title.setText("Well view: click a well of the plate map")
        self.canvas.set_pixels(None)

    def show_problem(self, text: str) -> None:
        self.image = None
        self.title.setText(f"<b>{self.well}</b> · {text}")
        self.canvas.set_pixels(None)


class _ImageCanvas(QWidget):
    """Paints the stretched plane scaled to fit (aspect kept) and the objects in image coordinates."""

    def __init__(self, owner: WellView) -> None:
        super().__init__(owner)
        self.owner = owner
        self.qimage: QImage | None = None
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_pixels(self, pixels: NDArray[np.uint8] | None) -> None:
        if pixels is None:
            self.qimage = None
        else:
            h, w = pixels.shape
            # copy(): the QImage must own its bytes, the array may go away.
            self.qimage = QImage(pixels.tobytes(), w, h, w, QImage.Format.Format_Grayscale8).copy()
        self.update()

    def image_rect(self) -> QRectF:
        """Where the image is drawn in this widget (empty when there is none)."""
        if self.qimage is None:
            return QRectF()
        w, h = self.qimage.width(), self.qimage.height()
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), QColor("#101010"))
            image, shown = self.qimage, self.owner.image
            if image is None or shown is None:
                return
            target = self.image_rect()
            painter.drawImage(target, image)
            overlay = self.owner.overlay
            if overlay == "None" or not len(shown.objects):
                return
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            scale = target.width() / image.width()
            painter.translate(target.topLeft())
            painter.scale(scale, scale)
            colour = QColor(255, 60, 200) if overlay == "Outlines" else QColor(40, 255, 90)
            # Twice: a dark halo, then the colour, so the marks read on bright nuclei and dark background alike.
            for pen_colour, width in ((QColor(0, 0, 0, 170), 3.2), (colour, 1.4)):
                pen = QPen(pen_colour)
                pen.setCosmetic(True)
                pen.setWidthF(width)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                self._paint_objects(painter, shown.objects, overlay, scale)
        finally:
            painter.end()

    @staticmethod
    def _paint_objects(painter: QPainter, objects: NDArray[np.float64], overlay: str, scale: float) -> None:
        """Each object in image coordinates: a cross at its centroid, or its equivalent-diameter circle."""
        arm = max(1.5, 4.5 / scale)
        # Pixel centres: pixel (x, y) covers x..x+1, so a centroid at x is drawn at x + 0.5.
        for x, y, diameter in objects:
            centre = QPointF(x + 0.5, y + 0.5)
            if overlay == "Outlines":
                r = max(1.5, diameter / 2)
                painter.drawEllipse(centre, r, r)
            else:
                painter.drawLine(centre - QPointF(arm, 0), centre + QPointF(arm, 0))
                painter.drawLine(centre - QPointF(0, arm), centre + QPointF(0, arm))
