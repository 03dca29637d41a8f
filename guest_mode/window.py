"""The plate manager window: the PyQt6 face of a :class:`~guest_mode.session.BatchSession`, hosted through Trio
guest mode. Layout and slots only: the session owns the connection, the batches and the close protocol; the
tables are models of :mod:`guest_mode.tables`.

Everything runs in the Qt main thread: Qt slots and Trio tasks interleave between guest ticks, so no locks and no
cross-thread widget calls are needed. Serve it with :meth:`PlateManagerWindow.serve` in a nursery for its lifetime.

Rules kept here:

- Slots never raise: each one, and each session callback but ``log`` (which shows the failures), is wrapped by
  :func:`_slot`, which shows a failure in the log pane.
- No modal dialog loops and no hand-pumped Qt events: dialogs are opened with ``.open()`` and awaited through a
  ``trio.Event`` set by their ``finished`` signal.
- Row repaints are coalesced: the session only schedules them; a single-shot timer repaints at most every
  :data:`REFRESH_INTERVAL_MS`.
- Buttons follow the session (connection and batch state, re-read on every change), never a guess.

Executions started elsewhere (issue 6, reattach) show under the plate list in "Started elsewhere (attached)" while
the session follows them; Stop cancels them as well as the window's own batch; closing leaves them running.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar, Unpack

import trio
from PyQt6.QtCore import QModelIndex, QTimer
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QStyle,
)

from guest_mode import window_state
from guest_mode.data_views import DataViews
from guest_mode.dialogs import ask, chosen_paths, file_dialog, stop_question
from guest_mode.docks import lay_out_docks, lay_out_status_bar
from guest_mode.plates_panel import PlatesPanel, log_pane
from guest_mode.session import BatchSession, SessionOptions
from guest_mode.tables.executions import AttachedTableModel
from guest_mode.tables.plates import PlateTableModel
from guest_mode.toolbar import SetupBar, build_actions, toolbar_buttons
from hcs_batch.errors import HcsBatchError, PipelineError, PlateError
from hcs_batch.model import PlateRef
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.workflow.service import BatchKind, BatchSummary

__all__ = ["REFRESH_INTERVAL_MS", "PlateManagerWindow"]

logger = logging.getLogger("guest_mode.window")

REFRESH_INTERVAL_MS = 50
"""Row repaints are coalesced to at most one per this many milliseconds."""

P = ParamSpec("P")
R = TypeVar("R")


def _slot(fn: Callable[P, R]) -> Callable[P, R | None]:
    """Make a Qt slot (or session callback) exception-safe: a failure is logged and shown, never re-raised."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            logger.exception("%s failed", fn.__qualname__)
            window = args[0] if args else None
            if isinstance(window, PlateManagerWindow):
                with contextlib.suppress(Exception):
                    window.log(f"internal error in {fn.__name__}: {exc!r}\n{traceback.format_exc()}")
            return None

    return wrapper


class PlateManagerWindow(QMainWindow):
    """The plate manager.

    Args:
        pipeline_file: a pipeline TOML to select at start (default: the built-in nucleus counter).
        remember_state: restore the window's geometry and dock layout from the user's settings, and save them
            on close (:mod:`guest_mode.window_state`); ``python -m guest_mode --screenshot`` turns it off so that
            pictures do not depend on the last session.
        options: the session's (:class:`~guest_mode.session.SessionOptions`): ``server`` (a URL; default an
            embedded local server), ``output_dir``, ``workers``, ``connect_timeout``, ``close_timeout``,
            ``open_backend`` (tests pass an in-memory server), ``on_batch_start`` (``python -m guest_mode`` passes
            the runner's GC freeze).

    Raises:
        PipelineError (an ``InputError``): ``pipeline_file`` cannot be read.
    """

    def __init__(
        self,
        *,
        pipeline_file: str | Path | None = None,
        remember_state: bool = True,
        **options: Unpack[SessionOptions],
    ) -> None:
        super().__init__()
        self.remember_state = remember_state
        self.stop_dialog: QMessageBox | None = None
        """The "Stop the batch?" question while it is open."""
        self.session = BatchSession(self, pipeline=self.pipeline_text, **options)
        self.plate_model = PlateTableModel(self.session, self)
        self.attached_model = AttachedTableModel(self.session, self)
        self._tasks: trio.Nursery | None = None
        self._build()
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_INTERVAL_MS)
        self._refresh_timer.timeout.connect(self.refresh_now)
        if pipeline_file is not None:
            self.add_pipeline_file(pipeline_file)
        if remember_state:
            window_state.restore(self)
        self.update_state()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.resize(1440, 880)
        self.setDockNestingEnabled(True)
        self.actions_, toolbar = build_actions(self)
        self.addToolBar(toolbar)
        b = toolbar_buttons(toolbar, self.actions_)  # the toolbar's buttons follow their actions
        self.add_button, self.remove_button, self.compile_button, self.run_button = b.add, b.remove, b.compile, b.run
        self.pause_button, self.stop_button, self.output_button = b.pause, b.stop, b.output
        self.addToolBarBreak()
        setup = SetupBar(self.session.server, self)
        self.addToolBar(setup)
        self.pipeline_combo, self.pipeline_button = setup.pipeline_combo, setup.pipeline_button
        self.server_field, self.connect_button = setup.server_field, setup.connect_button

        panel = self.plates_panel = PlatesPanel(self.session, self.plate_model, self.attached_model)
        self.table, self.plate_count, self.batch_bar = panel.table, panel.count_label, panel.batch_bar
        self.attached_box, self.attached_table = panel.attached_box, panel.attached_table

        self.log_pane = log_pane()

        self.plates_dock, self.plate_map_dock, self.well_view_dock, self.log_dock = lay_out_docks(
            self, panel, self.log_pane
        )
        # ---- platemap: begin (plate map, well view and results widgets fill their docks here) ----
        # ---- platemap: end ----

        self.server_label, self.output_label = lay_out_status_bar(self)

        self.actions_.add.triggered.connect(self._on_add_clicked)
        self.actions_.remove.triggered.connect(self._on_remove_clicked)
        self.actions_.compile.triggered.connect(self._on_compile_clicked)
        self.actions_.run.triggered.connect(self._on_run_clicked)
        self.actions_.pause.triggered.connect(self._on_pause_clicked)
        self.actions_.stop.triggered.connect(self._on_stop_clicked)
        self.actions_.output.triggered.connect(self._on_output_clicked)
        self.pipeline_button.clicked.connect(self._on_pipeline_clicked)
        self.connect_button.clicked.connect(self._on_connect_clicked)
        self.server_field.edit.returnPressed.connect(self._on_connect_clicked)
        selection = self.table.selectionModel()
        assert selection is not None
        selection.selectionChanged.connect(lambda *_: self.update_state())
        self._build_data_views()

    # ------------------------------------------------------------------ plates and pipeline

    @property
    def plates(self) -> list[PlateRef]:
        """Every plate in the list, in row order."""
        return self.plate_model.plates

    def selected_plates(self) -> list[PlateRef]:
        """The selected plates, or every plate when none is selected (what Compile and Run act on)."""
        return self.plate_model.plates_at(self.table.selected_rows()) or self.plates

    def add_plates(self, paths: Sequence[str | Path]) -> list[PlateRef]:
        """Add plate folders (a folder already listed is skipped); returns the plates added.

        Raises:
            PlateError: a path is not a folder or its name cannot be used; nothing is added then.
        """
        refs = []
        for path in paths:
            ref = PlateRef.from_path(path)
            if not ref.path.is_dir():
                raise PlateError(f"plate folder {str(ref.path)!r} does not exist: pass a folder of plate images")
            refs.append(ref)
        added: dict[str, PlateRef] = {}
        for ref in refs:
            listed = self.plate_model.plate(ref.name) or added.get(ref.name)
            if listed is not None:
                if listed.path != ref.path:
                    self.log(f"skipped {ref.path}: a plate named {ref.name!r} is already listed")
                continue
            added[ref.name] = ref
        self.plate_model.add(list(added.values()))
        self._update_count()
        self.update_state()
        self._show_current_plate()
        return list(added.values())

    def remove_plates(self, names: Sequence[str]) -> None:
        """Remove plates from the list (ignored while a batch is active)."""
        if self.session.busy:
            return
        self.plate_model.remove(names)
        self._update_count()
        self.update_state()
        self._show_current_plate()

    def _update_count(self) -> None:
        self.plates_panel.set_count(len(self.plates))

    def add_pipeline_file(self, path: str | Path) -> None:
        """Add a pipeline TOML to the chooser and select it.

        Raises:
            PipelineError: the file cannot be read.
        """
        p = Path(path).expanduser().absolute()
        try:
            p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PipelineError(f"cannot read pipeline file {str(p)!r} ({exc}): pass a readable TOML file") from exc
        index = self.pipeline_combo.findData(str(p))
        if index < 0:
            self.pipeline_combo.addItem(p.name, str(p))
            index = self.pipeline_combo.count() - 1
        self.pipeline_combo.setCurrentIndex(index)

    def _add_pipeline_files(self, paths: Sequence[str]) -> None:
        for path in paths:
            self.add_pipeline_file(path)

    def pipeline_text(self) -> str:
        """The text of the chosen pipeline (read again at every batch, so edits to the file are picked up).

        Raises:
            PipelineError: the chosen file can no longer be read.
        """
        path = self.pipeline_combo.currentData()
        if path is None:
            return default_pipeline_text()
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PipelineError(f"cannot read pipeline file {path!r} ({exc}): choose another pipeline") from exc

    # ------------------------------------------------------------------ the session's view

    def log(self, text: str) -> None:
        """Append ``text`` to the log pane."""
        self.log_pane.appendPlainText(text.rstrip())

    @_slot
    def schedule_refresh(self) -> None:
        """Repaint the rows soon (coalesced: many calls within one interval cost one repaint)."""
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    @_slot
    def refresh_now(self) -> None:
        """Repaint the plate rows, the batch bar and the attached executions, now."""
        self._refresh_timer.stop()
        self.plate_model.refresh()
        done, total = self.session.batch_progress()
        tally = self.session.controls.tally
        self.batch_bar.set_counts(
            done=tally.done, failed=tally.failed, cancelled=tally.cancelled, finished=done, total=total
        )
        self.attached_model.refresh()
        self.data_views.refresh()
        self.attached_box.setVisible(bool(self.attached_model.rows))
        if self.attached_model.rows:
            self.update_state()  # Stop follows whether an attached execution is still live

    @_slot
    def update_state(self) -> None:
        """Show the server line and enable exactly the buttons the session allows."""
        session = self.session
        line = session.server_line()
        self.server_label.setText(line)
        self.server_label.setToolTip(line)
        self.server_label.fit()
        self.setWindowTitle(f"hcs-batch plate manager — {session.server or 'embedded local server'}")
        self.output_label.setText(f"Results: {session.output_dir}")
        can_start = session.can_start and bool(self.plates)
        actions = self.actions_
        actions.compile.setEnabled(can_start)
        actions.run.setEnabled(can_start)
        actions.stop.setEnabled(session.can_stop)
        paused = session.controls.paused
        actions.pause.setEnabled(session.controls.can_pause)
        actions.pause.setText("Resume" if paused else "Pause")
        style = self.style()
        if style is not None:
            icon = QStyle.StandardPixmap.SP_MediaPlay if paused else QStyle.StandardPixmap.SP_MediaPause
            actions.pause.setIcon(style.standardIcon(icon))
        idle = session.idle
        actions.add.setEnabled(idle)
        actions.remove.setEnabled(idle and bool(self.plates))
        actions.output.setEnabled(idle)
        self.pipeline_combo.setEnabled(idle)
        self.pipeline_button.setEnabled(idle)
        self.server_field.setEnabled(session.can_connect)
        self.connect_button.setEnabled(session.can_connect)

    @_slot
    def closed(self) -> None:
        """The session ended: let the window close."""
        self.close()

    @property
    def server_status_text(self) -> str:
        """The text of the server status line."""
        return self.server_label.text()

    # ------------------------------------------------------------------ slots

    @_slot
    def _on_add_clicked(self, checked: bool = False) -> None:
        self._choose_paths("Add plate folders", QFileDialog.FileMode.Directory, self.add_plates)

    @_slot
    def _on_pipeline_clicked(self, checked: bool = False) -> None:
        self._choose_paths(
            "Choose a pipeline",
            QFileDialog.FileMode.ExistingFile,
            self._add_pipeline_files,
            name_filter="Pipeline TOML (*.toml);;All files (*)",
        )

    @_slot
    def _on_output_clicked(self, checked: bool = False) -> None:
        self._choose_paths("Where run batches write their results", QFileDialog.FileMode.Directory, self._choose_output)

    def _choose_paths(
        self, title: str, mode: QFileDialog.FileMode, chosen: Callable[[list[str]], object], *, name_filter: str = ""
    ) -> None:
        """Open a file dialog (:func:`~guest_mode.dialogs.file_dialog`); ``chosen`` gets the picked paths."""
        self._spawn_dialog(file_dialog(self, title, mode, name_filter), chosen)

    def _choose_output(self, paths: Sequence[str]) -> None:
        if paths and self.session.set_output_dir(paths[0]):
            self.log(f"results of run batches go to {self.session.output_dir}")

    @_slot
    def _on_pause_clicked(self, checked: bool = False) -> None:
        self.session.controls.toggle_pause()

    @_slot
    def _on_remove_clicked(self, checked: bool = False) -> None:
        self.remove_plates([plate.name for plate in self.plate_model.plates_at(self.table.selected_rows())])

    @_slot
    def _on_connect_clicked(self, checked: bool = False) -> None:
        self.session.connect(self.server_field.url())

    @_slot
    def _on_compile_clicked(self, checked: bool = False) -> None:
        self.start_batch(BatchKind.COMPILE)

    @_slot
    def _on_run_clicked(self, checked: bool = False) -> None:
        self.start_batch(BatchKind.RUN)

    @_slot
    def _on_stop_clicked(self, checked: bool = False) -> None:
        """Stop asks first, with a non-modal question (the batch goes on meanwhile)."""
        if not self.session.can_stop or self.stop_dialog is not None:
            return
        if self._tasks is None:
            self.log("the window is not being served by Trio: nothing happens")
            return
        self._tasks.start_soon(self._confirm_stop)

    async def _confirm_stop(self) -> None:
        done, total = self.session.batch_progress()
        text = f"{total - done} of {total} plates are not finished." if total > done else "Executions are live."
        box = self.stop_dialog = stop_question(self, f"{text} Stop cancels them on the server.")
        try:
            confirmed = await ask(box, "stop")
        finally:
            self.stop_dialog = None
            box.deleteLater()
        if confirmed:
            self.session.stop()

    def start_batch(self, kind: BatchKind) -> bool:
        """Start a batch of the selected plates in the background; False if not possible now."""
        return self.session.start_batch(kind, self.selected_plates())

    async def run_batch(self, kind: BatchKind, plates: Sequence[PlateRef] | None = None) -> BatchSummary:
        """Run one batch of ``plates`` (default: the selection) and return its summary; raises as
        :meth:`BatchSession.run_batch`."""
        return await self.session.run_batch(kind, self.selected_plates() if plates is None else plates)

    def _spawn_dialog(self, dialog: QFileDialog, accept: Callable[[list[str]], object]) -> None:
        nursery = self._tasks
        if nursery is None:
            self.log("the window is not being served by Trio: nothing happens")
            return
        nursery.start_soon(self._run_dialog, dialog, accept)

    async def _run_dialog(self, dialog: QFileDialog, accept: Callable[[list[str]], object]) -> None:
        """Wait for ``dialog`` (:func:`~guest_mode.dialogs.chosen_paths`) and hand the chosen paths to ``accept``."""
        paths = await chosen_paths(dialog)
        if paths:
            try:
                accept(paths)
            except HcsBatchError as exc:
                self.log(f"error: {exc}")

    # ------------------------------------------------------------------ data views (issue 15: plate map, well view,
    # results; the widgets and their loading live in guest_mode/data_views.py, only their wiring is here)

    def _build_data_views(self) -> None:
        """The plate map fills its dock; the well view and results tabs fill the well view dock."""
        self.data_views = DataViews(self.session, self._spawn_view_task, self)
        self.plate_map_dock.setWidget(self.data_views.plate_map)
        self.well_view_dock.setWidget(self.data_views.tabs)
        selection = self.table.selectionModel()
        assert selection is not None
        selection.currentRowChanged.connect(lambda *_: self._show_current_plate())

    def _spawn_view_task(self, fn: Callable[[], Awaitable[None]]) -> bool:
        if self._tasks is None:
            return False
        self._tasks.start_soon(fn)
        return True

    @_slot
    def _show_current_plate(self) -> None:
        """The data views follow the plate list's current row (the first plate when none is current)."""
        row = self.table.currentIndex().row()
        plates = self.plates
        self.data_views.show_plate(plates[row] if 0 <= row < len(plates) else plates[0] if plates else None)

    # ------------------------------------------------------------------ life cycle

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the window until it is closed (see :meth:`BatchSession.serve`); the window then closes itself."""
        async with trio.open_nursery() as nursery:
            self._tasks = nursery
            try:
                await self.session.serve(task_status=task_status)
            finally:
                self._tasks = None
                nursery.cancel_scope.cancel()  # open dialogs

    def request_close(self) -> None:
        """Begin closing: stop any batch, wait for the server to confirm, then :meth:`serve` returns."""
        self.session.request_close()

    async def wait_closed(self) -> None:
        """Return once :meth:`serve` has finished."""
        await self.session.wait_closed()

    def closeEvent(self, event: QCloseEvent | None) -> None:
        try:
            if event is None:
                return
            if self.session.may_close:
                if self.remember_state:
                    window_state.save(self)
                event.accept()
                return
            event.ignore()
            self.session.request_close()
        except Exception:
            logger.exception("closeEvent failed")

    def save_screenshot(self, path: str | Path) -> Path:
        """Repaint the rows and save a PNG of the window to ``path``.

        Raises:
            OSError: the image could not be written.
        """
        self.refresh_now()
        self.table.setCurrentIndex(QModelIndex())  # no focus frame on a row in the picture
        target = Path(path)
        if not self.grab().save(str(target)):
            raise OSError(f"could not write the screenshot {str(target)!r}: check the folder exists and is writable")
        return target
