"""The table models: a repaint asks only for the rows on screen (10,000 plates cost what 30 do), state colours,
tooltips, and the attached table following the session's rows."""

from __future__ import annotations

import time
from pathlib import Path

import trio
from PyQt6.QtCore import QModelIndex, Qt
from PyQt6.QtGui import QColor

from guest_mode.session import BatchSession
from guest_mode.tables.plates import PlateTableModel, PlateTableView
from hcs_batch.model import PlateRef
from hcs_batch.workflow.service import BatchKind

from .conftest import InMemoryServer, RecordingView


class CountingModel(PlateTableModel):
    """The real model, counting how many cells the view asks for."""

    asked = 0

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        self.asked += 1
        return super().data(index, role)


def refs(n: int) -> list[PlateRef]:
    return [PlateRef(name=f"plate_{i:05d}", path=Path("/plates") / f"plate_{i:05d}") for i in range(n)]


def session() -> BatchSession:
    return BatchSession(RecordingView(), pipeline=lambda: "# p\n", open_backend=InMemoryServer().open)


def test_a_repaint_of_10000_rows_reads_only_the_rows_on_screen(qtbot):
    model = CountingModel(session())
    view = PlateTableView(model)
    qtbot.addWidget(view)
    view.resize(900, 400)
    view.show()
    model.add(refs(10_000))
    viewport = view.viewport()
    assert viewport is not None
    viewport.grab()  # paints synchronously, exposed or not
    model.asked = 0
    started = time.perf_counter()
    model.refresh()
    viewport.grab()
    elapsed = time.perf_counter() - started
    visible_rows = viewport.height() // view.rowHeight(0) + 2
    assert model.rowCount() == 10_000
    assert 0 < model.asked <= visible_rows * 4 * 12, model.asked  # 4 columns, a dozen roles a cell at most
    assert elapsed < 5.0, f"refresh + repaint of 10,000 rows took {elapsed * 1e3:.1f} ms"  # a hang guard


def test_add_and_remove_keep_names_rows_and_order(qtbot):
    model = PlateTableModel(session())
    model.add(refs(5))
    model.remove(["plate_00001", "plate_00003", "unknown"])
    assert [p.name for p in model.plates] == ["plate_00000", "plate_00002", "plate_00004"]
    assert model.plate("plate_00002") == refs(5)[2]
    assert model.plate("plate_00001") is None
    assert [p.name for p in model.plates_at([2, 0, 7])] == ["plate_00000", "plate_00004"]
    assert model.data(model.index(1, 0), Qt.ItemDataRole.ToolTipRole) == "/plates/plate_00002"
    assert model.headerData(2, Qt.Orientation.Horizontal) == "Progress"
    assert model.headerData(3, Qt.Orientation.Horizontal) == "Pipeline"
    assert model.pipeline("plate_00000") == ""  # not compiled yet


async def test_rows_show_state_colour_and_progress_from_the_session(qtbot, autojump_clock):
    server = InMemoryServer(execute_failures={"plate_00001": "ValueError: bad"})
    view = RecordingView()
    batch = BatchSession(view, pipeline=lambda: "# p\n", open_backend=server.open)
    model = PlateTableModel(batch)
    plates = refs(3)
    model.add(plates)
    assert [model.state_text(p.name) for p in plates] == ["idle"] * 3
    async with trio.open_nursery() as nursery:
        await nursery.start(batch.serve)
        await batch.wait_connection()
        await batch.run_batch(BatchKind.RUN, plates)
        batch.request_close()
    assert [model.data(model.index(row, 1)) for row in range(3)] == ["completed", "failed", "completed"]
    assert [model.data(model.index(row, 2)) for row in range(3)] == [100, 100, 100]  # it failed at its end
    colours = [model.data(model.index(row, 1), Qt.ItemDataRole.ForegroundRole).color() for row in range(3)]
    green, red = QColor(Qt.GlobalColor.darkGreen), QColor(Qt.GlobalColor.red)
    assert colours == [green, red, green]
    assert model.data(model.index(0, 0), Qt.ItemDataRole.ForegroundRole) is None
