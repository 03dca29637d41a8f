"""``BatchWorkflowService``: the single orchestration boundary for compile-only and run batches.

Structured concurrency scopes every batch::

    batch cancel scope (``stop()`` cancels it)
    ├── projection task: host updates, coalesced to at most ``refresh_hz`` a second
    ├── event follower (run): server state/progress events → status poller and progress tracker
    ├── status poller (run): one task follows every execution: pushed events first, batched polls as fallback
    ├── compile phase: BatchSubmitWaitEngine; its nursery exits before anything is executed
    └── execute phase (run): BatchSubmitWaitEngine: submit each plate by compile_artifact_id, then wait all

Every plate converges to exactly one terminal state through :meth:`BatchWorkflowService._transition`, the one
code path that writes plate state: a terminal state is never overwritten, and "all plates completed" is
announced exactly once, when the batch scope has exited. On the way out (stop, fail-fast, Ctrl-C, an error) the
service sends one targeted cancel for the executions still live on the server, shielded and bounded by
``cancel_timeout``, and waits for the server to confirm them terminal, so nothing runs on orphaned.

The service never touches sockets or widgets itself: it talks to an ``ExecutionBackend`` and calls ``BatchHost``
callbacks in the Trio thread.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from trio_util import AsyncValue

from .client.backend import ConnectionLost, EventGap, ExecutionBackend, StreamItem
from .errors import (
    ArtifactNotFoundError,
    BatchAlreadyRunningError,
    BatchError,
    HcsBatchError,
    InputError,
    ServerLostError,
)
from .host import BatchHost
from .model import TERMINAL_STATES, CompiledPlate, ExecutionState, PlateRef, PlateState
from .progress import ProgressTracker
from .protocol import ExecutionRecord, ProgressEvent, ServerInfoReply, StateEvent
from .runtime import BatchSubmitWaitEngine, ExecutionStatusPoller, IntervalSnapshotPoller, Snapshot

__all__ = ["BatchKind", "BatchState", "BatchSummary", "BatchWorkflowService", "PlateOutcome"]

log = logging.getLogger(__name__)


class BatchState(enum.StrEnum):
    """What the service is doing; hosts enable their buttons from it."""

    IDLE = "idle"
    COMPILING = "compiling"
    RUNNING = "running"
    STOPPING = "stopping"


class BatchKind(enum.StrEnum):
    COMPILE = "compile"
    RUN = "run"


_SUCCESS = {BatchKind.COMPILE: PlateState.COMPILED, BatchKind.RUN: PlateState.COMPLETED}
_PLATE_STATE_OF_EXECUTION = {
    ExecutionState.COMPLETED: PlateState.COMPLETED,
    ExecutionState.FAILED: PlateState.FAILED,
    ExecutionState.CANCELLED: PlateState.CANCELLED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateOutcome:
    """How one plate ended in one batch."""

    plate: PlateRef
    state: PlateState
    error: str = ""
    artifact_id: str = ""
    execution_id: str = ""
    output: str = ""
    pipeline: str = ""
    """The name of the pipeline the plate compiled with (its own when its ``hcs_batch.toml`` names one)."""

    def to_json(self) -> dict[str, str]:
        return {
            "plate": self.plate.name,
            "path": str(self.plate.path),
            "state": self.state.value,
            "error": self.error,
            "artifact_id": self.artifact_id,
            "execution_id": self.execution_id,
            "output": self.output,
            "pipeline": self.pipeline,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSummary:
    """The end of a batch: every plate's outcome, in the order the plates were given."""

    kind: BatchKind
    plates: tuple[PlateOutcome, ...]
    stopped: bool = False
    """True when ``stop()`` ended the batch (the user asked), not a fail-fast or an error."""

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.plates:
            counts[outcome.state.value] = counts.get(outcome.state.value, 0) + 1
        return counts

    @property
    def succeeded(self) -> bool:
        return all(outcome.state is _SUCCESS[self.kind] for outcome in self.plates)

    def exit_code(self) -> int:
        """0 every plate succeeded; 130 stopped by the user; 1 some plate failed or was cancelled."""
        if self.succeeded:
            return 0
        return 130 if self.stopped else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.kind.value,
            "plates": [outcome.to_json() for outcome in self.plates],
            "counts": self.counts,
        }


@dataclass(slots=True, kw_only=True)
class _Slot:
    """The mutable state of one plate in the current batch; written only through ``_transition``."""

    plate: PlateRef
    state: PlateState = PlateState.QUEUED
    error: str = ""
    artifact_id: str = ""
    execution_id: str = ""
    output: str = ""
    pipeline: str = ""
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class _Status:
    """An execution's state as the poller follows it (from an event or a status poll)."""

    state: ExecutionState
    error: str = ""


def _is_terminal(status: _Status) -> bool:
    return status.state.is_terminal


class _Batch:
    def __init__(self, kind: BatchKind, plates: Sequence[PlateRef]) -> None:
        self.kind = kind
        self.slots = [_Slot(plate=plate) for plate in plates]
        self.by_name = {slot.plate.name: slot for slot in self.slots}
        self.by_execution: dict[str, _Slot] = {}
        self.scope = trio.CancelScope()
        self.stopped_by_user = False
        self.stop_reason = ""
        self.paused = False

    def is_done(self, state: PlateState) -> bool:
        """Final for this batch: a terminal state, or ``compiled`` in a compile-only batch."""
        return state.is_terminal or (self.kind is BatchKind.COMPILE and state is PlateState.COMPILED)

    def summary(self) -> BatchSummary:
        return BatchSummary(
            kind=self.kind,
            plates=tuple(
                PlateOutcome(
                    plate=s.plate,
                    state=s.state,
                    error=s.error,
                    artifact_id=s.artifact_id,
                    execution_id=s.execution_id,
                    output=s.output,
                    pipeline=s.pipeline,
                )
                for s in self.slots
            ),
            stopped=self.stopped_by_user,
        )


class BatchWorkflowService:
    """Compile-only and run batches of plates against one execution server, projected to one host.

    One batch at a time. All methods run in the Trio thread of the host; host callbacks are called there too,
    and an exception escaping one is logged and swallowed (a broken widget must not wedge a batch).
    """

    def __init__(
        self,
        host: BatchHost,
        backend: ExecutionBackend,
        *,
        pipeline_text: str,
        output_dir: str | Path = "./hcs-results",
        fail_fast: bool = False,
        force: bool = False,
        max_concurrent_requests: int = 64,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        request_timeout: float = 10.0,
        liveness_timeout: float = 90.0,
        cancel_timeout: float = 5.0,
        refresh_hz: float = 30.0,
    ) -> None:
        if not isinstance(host, BatchHost):
            raise TypeError(
                f"BatchWorkflowService needs a BatchHost subclass as its host, got {type(host).__name__}; "
                "subclass hcs_batch.BatchHost"
            )
        self.host = host
        self.backend = backend
        self.pipeline_text = pipeline_text
        self.output_dir = Path(output_dir).expanduser().absolute()
        self.fail_fast = fail_fast
        self.force = force
        self.batch_state: AsyncValue[BatchState] = AsyncValue(BatchState.IDLE)
        self.paused: AsyncValue[bool] = AsyncValue(False)
        """True while the active batch is paused (:meth:`pause`); hosts label their Pause/Resume button from it."""
        self.tracker = ProgressTracker()
        host.progress_tracker = self.tracker
        self._limit = max_concurrent_requests
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._request_timeout = request_timeout
        self._liveness_timeout = liveness_timeout
        self._cancel_timeout = cancel_timeout
        self._refresh_period = 1.0 / refresh_hz
        self._batch: _Batch | None = None
        self._changed = trio.Event()

    # ------------------------------------------------------------------ public API

    async def compile_plates(self, plates: Sequence[PlateRef]) -> BatchSummary:
        """Compile every plate and keep the artifacts in ``host.plate_compiled_data``.

        Raises ``BatchAlreadyRunningError`` (before any await) if a batch is active, ``InputError`` for two
        plates with one name. Plate failures do not raise: they end the plate ``failed``.
        """
        batch = self._begin(BatchKind.COMPILE, plates)
        return await self._run(batch)

    async def run_plates(self, plates: Sequence[PlateRef]) -> BatchSummary:
        """Mark every plate queued (before any await), compile all, then execute all and follow them to the end.

        Returns the summary once every plate is terminal. Raises like :meth:`compile_plates`. If the caller's
        scope is cancelled instead of :meth:`stop`, the batch is settled (targeted cancel, plates cancelled)
        and ``Cancelled`` propagates.
        """
        batch = self._begin(BatchKind.RUN, plates)
        return await self._run(batch)

    def stop(self) -> None:
        """Stop the active batch: one call cancels its scope; live executions get a targeted cancel; every
        plate not yet terminal ends ``cancelled``. No-op when idle."""
        self._stop(by_user=True, reason="stopped by the user")

    async def pause(self) -> list[str]:
        """Pause the active run batch: its executions on the server finish their running wells and start no new
        one (their plates show ``paused``); executions it submits while paused are paused at once. Returns the
        ids paused now. No-op (``[]``) when no batch is active.

        Raises what ``backend.pause`` raises (``TransportError``, ``RemoteError``); the batch goes on either way.
        """
        return await self._set_paused(True)

    async def resume(self) -> list[str]:
        """Resume a paused batch: its executions go on where they stopped. Returns the ids resumed now; ``[]``
        when nothing is active. Raises like :meth:`pause`."""
        return await self._set_paused(False)

    async def cancel_plate(self, name: str) -> bool:
        """Cancel one plate of the active batch; the others go on. A plate with an execution gets a targeted
        cancel on the server (it ends ``cancelled`` when the server confirms); a plate not submitted yet ends
        ``cancelled`` at once and is never submitted (one whose submission is in flight is cancelled on the
        server as soon as its id is known). Returns False when no batch is active or the plate is unknown or
        already done. Raises what ``backend.cancel`` raises."""
        batch = self._batch
        slot = batch.by_name.get(name) if batch is not None else None
        if batch is None or slot is None or batch.is_done(slot.state):
            return False
        slot.cancel_requested = True
        if slot.execution_id:
            await self.backend.cancel([slot.execution_id])
        else:
            self._transition(batch, slot, PlateState.CANCELLED, "cancelled by the user")
        return True

    async def _set_paused(self, paused: bool) -> list[str]:
        batch = self._batch
        if batch is None:
            return []
        batch.paused = paused
        if self.paused.value is not paused:
            self.paused.value = paused
            self._call(self.host.update_button_states)
        live = [s.execution_id for s in batch.slots if s.execution_id and not batch.is_done(s.state)]
        if not live:
            return []
        reply = await self.backend.pause(live, paused=paused)
        return list(reply.changed)

    @property
    def active(self) -> bool:
        return self._batch is not None

    async def serve(
        self, *, interval: float = 1.0, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Service-lifetime work, run in the host's nursery until cancelled: the server status snapshot poller,
        which reports real changes only through ``host.emit_status`` and ``tracker.server_status_text``."""
        poller: IntervalSnapshotPoller[ServerInfoReply] = IntervalSnapshotPoller(
            fetch=self.backend.server_info,
            interval=interval,
            timeout=self._request_timeout,
            key=_info_key,
            on_change=self._on_server_snapshot,
        )
        await poller.serve(task_status=task_status)

    # ------------------------------------------------------------------ batch life cycle

    def _begin(self, kind: BatchKind, plates: Sequence[PlateRef]) -> _Batch:
        # Synchronous on purpose: the state flips before the caller's first await, so a double click
        # cannot start two batches, and every plate shows queued at once.
        if self._batch is not None:
            raise BatchAlreadyRunningError(
                f"a {self._batch.kind.value} batch is already active; stop it or wait for it to end"
            )
        names = [plate.name for plate in plates]
        duplicates = sorted({name for name in names if names.count(name) > 1}) if len(set(names)) != len(names) else []
        if duplicates:
            raise InputError(f"two plates are named {duplicates[0]!r}: their results would collide; rename one folder")
        batch = self._batch = _Batch(kind, plates)
        final = {PlateState.COMPILED, *TERMINAL_STATES} if kind is BatchKind.COMPILE else TERMINAL_STATES
        self.tracker.reset(names, final_states=final)
        self.host.plate_execution_states = {}
        self.host.plate_execution_ids = {}
        self.batch_state.value = BatchState.COMPILING
        for slot in batch.slots:
            self.host.plate_execution_states[slot.plate.name] = PlateState.QUEUED
            self._call(self.host.emit_orchestrator_state, slot.plate.name, PlateState.QUEUED)
        self._call(self.host.emit_progress_started, len(batch.slots))
        self._call(self.host.update_button_states)
        self._call(self.host.update_item_list)
        return batch

    async def _run(self, batch: _Batch) -> BatchSummary:
        try:
            with batch.scope:
                async with self.backend.open_event_stream() as events, trio.open_nursery() as nursery:
                    nursery.start_soon(self._project)
                    compiled = await self._compile_all(batch)
                    if batch.kind is BatchKind.RUN and compiled:
                        self._set_batch_state(BatchState.RUNNING)
                        await self._execute_all(batch, compiled, events, nursery)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._settle(batch)
        return batch.summary()

    def _stop(self, *, by_user: bool, reason: str) -> None:
        batch = self._batch
        if batch is None or batch.scope.cancel_called:
            return
        batch.stopped_by_user = by_user
        batch.stop_reason = reason
        self._set_batch_state(BatchState.STOPPING)
        batch.scope.cancel()

    async def _settle(self, batch: _Batch) -> None:
        """Shielded end of every batch: cancel what still runs on the server, end every plate, announce once."""
        live = [s.execution_id for s in batch.slots if s.execution_id and not batch.is_done(s.state)]
        if live and self.backend.lost is None:
            self._set_batch_state(BatchState.STOPPING)
            with trio.move_on_after(self._cancel_timeout) as deadline:
                try:
                    await self._cancel_on_server(live)
                except HcsBatchError as exc:
                    log.warning("targeted cancel of %d executions failed: %s", len(live), exc)
            if deadline.cancelled_caught:
                log.warning("the server did not confirm the cancel of %d executions in time", len(live))
        reason = batch.stop_reason or "cancelled before it finished"
        for slot in batch.slots:
            self._transition(batch, slot, PlateState.CANCELLED, reason)
        summary = batch.summary()
        self._batch = None
        self.batch_state.value = BatchState.IDLE
        self.paused.value = False
        self._flush_projection()
        self._call(self.host.emit_progress_finished)
        if batch.kind is BatchKind.RUN:
            self._call(self.host.emit_execution_complete, summary)
        self._call(self.host.on_all_plates_completed, summary)
        self._call(self.host.update_button_states)
        counts = ", ".join(f"{n} {state}" for state, n in summary.counts.items())
        self._call(self.host.emit_status, f"{batch.kind.value} batch finished: {counts}")

    async def _cancel_on_server(self, execution_ids: list[str]) -> None:
        await self.backend.cancel(execution_ids)
        # The cancel reply means "asked"; wait until the server reports every one terminal.
        pending = execution_ids
        while pending:
            records, _unknown = await self.backend.status(pending)
            pending = [r.execution_id for r in records if not ExecutionState(r.state).is_terminal]
            if pending:
                await trio.sleep(0.05)

    # ------------------------------------------------------------------ compile phase

    async def _compile_all(self, batch: _Batch) -> list[tuple[_Slot, CompiledPlate]]:
        """Compile every plate (bounded); returns the compiled ones once the compile nursery has exited."""

        async def submit(slot: _Slot) -> CompiledPlate:
            if slot.cancel_requested:  # cancelled while queued: nothing to compile
                raise BatchError(f"plate {slot.plate.name} was cancelled before it was compiled")
            return await self._compile_one(batch, slot)

        async def wait(slot: _Slot, compiled: CompiledPlate) -> CompiledPlate:
            return compiled

        def on_result(slot: _Slot, compiled: CompiledPlate) -> None:
            slot.artifact_id = compiled.artifact_id
            slot.pipeline = compiled.pipeline
            self._transition(batch, slot, PlateState.COMPILED)

        engine: BatchSubmitWaitEngine[_Slot, CompiledPlate, CompiledPlate] = BatchSubmitWaitEngine(
            submit=submit,
            wait=wait,
            max_concurrent_submits=self._limit,
            max_concurrent_waits=self._limit,
            on_result=on_result,
            on_error=lambda slot, exc: self._fail(batch, slot, exc),
        )
        await engine.run(batch.slots)
        return [(s, self.host.plate_compiled_data[s.plate.name]) for s in batch.slots if s.state is PlateState.COMPILED]

    async def _compile_one(self, batch: _Batch, slot: _Slot, *, reuse: bool = True) -> CompiledPlate:
        name = slot.plate.name
        cached = self.host.plate_compiled_data.get(name)
        if (
            reuse
            and cached is not None
            and cached.plate.path == slot.plate.path
            and cached.pipeline_text == self.pipeline_text
            and cached.server_instance == self.backend.instance
        ):
            return cached
        self._transition(batch, slot, PlateState.COMPILING)
        reply = await self.backend.compile(
            plate_path=str(slot.plate.path), plate_name=name, pipeline=self.pipeline_text
        )
        compiled = CompiledPlate(
            plate=slot.plate,
            artifact_id=reply.artifact_id,
            pipeline_text=self.pipeline_text,
            wells=len(reply.wells),
            sites=reply.sites,
            channels=reply.channels,
            steps=tuple(reply.steps),
            server_instance=self.backend.instance,
            pipeline=reply.pipeline,
        )
        self.host.plate_compiled_data[name] = compiled
        return compiled

    # ------------------------------------------------------------------ execute phase

    async def _execute_all(
        self,
        batch: _Batch,
        compiled: list[tuple[_Slot, CompiledPlate]],
        events: trio.MemoryReceiveChannel[StreamItem],
        nursery: trio.Nursery,
    ) -> None:
        poller: ExecutionStatusPoller[_Status] = ExecutionStatusPoller(
            fetch=self._fetch_statuses,
            is_terminal=_is_terminal,
            interval=self._poll_interval,
            max_interval=self._max_poll_interval,
            request_timeout=self._request_timeout,
            liveness_timeout=self._liveness_timeout,
            liveness_error=lambda timeout: ServerLostError(f"server lost: no answer to status polls for {timeout:g} s"),
        )
        await nursery.start(poller.serve)
        nursery.start_soon(self._follow_events, batch, events, poller)

        async def submit(job: tuple[_Slot, CompiledPlate]) -> str:
            slot, plate = job
            if slot.cancel_requested:  # cancelled (and so ended) before its turn came: never submitted
                raise BatchError(f"plate {slot.plate.name} was cancelled before it was submitted")
            try:
                execution_id = await self._submit_execution(plate.artifact_id)
            except ArtifactNotFoundError:
                # The server forgot the artifact (restart, expiry): compile once more, then submit that.
                plate = await self._compile_one(batch, slot, reuse=False)
                slot.artifact_id = plate.artifact_id
                execution_id = await self._submit_execution(plate.artifact_id)
            slot.execution_id = execution_id
            slot.output = str(self.output_dir / slot.plate.name)
            batch.by_execution[execution_id] = slot
            self.host.plate_execution_ids[slot.plate.name] = execution_id
            self._transition(batch, slot, PlateState.RUNNING)
            poller.track(execution_id)  # applies a state event that overtook this reply
            if slot.cancel_requested:  # cancelled while its submission was in flight
                await self.backend.cancel([execution_id])
            elif batch.paused:  # submitted while the batch is paused: pause it too (best effort)
                try:
                    await self.backend.pause([execution_id])
                except HcsBatchError as exc:
                    log.warning("pausing execution %s failed: %s", execution_id, exc)
            return execution_id

        async def wait(job: tuple[_Slot, CompiledPlate], execution_id: str) -> _Status:
            return await poller.wait(execution_id)

        def on_result(job: tuple[_Slot, CompiledPlate], status: _Status) -> None:
            slot = job[0]
            self._transition(batch, slot, _PLATE_STATE_OF_EXECUTION[status.state], status.error)

        engine: BatchSubmitWaitEngine[tuple[_Slot, CompiledPlate], str, _Status] = BatchSubmitWaitEngine(
            submit=submit,
            wait=wait,
            max_concurrent_submits=self._limit,
            max_concurrent_waits=math.inf,
            on_result=on_result,
            on_error=lambda job, exc: self._fail(batch, job[0], exc),
        )
        await engine.run(compiled)

    async def _submit_execution(self, artifact_id: str) -> str:
        """Submit one execution and return its id, shielded from a stop: the server starts the execution whether
        or not anyone waits for its reply, so an abandoned reply would leave it running with an id nobody knows and
        the settle step could not cancel it. The wait is bounded by ``request_timeout`` (and the connection's own
        liveness watchdog); the stop takes effect at the next checkpoint after the id is recorded.

        Raises what ``backend.execute`` raises, or ``ServerLostError`` when no reply came in time.
        """
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self._request_timeout):
            return await self.backend.execute(artifact_id, output_dir=str(self.output_dir), force=self.force)
        raise ServerLostError(f"server lost: no reply to an execute request within {self._request_timeout:g} s")

    async def _fetch_statuses(self, execution_ids: Sequence[str]) -> dict[str, _Status]:
        records, _unknown = await self.backend.status(execution_ids)
        statuses = {r.execution_id: _status_of(r) for r in records}
        for execution_id, status in statuses.items():
            self._show_live_state(execution_id, status.state)
        return statuses

    def _show_live_state(self, execution_id: str, state: ExecutionState) -> None:
        """A live execution paused or resumed on the server (by anyone): its plate shows ``paused``/``running``.
        ``paused`` is live, never terminal: the poller keeps following it and liveness still counts the polls."""
        batch = self._batch
        slot = batch.by_execution.get(execution_id) if batch is not None else None
        if batch is None or slot is None or state.is_terminal:
            return
        self._transition(batch, slot, PlateState.PAUSED if state is ExecutionState.PAUSED else PlateState.RUNNING)

    async def _follow_events(
        self,
        batch: _Batch,
        events: trio.MemoryReceiveChannel[StreamItem],
        poller: ExecutionStatusPoller[_Status],
    ) -> None:
        """Route server events: states to the poller (or hold them until the submit reply names the id),
        progress to the tracker, a gap to a poll, a lost connection to every live plate."""
        async for item in events:
            if isinstance(item, StateEvent):
                # Unknown ids too: the event may overtake the submit reply; the poller holds it until track().
                state = ExecutionState(item.state)
                poller.push(item.execution_id, _Status(state, item.error))
                self._show_live_state(item.execution_id, state)
            elif isinstance(item, ProgressEvent):
                if item.execution_id in batch.by_execution:
                    self.tracker.record(item)
                    self._notify()
            elif isinstance(item, EventGap):
                poller.poll_now()
            elif isinstance(item, ConnectionLost):
                poller.fail_all(item.error)

    # ------------------------------------------------------------------ the one state path

    def _fail(self, batch: _Batch, slot: _Slot, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, HcsBatchError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, HcsBatchError):
            log.error("plate %s failed with an unexpected error", slot.plate.name, exc_info=exc)
        self._transition(batch, slot, PlateState.FAILED, message)

    def _transition(self, batch: _Batch, slot: _Slot, state: PlateState, error: str = "") -> bool:
        """Move one plate to ``state``; the only writer of plate state. Terminal states are final: returns
        False (and changes nothing) for a plate already terminal or already in ``state``."""
        if batch.is_done(slot.state) or slot.state is state:
            return False
        slot.state, slot.error = state, error
        name = slot.plate.name
        self.host.plate_execution_states[name] = state
        self.tracker.set_state(name, state, error)
        self._notify()
        self._call(self.host.emit_orchestrator_state, name, state)
        if batch.is_done(state):
            self._call(self.host.on_plate_completed, name, state, error)
            if state is PlateState.FAILED:
                self._call(self.host.emit_error, f"plate {name} failed: {error}")
                if self.fail_fast:
                    self._stop(by_user=False, reason=f"cancelled: plate {name} failed and --fail-fast is set")
        return True

    def _set_batch_state(self, state: BatchState) -> None:
        if self.batch_state.value is not state:
            self.batch_state.value = state
            self._call(self.host.update_button_states)

    # ------------------------------------------------------------------ projection to the host

    def _notify(self) -> None:
        self._changed.set()

    async def _project(self) -> None:
        """Coalesce host updates: at most one per refresh period, none while nothing changes."""
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            self._flush_projection()
            await trio.sleep(self._refresh_period)

    def _flush_projection(self) -> None:
        if not self.tracker.changed:
            return
        self.tracker.changed = False
        done, total = self.tracker.counts()
        self._call(self.host.update_item_list)
        self._call(self.host.emit_progress_updated, done, total)

    def _on_server_snapshot(self, snapshot: Snapshot[ServerInfoReply]) -> None:
        if snapshot.error is not None:
            text = f"server unreachable: {snapshot.error}"
        else:
            info = snapshot.value
            assert info is not None
            text = (
                f"server connected: {info.queued} queued, {info.running} running, "
                f"{info.busy_workers}/{info.workers} workers busy"
            )
        self.tracker.set_server_status(text)
        self._call(self.host.emit_status, text)

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("host callback %s raised; the batch goes on", getattr(callback, "__name__", callback))


def _status_of(record: ExecutionRecord) -> _Status:
    return _Status(ExecutionState(record.state), record.error)


def _info_key(info: ServerInfoReply) -> tuple[int, int, int, int]:
    return (info.queued, info.running, info.busy_workers, info.workers)
