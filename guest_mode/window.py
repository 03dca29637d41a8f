"""The plate manager window: a PyQt6 face for ``BatchWorkflowService``, hosted through Trio guest mode.

``PlateManagerWindow`` is the Qt side; :class:`QtBatchHost` is the ``BatchHost`` it hands the service (composition:
every callback forwards to the window). Everything runs in the Qt main thread: Qt slots and Trio tasks interleave
between guest ticks, so no locks and no cross-thread widget calls are needed.

The Trio side is :meth:`PlateManagerWindow.serve`: run it in a nursery for the window's lifetime. It connects to
the server (an embedded one by default), runs the service's long-lived tasks, starts batches when a button (or
:meth:`PlateManagerWindow.run_batch`) asks, and returns once the window was closed and any batch has stopped.

Rules kept here:

- Slots never raise: each one is wrapped by :func:`_slot` and reports a failure in the log pane.
- No modal dialog loops and no hand-pumped Qt events: dialogs are opened with ``.open()`` and awaited through a
  ``trio.Event`` set by their ``finished`` signal.
- Row updates are coalesced: host callbacks only mark the rows dirty, a single-shot timer repaints them at most
  every :data:`REFRESH_INTERVAL_MS`.
- Button states follow the service's ``batch_state`` (re-read on every change), never a guess.

Executions started elsewhere (issue 6, reattach): on every connect, before the window counts as connected, it
lists the server's execution records and follows the live ones (``queued``/``running``) in a separate section
under the plate list, "Started elsewhere (attached)": plate name, state, progress, execution id, followed live to
their terminal state by one :class:`guest_mode.attached.AttachedExecutions` (events first, batched polls as the
fallback). Stop cancels them (a targeted cancel of exactly those ids) as well as this window's own batch; closing
the window or connecting elsewhere leaves them running, as the window found them.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import gc
import logging
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import trio
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from guest_mode.attached import AttachedExecutions, AttachedRow
from hcs_batch.connect import open_backend as _open_backend
from hcs_batch.errors import (
    BatchAlreadyRunningError,
    HcsBatchError,
    InputError,
    PipelineError,
    PlateError,
    ServerUnreachableError,
    TransportError,
)
from hcs_batch.model import PlateRef, PlateState
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.workflow.host import BatchHost
from hcs_batch.workflow.service import BatchState, BatchWorkflowService

__all__ = ["REFRESH_INTERVAL_MS", "ConnectionState", "PlateManagerWindow", "QtBatchHost"]

logger = logging.getLogger("guest_mode.window")

REFRESH_INTERVAL_MS = 50
"""Row repaints are coalesced to at most one per this many milliseconds."""

_ACTIVE = (BatchState.COMPILING, BatchState.RUNNING)
"""Batch states in which Stop does something."""

BUILTIN_PIPELINE_LABEL = "Built-in: nucleus counter"

P = ParamSpec("P")
R = TypeVar("R")

BackendOpener = Callable[..., contextlib.AbstractAsyncContextManager[Any]]
ServiceFactory = Callable[..., Any]


def _slot(fn: Callable[P, R]) -> Callable[P, R | None]:
    """Make a Qt slot (or host callback) exception-safe: a failure is logged and shown, never re-raised."""

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


class ConnectionState(enum.StrEnum):
    """The server connection as the status line shows it."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"
    LOST = "lost"
    ERROR = "error"


def _builtin_pipeline_text() -> str:
    return default_pipeline_text()


class QtBatchHost(BatchHost):
    """The ``BatchHost`` the window hands the service; every callback forwards to the window, exception-safe."""

    def __init__(self, window: PlateManagerWindow) -> None:
        super().__init__()
        self._window = window

    def emit_status(self, text: str) -> None:
        self._window.show_service_status(text)

    def emit_error(self, text: str) -> None:
        self._window.log_error(text)

    def emit_progress_started(self, total: int) -> None:
        self._window.show_batch_progress(0, total)

    def emit_progress_updated(self, done: int, total: int) -> None:
        self._window.show_batch_progress(done, total)

    def emit_progress_finished(self) -> None:
        self._window.schedule_refresh()

    def update_item_list(self) -> None:
        self._window.schedule_refresh()

    def update_button_states(self) -> None:
        self._window.update_buttons()

    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:
        self._window.schedule_refresh()

    def on_plate_completed(self, plate: str, state: PlateState, error: str) -> None:
        self._window.plate_finished(plate, state, error)

    def on_all_plates_completed(self, summary: Any) -> None:
        self._window.batch_finished(summary)


class _Row:
    __slots__ = ("bar", "name_item", "percent", "plate", "state", "state_item")

    def __init__(self, plate: PlateRef, name_item: QTableWidgetItem, state_item: QTableWidgetItem) -> None:
        self.plate = plate
        self.name_item = name_item
        self.state_item = state_item
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.state = ""
        self.percent = -1


class PlateManagerWindow(QMainWindow):
    """The plate manager.

    Args:
        server: URL of an existing server (``tcp://host:port``); ``None`` starts an embedded local server.
        pipeline_file: a pipeline TOML to select at start (default: the built-in nucleus counter).
        output_dir: where run batches write results.
        workers: worker processes of an embedded server (default: the server's choice).
        connect_timeout: seconds to wait for the server's handshake.
        close_timeout: seconds closing waits for a stopped batch to be confirmed before it gives up.
        open_backend, service_factory: seams for tests; default to ``hcs_batch.connect.open_backend`` and
            ``hcs_batch.workflow.service.BatchWorkflowService``.

    Raises:
        PipelineError (an ``InputError``): ``pipeline_file`` cannot be read.
    """

    def __init__(
        self,
        *,
        server: str | None = None,
        pipeline_file: str | Path | None = None,
        output_dir: str | Path = "./hcs-results",
        workers: int | None = None,
        connect_timeout: float = 5.0,
        close_timeout: float = 30.0,
        open_backend: BackendOpener | None = None,
        service_factory: ServiceFactory | None = None,
    ) -> None:
        super().__init__()
        self.host = QtBatchHost(self)
        self.service: Any = None
        self.output_dir = Path(output_dir)
        self.workers = workers
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self._open_backend: BackendOpener = open_backend or _open_backend
        self._service_factory: ServiceFactory = service_factory or BatchWorkflowService
        self._server = server or None
        self._rows: dict[str, _Row] = {}
        self._connection = ConnectionState.CONNECTING
        self._connection_detail = ""
        self._service_status = ""
        self._workers_seen = 0
        self._batch_kind = ""
        self._batch_names: list[str] = []
        self._announced: set[str] = set()
        self._backend: Any = None
        self._starting = False
        self._closing = False
        self._allow_close = False
        self._serving = False
        self._window_nursery: trio.Nursery | None = None
        self._service_nursery: trio.Nursery | None = None
        self._batch_done: trio.Event | None = None
        self._close_requested = trio.Event()
        self._closed = trio.Event()
        self._reconnect = trio.Event()
        self._connection_changed = trio.Event()
        self._status_changed = trio.Event()
        self._attached: AttachedExecutions | None = None
        self._attached_items: dict[str, tuple[QTableWidgetItem, QProgressBar]] = {}
        self._attached_cancelling = False
        self.last_summary: Any = None
        """The ``BatchSummary`` of the latest finished batch."""
        self._build()
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_INTERVAL_MS)
        self._refresh_timer.timeout.connect(self.refresh_now)
        if pipeline_file is not None:
            self.add_pipeline_file(pipeline_file)
        self._show_server_line()
        self.update_buttons()

    # ------------------------------------------------------------------ widgets

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

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Plate", "State", "Progress"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        header = self.table.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        # Fixed widths: ResizeToContents re-measures every row on each setText (1000 rows took 3.5 s per repaint).
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(1, 110)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(2, 260)

        self.log_pane = QPlainTextEdit()
        self.log_pane.setReadOnly(True)
        self.log_pane.setMaximumBlockCount(5000)
        self.log_pane.setPlaceholderText("errors and tracebacks of failed plates appear here")
        # Executions started elsewhere get their own table: they are not plates of this window (Run and Compile
        # never act on them) and the plate table's row order must stay the plate order.
        self.attached_box = QWidget()
        attached_layout = QVBoxLayout(self.attached_box)
        attached_layout.setContentsMargins(0, 0, 0, 0)
        self.attached_label = QLabel("Started elsewhere (attached): Stop cancels them")
        self.attached_table = QTableWidget(0, 4)
        self.attached_table.setHorizontalHeaderLabels(["Plate", "State", "Progress", "Execution"])
        self.attached_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.attached_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.attached_table.verticalHeader().setVisible(False)  # type: ignore[union-attr]
        attached_header = self.attached_table.horizontalHeader()
        assert attached_header is not None
        attached_header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column, width in ((1, 110), (2, 200), (3, 150)):
            attached_header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
            attached_header.resizeSection(column, width)
        attached_layout.addWidget(self.attached_label)
        attached_layout.addWidget(self.attached_table)
        self.attached_box.setVisible(False)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.attached_box)
        splitter.addWidget(self.log_pane)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 1)
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
        self.server_field = QLineEdit(self._server or "")
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
        action_bar.addWidget(self.compile_button)
        action_bar.addWidget(self.run_button)
        action_bar.addWidget(self.stop_button)
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
        self.table.itemSelectionChanged.connect(self.update_buttons)

    # ------------------------------------------------------------------ plates

    @property
    def plates(self) -> list[PlateRef]:
        """Every plate in the list, in row order."""
        return [row.plate for row in self._rows.values()]

    def selected_plates(self) -> list[PlateRef]:
        """The selected plates, or every plate when none is selected (what Compile and Run act on)."""
        model = self.table.selectionModel()
        rows = sorted({index.row() for index in model.selectedRows()}) if model is not None else []
        everything = self.plates
        return [everything[i] for i in rows if i < len(everything)] or everything

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
        added = []
        for ref in refs:
            if ref.name in self._rows:
                if self._rows[ref.name].plate.path != ref.path:
                    self.log(f"skipped {ref.path}: a plate named {ref.name!r} is already listed")
                continue
            row_index = self.table.rowCount()
            self.table.insertRow(row_index)
            name_item = QTableWidgetItem(ref.name)
            name_item.setToolTip(str(ref.path))
            state_item = QTableWidgetItem(PlateState.IDLE.value)
            row = _Row(ref, name_item, state_item)
            self.table.setItem(row_index, 0, name_item)
            self.table.setItem(row_index, 1, state_item)
            self.table.setCellWidget(row_index, 2, row.bar)
            self._rows[ref.name] = row
            added.append(ref)
        self._update_count()
        self.refresh_now()
        self.update_buttons()
        return added

    def remove_plates(self, names: Sequence[str]) -> None:
        """Remove plates from the list (ignored while a batch is active)."""
        if self._busy():
            return
        for name in names:
            row = self._rows.pop(name, None)
            if row is not None:
                self.table.removeRow(row.name_item.row())
        self._update_count()
        self.update_buttons()

    def row_state(self, name: str) -> str:
        """The state text the row of plate ``name`` shows."""
        return self._rows[name].state_item.text()

    def row_percent(self, name: str) -> int:
        """The value of the progress bar in the row of plate ``name`` (0 to 100)."""
        return self._rows[name].bar.value()

    def _update_count(self) -> None:
        n = len(self._rows)
        self.plate_count.setText("no plates" if n == 0 else f"{n} plate{'s' if n != 1 else ''}")

    # ------------------------------------------------------------------ pipeline

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
            return _builtin_pipeline_text()
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PipelineError(f"cannot read pipeline file {path!r} ({exc}): choose another pipeline") from exc

    # ------------------------------------------------------------------ host-facing views

    def log(self, text: str) -> None:
        """Append ``text`` to the log pane."""
        self.log_pane.appendPlainText(text.rstrip())

    @_slot
    def log_error(self, text: str) -> None:
        if text in self._announced:  # the failed plate's error is already in the log, with its traceback
            self._announced.discard(text)
            return
        self.log(f"error: {text}")

    @_slot
    def show_service_status(self, text: str) -> None:
        """``emit_status``: the server snapshot goes to the status line, anything else to the log pane."""
        tracker = self.host.progress_tracker
        server_text = getattr(tracker, "server_status_text", None)
        if server_text is not None and text != server_text:
            self.log(text)
            return
        self._service_status = text
        self._check_lost()
        self._show_server_line()
        self._status_changed.set()
        self._status_changed = trio.Event()

    @_slot
    def show_batch_progress(self, done: int, total: int) -> None:
        self.schedule_refresh()  # the batch bar is recomputed from the plate states in refresh_now

    @_slot
    def plate_finished(self, plate: str, state: PlateState, error: str) -> None:
        if state == PlateState.FAILED:
            self.log(f"plate {plate} failed:\n{error or '(no error text)'}")
            self._announced.add(f"plate {plate} failed: {error}")
        elif state == PlateState.CANCELLED:
            self.log(f"plate {plate} cancelled{': ' + error if error else ''}")
        self.schedule_refresh()

    @_slot
    def batch_finished(self, summary: Any) -> None:
        self.last_summary = summary
        self._announced.clear()
        self._check_lost()
        self.refresh_now()
        self.update_buttons()

    def schedule_refresh(self) -> None:
        """Repaint the rows soon (coalesced: many calls within one interval cost one repaint)."""
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    @_slot
    def refresh_now(self) -> None:
        """Repaint every row whose state or progress changed, now."""
        self._refresh_timer.stop()
        states = self.host.plate_execution_states
        tracker = self.host.progress_tracker
        for name, row in self._rows.items():
            state = states.get(name)
            text = state.value if isinstance(state, PlateState) else str(state or PlateState.IDLE.value)
            percent = self._percent(name, text, tracker)
            if text != row.state:
                row.state = text
                row.state_item.setText(text)
                if text == PlateState.FAILED:
                    row.state_item.setForeground(Qt.GlobalColor.red)
                elif text == PlateState.CANCELLED:
                    row.state_item.setForeground(Qt.GlobalColor.darkYellow)
                elif text == PlateState.COMPLETED:
                    row.state_item.setForeground(Qt.GlobalColor.darkGreen)
                else:
                    row.state_item.setForeground(self.palette().text())
            if percent != row.percent:
                row.percent = percent
                row.bar.setValue(percent)
        if self._batch_names:
            # The batch bar counts finished plates from the same store as the rows, so they never disagree.
            final = {PlateState.COMPILED} if self._batch_kind == "compile" else set()
            done = sum(
                1
                for name in self._batch_names
                if (state := states.get(name)) is not None and (state.is_terminal or state in final)
            )
            self.batch_bar.setRange(0, len(self._batch_names))
            self.batch_bar.setValue(done)
        self._paint_attached()

    def _paint_attached(self) -> None:
        follower = self._attached
        rows = follower.rows() if follower is not None else []
        for row in rows:
            items = self._attached_items.get(row.execution_id)
            if items is None:
                index = self.attached_table.rowCount()
                self.attached_table.insertRow(index)
                state_item = QTableWidgetItem()
                bar = QProgressBar()
                bar.setRange(0, 100)
                self.attached_table.setItem(index, 0, QTableWidgetItem(row.plate_name))
                self.attached_table.setItem(index, 1, state_item)
                self.attached_table.setCellWidget(index, 2, bar)
                self.attached_table.setItem(index, 3, QTableWidgetItem(row.execution_id))
                items = self._attached_items[row.execution_id] = (state_item, bar)
            state_item, bar = items
            if state_item.text() != row.state:
                state_item.setText(row.state)
                state_item.setToolTip(row.error)
                color = _STATE_COLORS.get(row.state)
                state_item.setForeground(color if color is not None else self.palette().text())
            if bar.value() != row.percent:
                bar.setValue(row.percent)
        self.attached_box.setVisible(bool(self._attached_items))
        if rows:
            self.update_buttons()  # Stop follows whether an attached execution is still live

    def _clear_attached(self) -> None:
        self._attached = None
        self._attached_items.clear()
        self.attached_table.setRowCount(0)
        self.attached_box.setVisible(False)

    def attached_rows(self) -> list[AttachedRow]:
        """The executions started elsewhere that the window follows (as last seen; empty when none)."""
        follower = self._attached
        return follower.rows() if follower is not None else []

    def attached_row_state(self, execution_id: str) -> str:
        """The state text the attached row of ``execution_id`` shows (repaint first with :meth:`refresh_now`)."""
        return self._attached_items[execution_id][0].text()

    def attached_row_percent(self, execution_id: str) -> int:
        """The progress bar value (0 to 100) of the attached row of ``execution_id``."""
        return self._attached_items[execution_id][1].value()

    async def wait_attached_settled(self) -> None:
        """Wait until no execution attached on the current connection is live (at once when none is followed)."""
        follower = self._attached
        if follower is not None:
            await follower.settled.wait()

    def _attached_live(self) -> bool:
        follower = self._attached
        return self.service is not None and follower is not None and bool(follower.live_ids())

    def _percent(self, name: str, state: str, tracker: Any) -> int:
        if state == PlateState.COMPLETED or (state == PlateState.COMPILED and self._batch_kind == "compile"):
            return 100
        if state in (PlateState.IDLE, PlateState.QUEUED, PlateState.COMPILING) or (
            state == PlateState.COMPILED and self._batch_kind != "compile"
        ):
            return 0
        value = 0.0
        plate_percent = getattr(tracker, "plate_percent", None)
        if plate_percent is not None:
            try:
                value = float(plate_percent(name))
            except Exception:  # a projection hiccup must not break the repaint
                logger.debug("plate_percent(%r) failed", name, exc_info=True)
        return max(0, min(100, round(value)))

    # ------------------------------------------------------------------ buttons and status line

    def batch_state(self) -> str:
        """The service's batch state as text (``idle`` when no service is connected)."""
        service = self.service
        if service is None:
            return BatchState.IDLE
        return str(service.batch_state.value)

    def _busy(self) -> bool:
        return self._starting or self.batch_state() != BatchState.IDLE

    @_slot
    def update_buttons(self) -> None:
        """Enable exactly the buttons the current batch state allows."""
        state = self.batch_state()
        connected = self.service is not None and self._connection == ConnectionState.CONNECTED
        idle = state == BatchState.IDLE and not self._starting and not self._closing
        can_start = connected and idle and bool(self._rows)
        self.compile_button.setEnabled(can_start)
        self.run_button.setEnabled(can_start)
        can_cancel_attached = self._attached_live() and not self._attached_cancelling
        self.stop_button.setEnabled((state in _ACTIVE or can_cancel_attached) and not self._closing)
        self.add_button.setEnabled(idle)
        self.remove_button.setEnabled(idle and bool(self._rows))
        self.pipeline_combo.setEnabled(idle)
        self.pipeline_button.setEnabled(idle)
        editable = idle and self._connection != ConnectionState.CONNECTING
        self.server_field.setEnabled(editable)
        self.connect_button.setEnabled(editable)

    def _set_connection(self, state: ConnectionState, detail: str = "") -> None:
        self._connection = state
        self._connection_detail = detail
        if state != ConnectionState.CONNECTED:
            self._service_status = ""
        self._show_server_line()
        self.update_buttons()
        self._connection_changed.set()
        self._connection_changed = trio.Event()

    def _check_lost(self) -> None:
        """A backend that lost its server keeps its context open; show it and offer Connect again."""
        lost = getattr(self._backend, "lost", None)
        if lost is not None and self._connection == ConnectionState.CONNECTED:
            self._set_connection(ConnectionState.LOST, f"{lost}; press Connect to reconnect")

    def _show_server_line(self) -> None:
        where = self._server or "embedded local server"
        if self._connection == ConnectionState.CONNECTED and self._service_status:
            # The service's snapshot poller text already says connected/unreachable, queued, running, workers.
            parts = [where, self._service_status]
        else:
            parts = [where, f"server {self._connection}"]
            if self._connection == ConnectionState.CONNECTED and self._workers_seen:
                parts.append(f"{self._workers_seen} workers")
            if self._connection_detail:
                parts.append(self._connection_detail)
        self.server_label.setText(" · ".join(parts))

    @property
    def connection_state(self) -> ConnectionState:
        """One of the :class:`ConnectionState` values."""
        return self._connection

    @property
    def server_status_text(self) -> str:
        """The text of the server status line."""
        return self.server_label.text()

    # ------------------------------------------------------------------ slots (Qt side)

    @_slot
    def _on_add_clicked(self, checked: bool = False) -> None:
        dialog = QFileDialog(self, "Add plate folders")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self._spawn(self._run_dialog, dialog, self.add_plates)

    @_slot
    def _on_pipeline_clicked(self, checked: bool = False) -> None:
        dialog = QFileDialog(self, "Choose a pipeline", "", "Pipeline TOML (*.toml);;All files (*)")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self._spawn(self._run_dialog, dialog, self._add_pipeline_files)

    @_slot
    def _on_remove_clicked(self, checked: bool = False) -> None:
        model = self.table.selectionModel()
        rows = {index.row() for index in model.selectedRows()} if model is not None else set()
        names = [name for name, row in self._rows.items() if row.name_item.row() in rows]
        self.remove_plates(names)

    @_slot
    def _on_connect_clicked(self, checked: bool = False) -> None:
        if self._busy():
            return
        self._server = self.server_field.text().strip() or None
        self._reconnect.set()

    @_slot
    def _on_compile_clicked(self, checked: bool = False) -> None:
        self.start_batch("compile")

    @_slot
    def _on_run_clicked(self, checked: bool = False) -> None:
        self.start_batch("run")

    @_slot
    def _on_stop_clicked(self, checked: bool = False) -> None:
        self.stop_batch()

    def start_batch(self, kind: str) -> bool:
        """Start a ``compile`` or ``run`` batch of the selected plates in the background; False if not possible now."""
        if self._busy() or self.service is None or self._service_nursery is None or self._closing:
            return False
        self._starting = True  # no second batch from a double click before the service flips its state
        self.update_buttons()
        self._service_nursery.start_soon(self._background_batch, kind)
        return True

    @_slot
    def stop_batch(self) -> None:
        """Stop: the active batch (one call; the service cancels every live execution on the server) and the
        live executions attached on connect (one targeted cancel of exactly their ids)."""
        self._stop_own_batch()
        self._cancel_attached()
        self.update_buttons()

    def _stop_own_batch(self) -> None:
        if self.service is not None and self.batch_state() in _ACTIVE:
            self.log("stopping the batch…")
            self.service.stop()

    def _cancel_attached(self) -> None:
        follower, nursery = self._attached, self._service_nursery
        if self._attached_cancelling or nursery is None or not self._attached_live() or follower is None:
            return
        self._attached_cancelling = True
        self.log(f"cancelling {len(follower.live_ids())} executions started elsewhere…")
        nursery.start_soon(self._cancel_attached_task, follower)

    async def _cancel_attached_task(self, follower: AttachedExecutions) -> None:
        try:
            cancelled = await follower.cancel()
            self.log(f"cancel asked for {len(cancelled)} executions started elsewhere")
        except (HcsBatchError, TimeoutError) as exc:
            self.log_error(f"could not cancel the executions started elsewhere: {exc}; press Stop to try again")
        except Exception as exc:
            logger.exception("cancelling attached executions failed")
            self.log("cancelling attached executions failed:\n" + "".join(traceback.format_exception(exc)))
        finally:
            self._attached_cancelling = False
            self.update_buttons()

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        nursery = self._window_nursery
        if nursery is None:
            self.log("the window is not being served by Trio: nothing happens")
            return
        nursery.start_soon(fn, *args)

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
                self.log_error(str(exc))

    # ------------------------------------------------------------------ close

    def closeEvent(self, event: QCloseEvent | None) -> None:
        try:
            if event is None:
                return
            if self._allow_close or not self._serving:
                event.accept()
                return
            event.ignore()
            self.request_close()
        except Exception:
            logger.exception("closeEvent failed")

    @_slot
    def request_close(self) -> None:
        """Begin closing: stop any batch, wait for the server to confirm, then :meth:`serve` returns."""
        if not self._closing:
            self._closing = True
            if self.service is not None and self.batch_state() != BatchState.IDLE:
                self.log("closing: stopping the batch and waiting for the server to confirm…")
        self.update_buttons()
        self._close_requested.set()

    async def wait_closed(self) -> None:
        """Return once :meth:`serve` has finished."""
        await self._closed.wait()

    # ------------------------------------------------------------------ Trio side

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the window until it is closed; run in a nursery for the window's lifetime.

        Connects (and reconnects on request) to the server, hosts the service, runs batches. Returns after a
        close was requested (window closed or :meth:`request_close`) and the batch, if any, has ended; the
        window is then hidden. Cancelling it stops at once: the service cancels live executions on its way out.
        """
        self._serving = True
        try:
            async with trio.open_nursery() as nursery:
                self._window_nursery = nursery
                nursery.start_soon(self._connection_loop)
                task_status.started()
                await self._close_requested.wait()
                await self._stop_for_close()
                nursery.cancel_scope.cancel()
        finally:
            self._serving = False
            self._window_nursery = None
            self._allow_close = True
            self._closed.set()
            with contextlib.suppress(Exception):
                self.close()

    async def _stop_for_close(self) -> None:
        done = self._batch_done
        if self.service is None or done is None or done.is_set():
            return
        self._stop_own_batch()  # not the attached executions: closing leaves them as the window found them
        self.update_buttons()
        with trio.move_on_after(self.close_timeout) as scope:
            await done.wait()
        if scope.cancelled_caught:
            logger.warning("the stopped batch did not end within %.0f s; closing anyway", self.close_timeout)

    async def wait_connection(self, *states: str) -> str:
        """Wait until the connection is in one of ``states`` (default: any outcome of the attempt in progress,
        i.e. anything but connecting); return the :class:`ConnectionState`."""
        wanted = states or (
            ConnectionState.CONNECTED,
            ConnectionState.UNREACHABLE,
            ConnectionState.LOST,
            ConnectionState.ERROR,
        )
        while self._connection not in wanted:
            await self._connection_changed.wait()
        return self._connection

    async def wait_server_status(self) -> str:
        """Wait for the next server status report (the snapshot poller reports changes only); return its text."""
        await self._status_changed.wait()
        return self._service_status

    async def _connection_loop(self) -> None:
        while True:
            self._reconnect = trio.Event()
            await self._connect_once()
            await self._reconnect.wait()

    async def _connect_once(self) -> None:
        """One connection's life. Outer cancellation (Ctrl-C, a cancelled ``serve``) does not reach the connection
        directly: the batch is stopped first, with the connection still up, so the service's targeted cancel of
        live executions reaches the server; only then is the connection dropped (bounded by ``close_timeout``)."""
        body_scope = trio.CancelScope(shield=True)
        finished = trio.Event()

        async def body() -> None:
            try:
                with body_scope:
                    await self._connection_body()
            finally:
                finished.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(body)
            try:
                await finished.wait()
            finally:
                if not finished.is_set():
                    with trio.CancelScope(shield=True):
                        await self._stop_for_close()
                    body_scope.cancel()

    async def _connection_body(self) -> None:
        server = self._server
        self._workers_seen = 0
        self._set_connection(ConnectionState.CONNECTING)
        try:
            async with (
                self._open_backend(server, workers=self.workers, connect_timeout=self.connect_timeout) as backend,
                trio.open_nursery() as nursery,
            ):
                service = self._service_factory(
                    self.host, backend, pipeline_text=self._initial_pipeline_text(), output_dir=self.output_dir
                )
                await nursery.start(service.serve)
                # Before the window counts as connected (Run enabled), so that no execution of its own can be
                # listed among those started elsewhere.
                self._clear_attached()
                follower = self._attached = AttachedExecutions(
                    backend, on_change=self.schedule_refresh, on_message=self.log
                )
                await nursery.start(follower.serve)
                hello = getattr(backend, "hello", None)
                self._workers_seen = int(getattr(hello, "workers", 0) or 0)
                self.service = service
                self._backend = backend
                self._service_nursery = nursery
                self._set_connection(ConnectionState.CONNECTED)
                nursery.start_soon(self._follow_batch_state, service)
                await self._reconnect.wait()
                nursery.cancel_scope.cancel()
        except* ServerUnreachableError as group:
            self._set_connection(ConnectionState.UNREACHABLE, _first_message(group))
        except* TransportError as group:
            self._set_connection(ConnectionState.LOST, _first_message(group))
            self.log_error(_first_message(group))
        except* HcsBatchError as group:
            self._set_connection(ConnectionState.ERROR, _first_message(group))
            self.log_error(_first_message(group))
        except* Exception as group:
            # A bug below us must not take the window down; show it and let the user reconnect.
            logger.error("the server connection failed", exc_info=group)
            self._set_connection(ConnectionState.ERROR, _first_message(group))
            self.log("connection failed:\n" + "".join(traceback.format_exception(group)))
        finally:
            self.service = None
            self._backend = None
            self._service_nursery = None
            self._starting = False
            self._attached_cancelling = False
            self.refresh_now()
            self.update_buttons()
        if self._connection == ConnectionState.CONNECTED:
            self._set_connection(ConnectionState.CONNECTING if self._reconnect.is_set() else ConnectionState.LOST)

    def _initial_pipeline_text(self) -> str:
        try:
            return self.pipeline_text()
        except Exception as exc:
            self.log_error(f"pipeline unavailable: {exc}")
            return ""

    async def _follow_batch_state(self, service: Any) -> None:
        # The service also calls update_button_states(); following the value itself keeps the buttons right
        # even for a transition that came without a callback.
        async with contextlib.aclosing(service.batch_state.eventual_values()) as values:
            async for _ in values:
                self.update_buttons()

    async def run_batch(self, kind: str, plates: Sequence[PlateRef] | None = None) -> Any:
        """Run one ``compile`` or ``run`` batch of ``plates`` (default: the selection) and return its summary.

        Raises:
            BatchAlreadyRunningError: a batch is active.
            InputError: no plates, or the pipeline cannot be read.
            ServerUnreachableError: no server is connected.
        On cancellation the service stops the batch (targeted cancels of its live executions) and this re-raises.
        """
        if kind not in ("compile", "run"):
            raise ValueError(f"batch kind must be 'compile' or 'run', not {kind!r}")
        service = self.service
        if service is None:
            raise ServerUnreachableError(f"not connected to a server ({self._connection}): connect first")
        if self._batch_done is not None and not self._batch_done.is_set():
            raise BatchAlreadyRunningError("a batch is already active in this window: wait for it or stop it")
        chosen = list(plates) if plates is not None else self.selected_plates()
        if not chosen:
            raise InputError("no plates to process: add plate folders first")
        # The plates' rows and records are alive for the whole batch: collect once now, at the click, and move
        # everything alive into the permanent generation, so no full collection scans them mid-batch (a 10-30 ms
        # guest tick with ~1,000 plates). Only garbage cycles made before this point are collected here.
        gc.collect()
        gc.freeze()
        done = self._batch_done = trio.Event()
        self._starting = True
        self._batch_kind = kind
        self._batch_names = [p.name for p in chosen]
        try:
            service.pipeline_text = self.pipeline_text()
            self.log(f"{kind}: {len(chosen)} plate{'s' if len(chosen) != 1 else ''}")
            if kind == "compile":
                summary = await service.compile_plates(chosen)
            else:
                summary = await service.run_plates(chosen)
        finally:
            self._starting = False
            done.set()
            self.refresh_now()
            self.update_buttons()
        self.last_summary = summary
        return summary

    async def _background_batch(self, kind: str) -> None:
        try:
            await self.run_batch(kind)
        except HcsBatchError as exc:
            self.log_error(str(exc))
        except Exception as exc:
            logger.exception("batch failed")
            self.log(f"the {kind} batch failed:\n" + "".join(traceback.format_exception(exc)))

    def save_screenshot(self, path: str | Path) -> Path:
        """Repaint the rows and save a PNG of the window to ``path``.

        Raises:
            OSError: the image could not be written.
        """
        self.refresh_now()
        self.table.setCurrentItem(None)  # no focus frame on a row in the picture
        target = Path(path)
        if not self.grab().save(str(target)):
            raise OSError(f"could not write the screenshot {str(target)!r}: check the folder exists and is writable")
        return target


_STATE_COLORS = {
    "failed": Qt.GlobalColor.red,
    "lost": Qt.GlobalColor.red,
    "unknown": Qt.GlobalColor.red,
    "cancelled": Qt.GlobalColor.darkYellow,
    "completed": Qt.GlobalColor.darkGreen,
}


def _first_message(group: BaseExceptionGroup[Any]) -> str:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_message(exc)
        return str(exc) or type(exc).__name__
    return "unknown error"
