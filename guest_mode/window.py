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
from PyQt6.QtCore import QModelIndex, Qt, QTimer
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from guest_mode.data_views import DataViews
from guest_mode.session import BatchSession, SessionOptions
from guest_mode.tables.executions import AttachedTableModel, AttachedTableView
from guest_mode.tables.plates import PlateTableModel, PlateTableView
from hcs_batch.errors import HcsBatchError, PipelineError, PlateError
from hcs_batch.model import PlateRef
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.workflow.service import BatchKind, BatchSummary

__all__ = ["REFRESH_INTERVAL_MS", "PlateManagerWindow"]

logger = logging.getLogger("guest_mode.window")

REFRESH_INTERVAL_MS = 50
"""Row repaints are coalesced to at most one per this many milliseconds."""

BUILTIN_PIPELINE_LABEL = "Built-in: nucleus counter"

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
        options: the session's (:class:`~guest_mode.session.SessionOptions`): ``server`` (a URL; default an
            embedded local server), ``output_dir``, ``workers``, ``connect_timeout``, ``close_timeout``,
            ``open_backend`` (tests pass an in-memory server), ``on_batch_start`` (``python -m guest_mode`` passes
            the runner's GC freeze).

    Raises:
        PipelineError (an ``InputError``): ``pipeline_file`` cannot be read.
    """

    def __init__(self, *, pipeline_file: str | Path | None = None, **options: Unpack[SessionOptions]) -> None:
        super().__init__()
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
        self.update_state()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.setWindowTitle("hcs-batch plate manager")
        self.resize(900, 620)
        central = QWidget(self)
        layout = QVBoxLayout(central)

        plate_bar = QHBoxLayout()
        self.add_button = QPushButton("Add plate folder…")
        self.remove_button = QPushButton("Remove")
        self.plate_count = QLabel("no plates")
        plate_bar.addWidget(self.add_button)
        plate_bar.addWidget(self.remove_button)
        plate_bar.addStretch(1)
        plate_bar.addWidget(self.plate_count)
        layout.addLayout(plate_bar)

        self.table = PlateTableView(self.plate_model)
        self.log_pane = QPlainTextEdit()
        self.log_pane.setReadOnly(True)
        self.log_pane.setMaximumBlockCount(5000)
        self.log_pane.setPlaceholderText("errors and tracebacks of failed plates appear here")
        self.attached_box = QWidget()
        attached_layout = QVBoxLayout(self.attached_box)
        attached_layout.setContentsMargins(0, 0, 0, 0)
        self.attached_label = QLabel("Started elsewhere (attached): Stop cancels them")
        self.attached_table = AttachedTableView(self.attached_model)
        attached_layout.addWidget(self.attached_label)
        attached_layout.addWidget(self.attached_table)
        self.attached_box.setVisible(False)

        splitter = QSplitter(Qt.Orientation.Vertical)
        for index, (widget, stretch) in enumerate(((self.table, 3), (self.attached_box, 1), (self.log_pane, 1))):
            splitter.addWidget(widget)
            splitter.setStretchFactor(index, stretch)
        layout.addWidget(splitter, 1)

        pipe_bar = QHBoxLayout()
        pipe_bar.addWidget(QLabel("Pipeline:"))
        self.pipeline_combo = QComboBox()
        self.pipeline_combo.addItem(BUILTIN_PIPELINE_LABEL, None)
        self.pipeline_button = QPushButton("Open…")
        pipe_bar.addWidget(self.pipeline_combo, 1)
        pipe_bar.addWidget(self.pipeline_button)
        pipe_bar.addSpacing(16)
        pipe_bar.addWidget(QLabel("Server:"))
        self.server_field = QLineEdit(self.session.server or "")
        self.server_field.setPlaceholderText("embedded local server")
        self.connect_button = QPushButton("Connect")
        pipe_bar.addWidget(self.server_field, 1)
        pipe_bar.addWidget(self.connect_button)
        layout.addLayout(pipe_bar)

        action_bar = QHBoxLayout()
        self.compile_button = QPushButton("Compile")
        self.run_button = QPushButton("Run")
        self.stop_button = QPushButton("Stop")
        self.batch_bar = QProgressBar()
        self.batch_bar.setFormat("%v / %m plates")
        self.batch_bar.setRange(0, 1)
        self.batch_bar.setValue(0)
        for widget in (self.compile_button, self.run_button, self.stop_button):
            action_bar.addWidget(widget)
        action_bar.addWidget(self.batch_bar, 1)
        layout.addLayout(action_bar)

        self.server_label = QLabel()
        self.server_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        status_bar = self.statusBar()
        assert status_bar is not None
        status_bar.addWidget(self.server_label, 1)
        self.setCentralWidget(central)

        self.add_button.clicked.connect(self._on_add_clicked)
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.pipeline_button.clicked.connect(self._on_pipeline_clicked)
        self.connect_button.clicked.connect(self._on_connect_clicked)
        self.server_field.returnPressed.connect(self._on_connect_clicked)
        self.compile_button.clicked.connect(self._on_compile_clicked)
        self.run_button.clicked.connect(self._on_run_clicked)
        self.stop_button.clicked.connect(self._on_stop_clicked)
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
        n = len(self.plates)
        self.plate_count.setText("no plates" if n == 0 else f"{n} plate{'s' if n != 1 else ''}")

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
        if total:
            self.batch_bar.setRange(0, total)
            self.batch_bar.setValue(done)
        self.attached_model.refresh()
        self.data_views.refresh()
        self.attached_box.setVisible(bool(self.attached_model.rows))
        if self.attached_model.rows:
            self.update_state()  # Stop follows whether an attached execution is still live

    @_slot
    def update_state(self) -> None:
        """Show the server line and enable exactly the buttons the session allows."""
        session = self.session
        self.server_label.setText(session.server_line())
        can_start = session.can_start and bool(self.plates)
        self.compile_button.setEnabled(can_start)
        self.run_button.setEnabled(can_start)
        self.stop_button.setEnabled(session.can_stop)
        idle = session.idle
        self.add_button.setEnabled(idle)
        self.remove_button.setEnabled(idle and bool(self.plates))
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
        dialog = QFileDialog(self, "Add plate folders")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self._spawn_dialog(dialog, self.add_plates)

    @_slot
    def _on_pipeline_clicked(self, checked: bool = False) -> None:
        dialog = QFileDialog(self, "Choose a pipeline", "", "Pipeline TOML (*.toml);;All files (*)")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self._spawn_dialog(dialog, self._add_pipeline_files)

    @_slot
    def _on_remove_clicked(self, checked: bool = False) -> None:
        self.remove_plates([plate.name for plate in self.plate_model.plates_at(self.table.selected_rows())])

    @_slot
    def _on_connect_clicked(self, checked: bool = False) -> None:
        self.session.connect(self.server_field.text().strip() or None)

    @_slot
    def _on_compile_clicked(self, checked: bool = False) -> None:
        self.start_batch(BatchKind.COMPILE)

    @_slot
    def _on_run_clicked(self, checked: bool = False) -> None:
        self.start_batch(BatchKind.RUN)

    @_slot
    def _on_stop_clicked(self, checked: bool = False) -> None:
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
        """Open ``dialog`` non-modally, wait for it through a ``trio.Event``, hand the chosen paths to ``accept``."""
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
            dialog.deleteLater()
        if result[0] == QFileDialog.DialogCode.Accepted:
            try:
                accept(dialog.selectedFiles())
            except HcsBatchError as exc:
                self.log(f"error: {exc}")

    # ------------------------------------------------------------------ data views (issue 15: plate map, well view,
    # results; the widgets and their loading live in guest_mode/data_views.py, only their wiring is here)

    def _build_data_views(self) -> None:
        """Put the plate map over the well view and results tabs, right of the plate list."""
        self.data_views = DataViews(self.session, self._spawn_view_task, self)
        left = self.takeCentralWidget()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.data_views.panel)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        self.setCentralWidget(split)
        self.resize(1440, 880)
        split.setSizes([540, 900])
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
