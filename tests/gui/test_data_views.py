"""The plate map, well view and results (issue 15) in the real window on a real embedded server (offscreen)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import trio
from PyQt6.QtCore import QEvent, QPoint, Qt
from PyQt6.QtGui import QColor, QHelpEvent
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication, QToolTip

from guest_mode.platemap import STATE_COLORS, STATE_MODE, value_color, well_states
from guest_mode.results_view import SORT_ROLE, open_folder
from guest_mode.window import PlateManagerWindow
from hcs_batch.model import PlateState
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.server.plate_map import well_means
from hcs_batch.testing.plates import make_plates
from hcs_batch.workflow.progress import PlateProgress, WellState
from hcs_batch.workflow.service import BatchKind

from ..support.slow_steps import release_gate
from .conftest import guest, serving


def make_window(qtbot, tmp_path: Path, *, wells: int, size: int, sites: int = 1) -> PlateManagerWindow:
    folders = make_plates(tmp_path / "plates", plates=1, wells=wells, sites=sites, size=size, seed=4)
    window = PlateManagerWindow(output_dir=tmp_path / "results", workers=1)
    qtbot.addWidget(window)
    window.add_plates(folders)
    return window


def record_states(window: PlateManagerWindow, on_change: Callable[[dict[str, str]], object]) -> list[dict[str, str]]:
    """Every distinct set of well states the map was given, in order; each new one also goes to ``on_change``."""
    seen: list[dict[str, str]] = []
    plate_map = window.data_views.plate_map
    original = plate_map.set_states

    def recording(states):  # type: ignore[no-untyped-def]
        flat = {well: state for well, (state, _) in states.items()}
        if not seen or seen[-1] != flat:
            seen.append(flat)
            on_change(flat)
        original(states)

    plate_map.set_states = recording  # type: ignore[method-assign]
    return seen


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_well_states_follow_progress_and_name_the_failed_well() -> None:
    wells = ["A01", "A02", "A03"]
    progress = PlateProgress(state=PlateState.RUNNING, wells={"A01": WellState.DONE, "A02": WellState.RUNNING})
    assert well_states(wells, PlateState.RUNNING, progress) == {
        "A01": ("done", ""),
        "A02": ("running", ""),
        "A03": ("queued", ""),
    }
    error = "plate P: well A02 site 1 timepoint 1: cannot read image A02_s1_w1.tif: broken"
    failed = PlateProgress(state=PlateState.FAILED, error=error, wells=dict(progress.wells))
    assert well_states(wells, PlateState.FAILED, failed) == {
        "A01": ("done", ""),
        "A02": ("failed", error),
        "A03": ("cancelled", ""),
    }
    # Wells that failed alone (the server's per-well report): exactly those, each with its own error.
    report = "2 of 3 wells failed: A01: site 1: cannot read image A01_s1_w1.tif: x; y; A03: step s failed: z"
    alone = PlateProgress(state=PlateState.FAILED, error=report, wells={})
    assert well_states(wells, PlateState.FAILED, alone) == {
        "A01": ("failed", "A01: site 1: cannot read image A01_s1_w1.tif: x; y"),
        "A02": ("done", ""),
        "A03": ("failed", "A03: step s failed: z"),
    }
    more = PlateProgress(state=PlateState.FAILED, error="7 of 8 wells failed: A01: e; and 6 more (see manifest.json)")
    assert well_states(wells, PlateState.FAILED, more)["A01"] == ("failed", "A01: e")
    assert well_states(wells, PlateState.FAILED, more)["A02"][0] == "failed"
    # An error that names no well (the plate could not be read) fails every unfinished well with it.
    whole = PlateProgress(state=PlateState.FAILED, error="no images", wells={})
    assert {s for s, _ in well_states(wells, PlateState.FAILED, whole).values()} == {"failed"}
    assert well_states(wells, PlateState.COMPLETED, None)["A03"] == ("done", "")


@guest
async def test_map_shows_states_while_running_then_counts_and_a_click_shows_the_well(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, wells=6, size=256, sites=2)
    # The first well waits at a gate until released: the map must show it running and the others queued.
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    pipeline = tmp_path / "gated.toml"
    gate = f'[[steps]]\nfunc = "tests.support.slow_steps:gate"\ngate_dir = "{gate_dir}"\n\n'
    text = default_pipeline_text()
    pipeline.write_text(text.replace("[[steps]]", gate + "[[steps]]", 1))
    window.add_pipeline_file(pipeline)
    views = window.data_views
    first_running = trio.Event()
    expected = {"A01": "running", **{f"A0{i}": "queued" for i in range(2, 7)}}
    seen = record_states(window, lambda states: states == expected and first_running.set())
    async with serving(window, limit=120):
        await window.session.wait_connection()
        window.refresh_now()
        await views.wait_loaded()
        assert views.plate_map.wells == ["A01", "A02", "A03", "A04", "A05", "A06"]
        assert (views.plate_map.rows, views.plate_map.cols) == (8, 12)  # six wells of row A: a 96-well plate

        summaries = []

        async def run() -> None:
            summaries.append(await window.run_batch(BatchKind.RUN))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await first_running.wait()
            assert views.plate_map.color_of("A01") == STATE_COLORS["running"]
            assert views.plate_map.color_of("A02") == STATE_COLORS["queued"]
            assert "1 running" in views.plate_map.title.text() and "5 queued" in views.plate_map.title.text()
            release_gate(gate_dir)
        summary = summaries[0]
        assert summary.exit_code() == 0, window.log_pane.toPlainText()
        window.refresh_now()
        await views.wait_loaded()

        # Each well went queued -> running -> done, never back; and the map ended all done.
        order = {"queued": 0, "running": 1, "done": 2}
        for well in views.plate_map.wells:
            ranks = [order[states[well]] for states in seen]
            assert ranks == sorted(ranks), (well, seen)
        assert seen[-1] == dict.fromkeys(views.plate_map.wells, "done")

        # Done: coloured by the mean object count of wells.csv, with every numeric column offered.
        plate_dir = tmp_path / "results" / window.plates[0].name
        rows = read_rows(plate_dir / "wells.csv")
        means = well_means(rows)
        plate_map = views.plate_map
        assert plate_map.mode == "object_count"
        offered = [plate_map.color_by.itemText(i) for i in range(plate_map.color_by.count())]
        assert offered[:3] == [STATE_MODE, "object_count", "mean_intensity"]
        low, high = min(means.values()), max(means.values())
        assert low < high
        for well, mean in means.items():
            assert plate_map.color_of(well) == value_color((mean - low) / (high - low)), well
        assert "object_count = " in plate_map.tooltip(max(means, key=means.__getitem__))
        assert (plate_dir / "plate_map.png").is_file()

        # The results tab: wells.csv, sortable numerically.
        table = views.results_view.table
        assert table.model().rowCount() == len(rows) == 6 * 2
        column = views.results_view.model.header.index("object_count")
        table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
        shown = [table.model().index(r, column).data(SORT_ROLE) for r in range(len(rows))]
        assert shown == sorted((float(r["object_count"]) for r in rows), reverse=True)
        assert open_folder(plate_dir) is False  # offscreen: nothing launched, nothing raised

        # A click on a well: its image, its objects overlaid, its rows.
        well = "A04"
        canvas = plate_map.canvas
        QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.well_rect(well).center().toPoint())
        await views.wait_loaded()
        view = views.well_view
        assert view.image is not None and (view.image.well, view.image.site) == (well, 1)
        site_rows = [r for r in rows if r["well"] == well and r["site"] == "1" and r["channel"] == "1"]
        assert len(view.image.objects) == int(site_rows[0]["object_count"]) > 0
        column = view.rows_model.header.index("well")
        assert view.rows_model.rowCount() == 2 and {r[column] for r in view.rows_model.rows} == {well}
        # The overlay is drawn where the objects are, and only when asked for.
        x, y, _ = view.image.objects[0]
        target = view.canvas.image_rect()
        scale = target.width() / view.image.pixels.shape[1]
        at = QPoint(int(target.left() + (x + 0.5) * scale), int(target.top() + (y + 0.5) * scale))
        view.overlay_box.setCurrentText("Centroids")
        marked = QColor(view.canvas.grab().toImage().pixel(at))
        view.overlay_box.setCurrentText("None")
        plain = QColor(view.canvas.grab().toImage().pixel(at))
        assert marked.green() > 200 and marked.red() < 150, marked.name()
        assert plain.red() == plain.green() == plain.blue()  # grey image pixel

        # Site 2 of the same well: another image, its own objects.
        view.site_box.setCurrentIndex(1)
        view.site_box.activated.emit(1)
        await views.wait_loaded()
        assert view.image is not None and view.image.site == 2
        site2 = [r for r in rows if r["well"] == well and r["site"] == "2" and r["channel"] == "1"]
        assert len(view.image.objects) == int(site2[0]["object_count"])


@guest
async def test_a_failed_well_shows_red_with_its_error_on_hover(qtbot, tmp_path):
    window = make_window(qtbot, tmp_path, wells=4, size=64)
    (window.plates[0].path / "A03_s1_w1.tif").write_bytes(b"not a tiff at all")
    views = window.data_views
    async with serving(window, limit=120):
        await window.session.wait_connection()
        summary = await window.run_batch(BatchKind.RUN)
        assert summary.exit_code() == 1
        window.refresh_now()
        await views.wait_loaded()
        plate_map = views.plate_map
        assert plate_map.mode == STATE_MODE
        assert plate_map.states["A03"][0] == "failed"
        assert plate_map.color_of("A03") == STATE_COLORS["failed"]
        assert [plate_map.states[w][0] for w in ("A01", "A02")] == ["done", "done"]
        tip = plate_map.tooltip("A03")
        assert tip.startswith("A03: failed") and "A03_s1_w1.tif" in tip
        assert "failed" not in plate_map.tooltip("A01")
        # Hovering the well shows it (a real tooltip event on the painted map).
        canvas = plate_map.canvas
        at = canvas.well_rect("A03").center().toPoint()
        QApplication.sendEvent(canvas, QHelpEvent(QEvent.Type.ToolTip, at, canvas.mapToGlobal(at)))
        assert QToolTip.text() == tip
        QToolTip.hideText()
        assert not (tmp_path / "results" / window.plates[0].name / "plate_map.png").exists()


@guest
async def test_the_views_follow_the_current_plate_and_show_earlier_results(qtbot, tmp_path):
    folders = make_plates(tmp_path / "plates", plates=2, wells=3, size=32, seed=5)
    (tmp_path / "plates" / "plate_002" / "B05_s1_w1.tif").write_bytes((folders[1] / "A01_s1_w1.tif").read_bytes())
    earlier = tmp_path / "results" / "plate_002"
    earlier.mkdir(parents=True)
    (earlier / "wells.csv").write_text("well,site,channel,object_count\nA01,1,1,3\nB05,1,1,9\n")
    window = PlateManagerWindow(output_dir=tmp_path / "results", workers=1)
    qtbot.addWidget(window)
    window.add_plates(folders)
    views = window.data_views
    async with serving(window):
        window.refresh_now()
        await views.wait_loaded()
        assert views.plate_map.plate == "plate_001" and views.plate_map.wells == ["A01", "A02", "A03"]
        assert views.results is None and "no results" in views.results_view.title.text()
        views.show_well("A02")
        await views.wait_loaded()
        assert views.well_view.image is not None and views.well_view.image.objects.shape == (0, 3)

        window.table.selectRow(1)
        await views.wait_loaded()
        assert views.plate_map.plate == "plate_002" and "B05" in views.plate_map.wells
        assert views.well_view.well == "" and views.well_view.image is None  # the other plate's well is gone
        # Results of an earlier run are on disk: shown as done, coloured by their counts.
        assert views.plate_map.mode == "object_count" and views.plate_map.values == {"A01": 3.0, "B05": 9.0}
        assert {state for state, _ in views.plate_map.states.values()} == {"done"}
        assert views.results_view.model.rowCount() == 2
