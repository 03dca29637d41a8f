"""The plate manager's session: the server connection, the batch service on it, batch control and the close
protocol. No Qt here: the window renders what the session says, and tests drive it with a recording view.

A :class:`BatchSession` lives as long as its window. :meth:`BatchSession.serve` (run it in a nursery) keeps one
connection at a time through a :class:`~guest_mode.connection.ServerLink` (an embedded server by default): a
:class:`BatchWorkflowService` on it, and an :class:`~guest_mode.attached.AttachedExecutions` following the
executions some other client left running.
Everything runs in the Trio thread (the Qt main thread in guest mode): no locks.

Promises:

- The session tells its :class:`SessionView` what changed and never touches widgets; a view callback that raises is
  the view's bug (the window's callbacks log and swallow).
- A batch is refused unless connected, idle and given plates; :meth:`BatchSession.start_batch` marks the session
  busy before it returns, so a double click cannot start two batches.
- Stop is one call: it stops this session's batch (the service cancels every live execution of it on the server)
  and cancels the attached executions (one targeted cancel of exactly their ids).
- Closing (:meth:`BatchSession.request_close`) stops the batch, waits (bounded by ``close_timeout``) for the server
  to confirm, then :meth:`BatchSession.serve` returns; attached executions are left running, as they were found.
- Outer cancellation of :meth:`BatchSession.serve` (Ctrl-C) stops the batch first with the connection still up, so
  the service's targeted cancel reaches the server; only then is the connection dropped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypedDict

import trio

from guest_mode.attached import AttachedExecutions, AttachedRow
from guest_mode.connection import BackendOpener, ConnectionState, ServerLink, default_open_backend
from guest_mode.controls import BatchControls
from guest_mode.host import SessionHost, SessionView
from hcs_batch.backend import ExecutionBackend
from hcs_batch.errors import BatchAlreadyRunningError, HcsBatchError, InputError, ServerUnreachableError
from hcs_batch.model import PlateRef, PlateState
from hcs_batch.workflow.service import BatchKind, BatchState, BatchSummary, BatchWorkflowService

__all__ = ["BackendOpener", "BatchSession", "ConnectionState", "SessionHost", "SessionOptions", "SessionView"]

logger = logging.getLogger("guest_mode.session")

_ACTIVE = (BatchState.COMPILING, BatchState.RUNNING)
"""Batch states in which Stop does something."""


class SessionOptions(TypedDict, total=False):
    """The keyword arguments of :class:`BatchSession` that a window passes through (see its Args)."""

    server: str | None
    output_dir: str | Path
    workers: int | None
    connect_timeout: float
    close_timeout: float
    open_backend: BackendOpener
    on_batch_start: Callable[[], object]


class BatchSession:
    """One window's server connection and batches.

    Args:
        view: told what changed (see :class:`SessionView`).
        pipeline: returns the chosen pipeline's text; called at connect and at every batch. Raises
            ``PipelineError`` when the pipeline cannot be read.
        server: URL of an existing server (``tcp://host:port``); ``None`` starts an embedded local server.
        output_dir: where run batches write results.
        workers: worker processes of an embedded server (default: the server's choice).
        connect_timeout: seconds to wait for the server's handshake.
        close_timeout: seconds closing waits for a stopped batch to be confirmed before it gives up.
        open_backend: opens each connection (default :func:`default_open_backend`).
        on_batch_start: called as a batch starts, before any of its work (the GUI freezes the GC there).
    """

    def __init__(
        self,
        view: SessionView,
        *,
        pipeline: Callable[[], str],
        server: str | None = None,
        output_dir: str | Path = "./hcs-results",
        workers: int | None = None,
        connect_timeout: float = 5.0,
        close_timeout: float = 30.0,
        open_backend: BackendOpener = default_open_backend,
        on_batch_start: Callable[[], object] = lambda: None,
    ) -> None:
        self.view = view
        self.host = SessionHost(self)
        self.link = ServerLink(
            server=server,
            workers=workers,
            connect_timeout=connect_timeout,
            open_backend=open_backend,
            on_change=view.update_state,
            on_error=self.show_error,
            on_log=view.log,
        )
        self.output_dir = Path(output_dir).expanduser().absolute()
        self.close_timeout = close_timeout
        self.service: BatchWorkflowService | None = None
        """The service of the current connection; ``None`` while not connected."""
        self.attached: AttachedExecutions | None = None
        """The executions started elsewhere, followed on the current connection."""
        self.last_summary: BatchSummary | None = None
        """The summary of the latest finished batch."""
        self.batch_kind: BatchKind | None = None
        """The kind of the latest batch."""
        self.closing = False
        self.controls = BatchControls(self)
        """Pause/resume, per-row cancels and the tally of finished plates by outcome."""
        self._pipeline = pipeline
        self._on_batch_start = on_batch_start
        self._announced: set[str] = set()
        self._progress = (0, 0)
        self._starting = False
        self._serving = False
        self._attached_cancelling = False
        self._batch_done: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        """The current connection's nursery: batches and attached cancels run there."""
        self._close_requested = trio.Event()
        self._closed = trio.Event()

    # ------------------------------------------------------------------ what the view reads

    @property
    def server(self) -> str | None:
        """The URL connected to (``None``: an embedded server); :meth:`connect` changes it."""
        return self.link.server

    @property
    def connection(self) -> ConnectionState:
        return self.link.state

    @property
    def batch_state(self) -> BatchState:
        """The service's batch state (``idle`` while not connected)."""
        service = self.service
        return BatchState.IDLE if service is None else service.batch_state.value

    @property
    def busy(self) -> bool:
        """A batch is starting or active: the plate list and the connection must not change."""
        return self._starting or self.batch_state is not BatchState.IDLE

    @property
    def idle(self) -> bool:
        """No batch starting or active, and not closing."""
        return not self.busy and not self.closing

    @property
    def can_start(self) -> bool:
        """Compile and Run may start a batch (given plates)."""
        return self.service is not None and self.link.state is ConnectionState.CONNECTED and self.idle

    @property
    def can_stop(self) -> bool:
        """Stop would stop a batch or cancel attached executions."""
        attached = self._attached_live() and not self._attached_cancelling
        return (self.batch_state in _ACTIVE or attached) and not self.closing

    @property
    def can_connect(self) -> bool:
        """The server may be changed (idle, and no attempt in progress)."""
        return self.idle and self.link.state is not ConnectionState.CONNECTING

    @property
    def may_close(self) -> bool:
        """A window may close at once: nothing is served (any more)."""
        return not self._serving

    def server_line(self) -> str:
        """The status line: where, and the server's state (its status report once connected)."""
        return self.link.line()

    def plate_state(self, name: str) -> PlateState:
        """The state of plate ``name`` in the latest batch (``idle`` before its first)."""
        return self.host.plate_execution_states.get(name, PlateState.IDLE)

    def plate_percent(self, name: str) -> int:
        """0 to 100: the progress bar of plate ``name``."""
        state = self.plate_state(name)
        compiling_only = self.batch_kind is BatchKind.COMPILE
        if state is PlateState.COMPLETED or (state is PlateState.COMPILED and compiling_only):
            return 100
        if state in (PlateState.IDLE, PlateState.QUEUED, PlateState.COMPILING, PlateState.COMPILED):
            return 0
        tracker = self.host.progress_tracker
        value = tracker.plate_percent(name) if tracker is not None else 0.0
        return max(0, min(100, round(value)))

    def batch_progress(self) -> tuple[int, int]:
        """(finished plates, plates) of the latest batch as the service last reported it (``(0, 0)`` before the
        first): the service counts once per projection, so a repaint costs nothing per plate."""
        return self._progress

    def attached_rows(self) -> list[AttachedRow]:
        """The executions started elsewhere followed on this connection (as last seen; empty when none)."""
        follower = self.attached
        return follower.rows() if follower is not None else []

    # ------------------------------------------------------------------ commands

    def set_output_dir(self, path: str | Path) -> bool:
        """Write the results of later run batches below ``path``; False (nothing changes) while busy."""
        if self.busy:
            return False
        self.output_dir = Path(path).expanduser().absolute()
        if self.service is not None:
            self.service.output_dir = self.output_dir
        self.view.update_state()
        return True

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> bool:
        """Run ``fn(*args)`` as a task on the current connection (ended with it); False when not connected."""
        nursery = self._nursery
        if nursery is None or self.closing:
            return False
        nursery.start_soon(fn, *args)
        return True

    def connect(self, server: str | None) -> bool:
        """Drop the current connection and connect to ``server`` (``None``: embedded); False while busy."""
        if self.busy:
            return False
        self.link.reconnect(server)
        return True

    def start_batch(self, kind: BatchKind, plates: Sequence[PlateRef]) -> bool:
        """Start a batch of ``plates`` in the background (errors go to the log); False when not possible now."""
        service, nursery = self.service, self._nursery
        if self.busy or service is None or nursery is None or self.closing:
            return False
        self._starting = True  # no second batch from a double click before the service flips its state
        self.view.update_state()
        nursery.start_soon(self._background_batch, kind, list(plates))
        return True

    async def run_batch(self, kind: BatchKind, plates: Sequence[PlateRef]) -> BatchSummary:
        """Run one batch of ``plates`` with the chosen pipeline and return its summary.

        Raises:
            ServerUnreachableError: no server is connected.
            BatchAlreadyRunningError: a batch is active.
            InputError: no plates, or the pipeline cannot be read (``PipelineError``).
        On cancellation the service stops the batch (targeted cancels of its live executions) and this re-raises.
        """
        service = self.service
        if service is None:
            raise ServerUnreachableError(f"not connected to a server ({self.link.state}): connect first")
        if self._batch_done is not None and not self._batch_done.is_set():
            raise BatchAlreadyRunningError("a batch is already active in this window: wait for it or stop it")
        if not plates:
            raise InputError("no plates to process: add plate folders first")
        self._on_batch_start()
        done = self._batch_done = trio.Event()
        self._starting = True
        self.batch_kind = kind
        self.controls.tally.reset()
        try:
            service.pipeline_text = self._pipeline()
            self.view.log(f"{kind}: {len(plates)} plate{'s' if len(plates) != 1 else ''}")
            if kind is BatchKind.COMPILE:
                summary = await service.compile_plates(plates)
            else:
                summary = await service.run_plates(plates)
        finally:
            self._starting = False
            done.set()
            self.view.refresh_now()
            self.view.update_state()
        self.last_summary = summary
        await self._refresh_server_status()
        return summary

    async def _refresh_server_status(self) -> None:
        """Ask the server for its status now: the status line must not still count the batch's executions as
        running once its rows say cancelled (the snapshot poller would catch up only at its next poll)."""
        backend = self.link.backend
        if backend is None:
            return
        with trio.move_on_after(2.0):
            try:
                info = await backend.server_info()
            except HcsBatchError:
                return  # the poller reports an unreachable server
            busy = f"{info.busy_workers}/{info.workers} workers busy"
            self.link.report_status(f"server connected: {info.queued} queued, {info.running} running, {busy}")

    def stop(self) -> None:
        """Stop: the active batch and the live attached executions; one call does both."""
        self._stop_own_batch()
        self._cancel_attached()
        self.view.update_state()

    def request_close(self) -> None:
        """Begin closing: stop any batch, wait for the server to confirm, then :meth:`serve` returns."""
        if not self.closing:
            self.closing = True
            if self.service is not None and self.batch_state is not BatchState.IDLE:
                self.view.log("closing: stopping the batch and waiting for the server to confirm…")
        self.view.update_state()
        self._close_requested.set()

    # ------------------------------------------------------------------ waiting

    async def wait_closed(self) -> None:
        """Return once :meth:`serve` has finished."""
        await self._closed.wait()

    async def wait_connection(self, *states: ConnectionState) -> ConnectionState:
        """Wait until the connection is in one of ``states`` (default: any outcome of the attempt in progress,
        i.e. anything but connecting) and return it."""
        return await self.link.wait(*states)

    async def wait_server_status(self) -> str:
        """Wait for the next server status report (the snapshot poller reports changes only); return its text."""
        return await self.link.wait_status()

    async def wait_attached_settled(self) -> None:
        """Wait until no execution attached on the current connection is live (at once when none is followed)."""
        follower = self.attached
        if follower is not None:
            await follower.settled.wait()

    # ------------------------------------------------------------------ Trio side

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until closed; run in a nursery for the window's lifetime.

        Connects (and reconnects on :meth:`connect`), hosts the service, runs batches. Returns after
        :meth:`request_close` once the batch, if any, has ended, calling ``view.closed()`` just before.
        Cancelling it stops at once: the batch is stopped (and confirmed, bounded) before the connection drops.
        """
        self._serving = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(
                        self.link.serve, self._attach, detach=self._detach, stop_first=self._stop_for_close
                    )
                )
                task_status.started()
                await self._close_requested.wait()
                await self._stop_for_close()
                nursery.cancel_scope.cancel()
        finally:
            self._serving = False
            try:
                self.view.closed()
            finally:
                self._closed.set()

    async def _attach(self, backend: ExecutionBackend, nursery: trio.Nursery) -> None:
        """What lives on one connection: the service, the attached executions, the batch-state follower."""
        service = BatchWorkflowService(
            self.host, backend, pipeline_text=self._initial_pipeline_text(), output_dir=self.output_dir
        )
        await nursery.start(service.serve)
        # Before the session counts as connected (Run enabled), so that no execution of its own can be listed
        # among those started elsewhere.
        self.attached = None
        self.view.schedule_refresh()
        follower = self.attached = AttachedExecutions(
            backend, on_change=self.view.schedule_refresh, on_message=self.view.log
        )
        await nursery.start(follower.serve)
        nursery.start_soon(self.controls.follow_paused, service)
        self.service = service
        self._nursery = nursery
        nursery.start_soon(self._follow_batch_state, service)

    def _detach(self) -> None:
        self.service = None
        self._nursery = None
        self._starting = False
        self._attached_cancelling = False
        self.view.refresh_now()
        self.view.update_state()

    def _initial_pipeline_text(self) -> str:
        try:
            return self._pipeline()
        except HcsBatchError as exc:
            self.show_error(f"pipeline unavailable: {exc}")
            return ""

    async def _follow_batch_state(self, service: BatchWorkflowService) -> None:
        # The service also calls update_button_states(); following the value itself keeps the buttons right
        # even for a transition that came without a callback.
        async with contextlib.aclosing(service.batch_state.eventual_values()) as values:
            async for _ in values:
                self.view.update_state()

    async def _background_batch(self, kind: BatchKind, plates: list[PlateRef]) -> None:
        try:
            await self.run_batch(kind, plates)
        except HcsBatchError as exc:
            self.show_error(str(exc))
        except Exception as exc:
            logger.exception("batch failed")
            self.view.log(f"the {kind} batch failed:\n" + "".join(traceback.format_exception(exc)))
        finally:
            self._starting = False  # also when refused before run_batch took over
            self.view.update_state()

    async def _stop_for_close(self) -> None:
        done = self._batch_done
        if self.service is None or done is None or done.is_set():
            return
        self._stop_own_batch()  # not the attached executions: closing leaves them as the session found them
        self.view.update_state()
        with trio.move_on_after(self.close_timeout) as scope:
            await done.wait()
        if scope.cancelled_caught:
            logger.warning("the stopped batch did not end within %.0f s; closing anyway", self.close_timeout)

    def _stop_own_batch(self) -> None:
        service = self.service
        if service is not None and self.batch_state in _ACTIVE:
            self.view.log("stopping the batch…")
            service.stop()

    # ------------------------------------------------------------------ attached executions

    def _attached_live(self) -> bool:
        follower = self.attached
        return self.service is not None and follower is not None and bool(follower.live_ids())

    def _cancel_attached(self) -> None:
        follower, nursery = self.attached, self._nursery
        if self._attached_cancelling or nursery is None or follower is None or not self._attached_live():
            return
        self._attached_cancelling = True
        self.view.log(f"cancelling {len(follower.live_ids())} executions started elsewhere…")
        nursery.start_soon(self._cancel_attached_task, follower)

    async def _cancel_attached_task(self, follower: AttachedExecutions) -> None:
        try:
            cancelled = await follower.cancel()
            self.view.log(f"cancel asked for {len(cancelled)} executions started elsewhere")
        except (HcsBatchError, TimeoutError) as exc:
            self.show_error(f"could not cancel the executions started elsewhere: {exc}; press Stop to try again")
        except Exception as exc:
            logger.exception("cancelling attached executions failed")
            self.view.log("cancelling attached executions failed:\n" + "".join(traceback.format_exception(exc)))
        finally:
            self._attached_cancelling = False
            self.view.update_state()

    # ------------------------------------------------------------------ from the service, through SessionHost

    def on_server_status(self, text: str) -> None:
        """``emit_status``: the server snapshot goes to the status line, anything else to the log."""
        tracker = self.host.progress_tracker
        if tracker is not None and text != tracker.server_status_text:
            self.view.log(text)
            return
        self.link.report_status(text)

    def on_progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` plates of the batch are finished."""
        self._progress = (done, total)
        self.view.schedule_refresh()

    def show_error(self, text: str) -> None:
        """Log an error line, unless it repeats a failed plate's error already logged with its traceback."""
        if text in self._announced:  # the failed plate's error is already in the log, with its traceback
            self._announced.discard(text)
            return
        self.view.log(f"error: {text}")

    def on_plate_completed(self, plate: str, state: PlateState, error: str) -> None:
        """Log a failed plate with its error text (a traceback), or a cancelled one with its reason; count it."""
        self.controls.tally.add(plate, state)
        if state is PlateState.FAILED:
            self.view.log(f"plate {plate} failed:\n{error or '(no error text)'}")
            self._announced.add(f"plate {plate} failed: {error}")
        elif state is PlateState.CANCELLED:
            self.view.log(f"plate {plate} cancelled{': ' + error if error else ''}")
        self.view.schedule_refresh()

    def on_batch_finished(self, summary: BatchSummary) -> None:
        """Every plate of the batch is terminal: keep the summary, repaint now."""
        self.last_summary = summary
        self._announced.clear()
        if self.batch_kind is BatchKind.RUN:
            self.view.log(f"results of this batch: {self.output_dir}")
        self.link.check_lost()
        self.view.refresh_now()
        self.view.update_state()
