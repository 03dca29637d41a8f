"""The window's data views (issue 15) and what feeds them: the plate map, the well view and the results table
of the plate shown, as one panel (:attr:`DataViews.panel`).

Promises:

- Every file is read off the Trio thread (``trio.to_thread.run_sync``): the plate index (the server's
  :func:`~hcs_batch.server.layouts.read_plate`, once per plate), ``wells.csv`` and the well's plane and objects.
  The GUI never waits on a disk. A newer request cancels an older one of the same kind (its thread's result
  is dropped), so quick clicks end showing the last well clicked.
- The map's states follow the service's per-well progress on every repaint the window makes (:meth:`refresh`);
  when the shown plate completes, its ``wells.csv`` is read and the map colours by ``object_count``.
- Failures (an unreadable plate, a missing image) show in the view concerned, never raise into Qt.
- Cancellation: the tasks run in the window's nursery (``spawn``) and end with it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QSplitter, QTabWidget, QWidget

from hcs_batch.errors import HcsBatchError
from hcs_batch.model import PlateRef, PlateState
from hcs_batch.server.layouts import PlateIndex, read_plate
from hcs_batch.server.results import plate_output_dir

from .platemap import STATE_MODE, PlateMapWidget, well_states
from .results_view import Results, ResultsView, read_results
from .session import BatchSession
from .wellview import WellImage, WellView, load_well_image, well_choices

__all__ = ["DataViews"]

logger = logging.getLogger("guest_mode.data_views")

_ACTIVE = (PlateState.QUEUED, PlateState.COMPILING, PlateState.COMPILED, PlateState.RUNNING)

Spawn = Callable[[Callable[[], Awaitable[None]]], bool]
"""Start a task in the window's nursery; False when the window is not served (nothing started)."""


def _manifest_projection(folder: Path) -> str:
    try:
        value = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("projection")
    except (OSError, ValueError, AttributeError):
        return "max"
    return value if isinstance(value, str) else "max"


def _logged(fn: Callable[..., None]) -> Callable[..., None]:
    """A Qt slot that logs instead of raising (an exception escaping a slot would abort PyQt6)."""

    @functools.wraps(fn)
    def slot(*args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("%s failed", fn.__name__)

    return slot


class DataViews:
    """The plate map, well view and results of one plate at a time, fed off the Trio thread."""

    def __init__(self, session: BatchSession, spawn: Spawn, parent: QWidget | None = None) -> None:
        self.session = session
        self._spawn = spawn
        self.plate_map = PlateMapWidget()
        self.well_view = WellView()
        self.results_view = ResultsView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.well_view, "Well")
        self.tabs.addTab(self.results_view, "Results")
        self.panel = QSplitter(Qt.Orientation.Vertical, parent)
        self.panel.addWidget(self.plate_map)
        self.panel.addWidget(self.tabs)
        self.panel.setStretchFactor(0, 2)
        self.panel.setStretchFactor(1, 3)
        self.plate: PlateRef | None = None
        self.index: PlateIndex | None = None
        self.results: Results | None = None
        self._indexes: dict[Path, PlateIndex] = {}
        self._unreadable: set[PlateRef] = set()
        self._seen_state: PlateState | None = None
        self._scopes: dict[str, trio.CancelScope] = {}
        self._pending = 0
        self._idle = trio.Event()
        self._idle.set()
        self.plate_map.well_clicked.connect(_logged(self.show_well))
        self.well_view.image_wanted.connect(_logged(self._load_image))

    # ------------------------------------------------------------------ what the window calls

    @property
    def output_folder(self) -> Path | None:
        """``<output>/<plate>`` of the shown plate."""
        if self.plate is None:
            return None
        try:
            return plate_output_dir(self.session.output_dir, self.plate.name)
        except HcsBatchError:
            return None

    def show_plate(self, plate: PlateRef | None) -> None:
        """Show ``plate`` (None: nothing); its index and any results on disk load in the background."""
        if plate == self.plate:
            return
        self.plate, self.index, self.results, self._seen_state = plate, None, None, None
        self.well_view.clear()
        if plate is None:
            self.plate_map.set_plate("", [])
            return
        self.plate_map.set_plate(plate.name, [])
        self.plate_map.title.setText(f"<b>{plate.name}</b> · reading the plate…")
        folder = self.output_folder
        if folder is not None:
            self.results_view.show_results(plate.name, folder, None, "reading the results…")
        self._start("plate", functools.partial(self._load_plate, plate))

    def refresh(self) -> None:
        """Recolour the map from the session's latest progress; read the results when the plate just completed."""
        plate = self.plate
        if plate is None:
            return
        if self.index is None:
            # Shown before the window was served (plates given on the command line): load it now.
            if "plate" not in self._scopes and plate not in self._unreadable:
                self._start("plate", functools.partial(self._load_plate, plate))
            return
        state = self.session.plate_state(plate.name)
        tracker = self.session.host.progress_tracker
        progress = tracker.plates.get(plate.name) if tracker is not None else None
        wells = list(self.index.wells)
        if state is PlateState.IDLE and self.results is not None:
            self.plate_map.set_states({well: ("done", "") for well in wells})
        else:
            self.plate_map.set_states(well_states(wells, state, progress))
        if state is not self._seen_state:
            self._seen_state = state
            if state in _ACTIVE:
                self.plate_map.set_mode(STATE_MODE)  # a new run: show it live
            if state is PlateState.COMPLETED:
                self._start("results", functools.partial(self._load_results, plate))

    def show_well(self, well: str) -> None:
        """Show ``well`` in the well view (its image loads in the background)."""
        if self.plate is None or self.index is None:
            return
        self.plate_map.select(well)
        sites, channels = well_choices(self.index, well)
        header, rows = self.results if self.results is not None else ([], [])
        mine = [r for r in rows if r.get("well") == well]
        self.well_view.show_well(well, sites, channels, mine, header, self.index.channel_names)
        self.tabs.setCurrentWidget(self.well_view)
        self._load_image()

    async def show_for_screenshot(self, well: str | None = None) -> str | None:
        """Load the shown plate's views and show ``well`` (default: the one counting the most objects, else the
        first); returns the well shown, None without a plate or wells (for ``--screenshot``)."""
        await self.wait_loaded()
        self.refresh()  # starts the plate's load if it was shown before the window was served
        await self.wait_loaded()
        if well is None:
            means = self.plate_map.values or dict.fromkeys(self.index.wells if self.index else (), 0.0)
            well = max(means, key=means.__getitem__, default=None)
        if well is not None:
            self.show_well(well)
            await self.wait_loaded()
        return well

    async def wait_loaded(self) -> None:
        """Return once nothing is loading (for tests and ``--screenshot``)."""
        while self._pending:
            await self._idle.wait()

    # ------------------------------------------------------------------ loading

    def _start(self, kind: str, job: Callable[[trio.CancelScope], Awaitable[None]]) -> None:
        old = self._scopes.get(kind)
        if old is not None:
            old.cancel()
        scope = trio.CancelScope()
        self._scopes[kind] = scope

        async def run() -> None:
            try:
                with scope:
                    await job(scope)
            except Exception as exc:  # a view's load must never take the window's nursery down
                logger.exception("loading the %s view failed", kind)
                self.plate_map.title.setText(f"could not load the {kind}: {exc}")
            finally:
                if self._scopes.get(kind) is scope:
                    del self._scopes[kind]
                self._pending -= 1
                if not self._pending:
                    self._idle.set()

        self._pending += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        if not self._spawn(run):
            del self._scopes[kind]
            self._pending -= 1
            if not self._pending:
                self._idle.set()

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    async def _load_plate(self, plate: PlateRef, scope: trio.CancelScope) -> None:
        index = self._indexes.get(plate.path)
        if index is None:
            try:
                index = await self._in_thread(read_plate, plate.path)
            except HcsBatchError as exc:
                self._unreadable.add(plate)
                self.plate_map.title.setText(f"<b>{plate.name}</b> · {exc}")
                return
            assert index is not None
            self._indexes[plate.path] = index
        if self.plate != plate:
            return
        self.index = index
        self.plate_map.set_plate(plate.name, list(index.wells))
        self.refresh()
        if self.results is None and self._seen_state is not PlateState.COMPLETED:
            await self._load_results(plate, scope)

    async def _load_results(self, plate: PlateRef, scope: trio.CancelScope) -> None:
        folder = self.output_folder
        if folder is None or self.plate != plate:
            return
        try:
            results: Results | None = await self._in_thread(read_results, folder / "wells.csv")
            problem = ""
        except (OSError, UnicodeDecodeError) as exc:
            results, problem = None, f"no results in {folder} ({type(exc).__name__})"
        if self.plate != plate:
            return
        self.results = results
        self.results_view.show_results(plate.name, folder, results, problem)
        if results is not None:
            self.plate_map.set_results(results[1], choose=self._seen_state not in _ACTIVE)
            self.refresh()
            if self.well_view.well:
                self.show_well(self.well_view.well)

    def _load_image(self) -> None:
        if self.plate is None or self.index is None or not self.well_view.well:
            return
        self._start("image", functools.partial(self._load_image_task, self.plate, self.index))

    async def _load_image_task(self, plate: PlateRef, index: PlateIndex, scope: trio.CancelScope) -> None:
        view = self.well_view
        well, site, channel = view.well, view.site, view.channel
        folder = self.output_folder
        objects = folder / "objects.parquet" if folder is not None else None
        projection = await self._in_thread(_manifest_projection, folder) if folder is not None else "max"
        load = functools.partial(load_well_image, objects_path=objects, projection=projection)
        try:
            image: WellImage = await self._in_thread(load, index, well, site, channel)
        except (KeyError, ValueError, OSError) as exc:  # ImageError is a ValueError; pyarrow's are OSError/ValueError
            if self.plate == plate and view.well == well:
                view.show_problem(str(exc).strip("'\""))
            return
        if self.plate == plate and (view.well, view.site, view.channel) == (well, site, channel):
            view.show_image(image)
