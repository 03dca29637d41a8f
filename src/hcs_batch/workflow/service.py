"""``BatchWorkflowService``: the single orchestration boundary for compile-only and run batches.

Structured concurrency scopes every batch::

    batch cancel scope (``stop()`` cancels it)
    ├── projection task: host updates, coalesced to at most ``refresh_hz`` a second
    ├── execution follower (run): follows every execution: server events first, batched polls as fallback
    ├── compile phase: BatchSubmitWaitEngine; its nursery exits before anything is executed
    └── execute phase (run): BatchSubmitWaitEngine: submit each plate by compile_artifact_id, then wait all

Every plate converges to exactly one terminal state through :meth:`BatchWorkflowService._transition` (the plate
ledger's one state change, :meth:`~.ledger.PlateLedger.transition`, then its projection to the host): a terminal
state is never overwritten, and "all plates completed" is announced exactly once, when the batch scope has exited.
On the way out (stop, fail-fast, Ctrl-C, an error) the service sends one targeted cancel for the executions still
live on the server, shielded and bounded by ``cancel_timeout``, and waits for the server to confirm them terminal.
A batch's per-plate records are made in slices after its first await: a 10,000-plate start never holds a guest tick.

The service never touches sockets or widgets itself: it talks to an ``ExecutionBackend`` and calls ``BatchHost``
callbacks in the Trio thread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import trio
from msgspec.structs import replace
from trio_util import AsyncValue

from .._util import call_logged
from ..backend import ExecutionBackend, StreamItem
from ..errors import ArtifactNotFoundError, BatchAlreadyRunningError, HcsBatchError, InputError, ServerLostError
from ..model import TERMINAL_STATES, CompiledPlate, CompileJob, ExecutionState, PlateRef, PlateState
from ..protocol import ProgressEvent, ServerInfoReply
from ..runtime import BatchSubmitWaitEngine, IntervalSnapshotPoller, Snapshot, map_in_slices
from .follow import ExecutionFollower, FollowedExecution, follow_to_end
from .host import BatchHost, HostStores
from .ledger import (
    PLATE_STATE_OF_EXECUTION,
    BatchKind,
    BatchState,
    BatchSummary,
    PlateLedger,
    PlateOutcome,
    PlateSlot,
    live_plate_state,
)
from .progress import ProgressTracker, server_info_key, server_status_text

__all__ = ["BatchKind", "BatchState", "BatchSummary", "BatchWorkflowService", "PlateOutcome"]

log = logging.getLogger(__name__)


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
        compile_config: dict[str, str] | None = None,
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
        self.compile_config = dict(compile_config or {})
        """Sent with every compile (e.g. ``layout``, ``projection``); part of the artifact id on the server."""
        self.batch_state: AsyncValue[BatchState] = AsyncValue(BatchState.IDLE)
        self._stores = HostStores()
        """The plate states, execution ids, compile cache and progress of this service: written only here."""
        host.bind_stores(self._stores)
        self.paused: AsyncValue[bool] = AsyncValue(False)
        """True while the active batch is paused (:meth:`pause`); hosts label their Pause/Resume button from it."""
        self._limit = max_concurrent_requests
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._request_timeout = request_timeout
        self._liveness_timeout = liveness_timeout
        self._cancel_timeout = cancel_timeout
        self._refresh_period = 1.0 / refresh_hz
        self._batch: PlateLedger | None = None
        self._changed = trio.Event()

    # ------------------------------------------------------------------ public API

    async def compile_plates(self, plates: Sequence[PlateRef]) -> BatchSummary:
        """Compile every plate and keep the artifacts (``host.plate_compiled_data`` shows them).

        Raises ``BatchAlreadyRunningError`` (before any await) if a batch is active, ``InputError`` for two
        plates with one name. Plate failures do not raise: they end the plate ``failed``.
        """
        return await self._run(self._begin(BatchKind.COMPILE, plates))

    async def run_plates(self, plates: Sequence[PlateRef]) -> BatchSummary:
        """Mark every plate queued (before any await), compile all, then execute all and follow them to the end.

        Returns the summary once every plate is terminal. Raises like :meth:`compile_plates`. If the caller's
        scope is cancelled instead of :meth:`stop`, the batch is settled (targeted cancel, plates cancelled)
        and ``Cancelled`` propagates.
        """
        return await self._run(self._begin(BatchKind.RUN, plates))

    def stop(self) -> None:
        """Stop the active batch: one call cancels its scope; live executions get a targeted cancel; every
        plate not yet terminal ends ``cancelled``. No-op when idle."""
        self._stop(by_user=True, reason="stopped by the user")

    async def pause(self, paused: bool = True) -> list[str]:
        """Pause (``paused=False``: resume) the active run batch: its executions finish their running wells and
        start no new one (plates show ``paused``); ones it submits while paused are paused at once. Resumed, they
        go on where they stopped. Returns the ids changed now (``[]`` when idle). Raises what ``backend.pause``
        raises (``TransportError``, ``RemoteError``); the batch goes on either way."""
        batch = self._batch
        if batch is None:
            return []
        batch.paused = paused
        if self.paused.value is not paused:
            self.paused.value = paused
            self._call(self.host.update_button_states)
        live = batch.live_execution_ids()
        return list((await self.backend.pause(live, paused=paused)).changed) if live else []

    async def resume(self) -> list[str]:
        """Resume a paused batch; see :meth:`pause`."""
        return await self.pause(False)

    async def cancel_plate(self, name: str) -> bool:
        """Cancel one plate of the active batch; the others go on. A plate with an execution gets a targeted
        cancel (it ends ``cancelled`` when the server confirms); one not submitted yet ends ``cancelled`` at once
        and is never submitted (one in flight is cancelled as soon as its id is known). False when idle, or the
        plate is unknown or already done. Raises what ``backend.cancel`` raises."""
        if (batch := self._batch) is not None:
            await batch.filled.wait()  # a batch starting: its slots are being made (milliseconds)
        if batch is None or (slot := batch.request_cancel(name)) is None:
            return False
        if slot.outcome.execution_id:
            await self.backend.cancel([slot.outcome.execution_id])
        else:
            self._transition(batch, slot, PlateState.CANCELLED, "cancelled by the user")
        return True

    @property
    def active(self) -> bool:
        """A batch is running (from the synchronous start of ``compile_plates``/``run_plates`` to its end)."""
        return self._batch is not None

    @property
    def tracker(self) -> ProgressTracker:
        """The progress of the current batch (what ``host.progress_tracker`` shows)."""
        return self._stores.tracker

    async def serve(
        self, *, interval: float = 1.0, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Service-lifetime work, run in the host's nursery until cancelled: the server status snapshot poller,
        which reports real changes only through ``host.emit_status`` and ``tracker.server_status_text``."""
        poller: IntervalSnapshotPoller[ServerInfoReply] = IntervalSnapshotPoller(
            fetch=self.backend.server_info,
            interval=interval,
            timeout=self._request_timeout,
            key=server_info_key,
            on_change=self._on_server_snapshot,
        )
        await poller.serve(task_status=task_status)

    # ------------------------------------------------------------------ batch life cycle

    def _begin(self, kind: BatchKind, plates: Sequence[PlateRef]) -> PlateLedger:
        # Synchronous: claims the service before the first await (a double click cannot start two), all plates queued.
        if self._batch is not None:
            raise BatchAlreadyRunningError(
                f"a {self._batch.kind.value} batch is already active; stop it or wait for it to end"
            )
        names = [plate.name for plate in plates]
        queued = dict.fromkeys(names, PlateState.QUEUED)
        if len(queued) != len(names):
            twice = min(name for name in names if names.count(name) > 1)
            raise InputError(f"two plates are named {twice!r}: their results would collide; rename one folder")
        batch = self._batch = PlateLedger(kind, plates)
        final = {PlateState.COMPILED, *TERMINAL_STATES} if kind is BatchKind.COMPILE else TERMINAL_STATES
        self.tracker.reset(queued, final_states=final)
        self._stores.states.clear()
        self._stores.execution_ids.clear()
        self.batch_state.value = BatchState.COMPILING
        self._stores.states.update(queued)  # one host call for all, below
        self._call(self.host.emit_orchestrator_states, names, PlateState.QUEUED)
        self._call(self.host.emit_progress_started, len(names))
        self._call(self.host.update_button_states)
        self._call(self.host.update_item_list)
        return batch

    async def _run(self, batch: PlateLedger) -> BatchSummary:
        await trio.lowlevel.cancel_shielded_checkpoint()  # what follows _begin runs in a later guest tick
        try:
            await batch.fill()  # uncancellable: _settle always finds every plate's slot
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
                summary = await self._settle(batch)
        return summary

    def _stop(self, *, by_user: bool, reason: str) -> None:
        batch = self._batch
        if batch is None or batch.scope.cancel_called:
            return
        batch.stopped_by_user = by_user
        batch.stop_reason = reason
        self._set_batch_state(BatchState.STOPPING)
        batch.scope.cancel()

    async def _settle(self, batch: PlateLedger) -> BatchSummary:
        """Shielded end of every batch: cancel what still runs, end every plate, announce (and return) the summary."""
        live = batch.live_execution_ids()
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
        await map_in_slices(lambda slot: self._transition(batch, slot, PlateState.CANCELLED, reason), batch.slots)
        await trio.lowlevel.cancel_shielded_checkpoint()  # the announcements below start a guest tick of their own
        summary = batch.summary()  # every plate is final now
        self._batch = None
        self.batch_state.value, self.paused.value = BatchState.IDLE, False
        self._flush_projection()
        self._call(self.host.emit_progress_finished)
        if batch.kind is BatchKind.RUN:
            self._call(self.host.emit_execution_complete, summary)
        self._call(self.host.on_all_plates_completed, summary)
        self._call(self.host.update_button_states)
        counts = ", ".join(f"{n} {state}" for state, n in summary.counts.items())
        self._call(self.host.emit_status, f"{batch.kind.value} batch finished: {counts}")
        return summary

    async def _cancel_on_server(self, execution_ids: list[str]) -> None:
        # The cancel reply means "asked"; follow them until the server reports every one terminal (the events
        # stream is open before the cancel, so no confirmation is missed).
        async with self.backend.open_event_stream() as events:
            await self.backend.cancel(execution_ids)
            await follow_to_end(
                self.backend,
                execution_ids,
                events=events,
                poll_interval=0.25,
                max_poll_interval=1.0,
                request_timeout=self._cancel_timeout,
            )

    # ------------------------------------------------------------------ compile phase

    async def _compile_all(self, batch: PlateLedger) -> list[tuple[PlateSlot, CompiledPlate]]:
        """Compile every plate (bounded), one frozen ``CompileJob`` each; returns the compiled ones once the
        compile nursery has exited."""
        jobs = await map_in_slices(lambda s: CompileJob(plate=s.plate, pipeline_text=self.pipeline_text), batch.slots)

        async def submit(job: CompileJob) -> CompiledPlate:
            batch.check_wanted(batch.by_name[job.plate.name], "compiled")  # cancelled while queued
            return await self._compile_one(batch, job)

        async def wait(job: CompileJob, compiled: CompiledPlate) -> CompiledPlate:
            return compiled

        def on_result(job: CompileJob, compiled: CompiledPlate) -> None:
            slot = batch.by_name[job.plate.name]
            slot.outcome = replace(slot.outcome, artifact_id=compiled.artifact_id, pipeline=compiled.pipeline)
            self._transition(batch, slot, PlateState.COMPILED)

        engine: BatchSubmitWaitEngine[CompileJob, CompiledPlate, CompiledPlate] = BatchSubmitWaitEngine(
            submit=submit,
            wait=wait,
            max_concurrent_submits=self._limit,
            max_concurrent_waits=self._limit,
            on_result=on_result,
            on_error=lambda job, exc: self._fail(batch, batch.by_name[job.plate.name], exc),
        )
        await engine.run(jobs)
        compiled = [s for s in batch.slots if s.outcome.state is PlateState.COMPILED]
        return await map_in_slices(lambda s: (s, self._stores.compiled[s.plate.name]), compiled)

    async def _compile_one(self, batch: PlateLedger, job: CompileJob, *, reuse: bool = True) -> CompiledPlate:
        """The compiled plate of ``job``: the cached one when it was compiled from the same folder and pipeline on
        this server instance (and ``reuse``), else a fresh compile, which then replaces it in the cache."""
        plate = job.plate
        config = tuple(sorted(self.compile_config.items()))
        cached = self._stores.reusable(job, instance=self.backend.instance, config=config) if reuse else None
        if cached is not None:
            slot = batch.by_name[plate.name]
            slot.outcome = replace(slot.outcome, warnings=cached.warnings)
            return cached
        self._transition(batch, batch.by_name[plate.name], PlateState.COMPILING)
        reply = await self.backend.compile(
            plate_path=str(plate.path), plate_name=plate.name, pipeline=job.pipeline_text, config=self.compile_config
        )
        compiled = CompiledPlate(
            plate=plate,
            artifact_id=reply.artifact_id,
            pipeline_text=job.pipeline_text,
            wells=len(reply.wells),
            sites=reply.sites,
            channels=reply.channels,
            steps=tuple(reply.steps),
            server_instance=self.backend.instance,
            config=config,
            warnings=tuple(reply.warnings),
            pipeline=reply.pipeline,
        )
        slot = batch.by_name[plate.name]
        slot.outcome = replace(slot.outcome, warnings=compiled.warnings)
        for warning in compiled.warnings:
            self._call(self.host.emit_status, f"{plate.name}: warning: {warning}")
        self._stores.compiled[plate.name] = compiled
        return compiled

    # ------------------------------------------------------------------ execute phase

    async def _execute_all(
        self,
        batch: PlateLedger,
        compiled: list[tuple[PlateSlot, CompiledPlate]],
        events: trio.MemoryReceiveChannel[StreamItem],
        nursery: trio.Nursery,
    ) -> None:
        def on_progress(event: ProgressEvent) -> None:
            self.tracker.record(event)
            self._notify()

        def on_change() -> None:  # paused/resumed on the server (by anyone): the plate shows paused/running
            for row in follower.take_changed():
                if row.live and row.execution_id in batch.by_execution:
                    self._transition(batch, batch.by_execution[row.execution_id], live_plate_state(row.state))

        follower = ExecutionFollower(
            self.backend,
            on_change=on_change,
            on_progress=on_progress,
            poll_interval=self._poll_interval,
            max_poll_interval=self._max_poll_interval,
            request_timeout=self._request_timeout,
            liveness_timeout=self._liveness_timeout,
            liveness_error=lambda timeout: ServerLostError(f"server lost: no answer to status polls for {timeout:g} s"),
        )
        await nursery.start(follower.serve, events)

        async def submit(job: tuple[PlateSlot, CompiledPlate]) -> str:
            slot, plate = job
            batch.check_wanted(slot, "submitted")  # cancelled (and so ended) before its turn came
            try:
                execution_id = await self._submit_execution(plate.artifact_id)
            except ArtifactNotFoundError:
                # The server forgot the artifact (restart, expiry): compile once more, then submit that.
                plate = await self._compile_one(
                    batch, CompileJob(plate=slot.plate, pipeline_text=plate.pipeline_text), reuse=False
                )
                slot.outcome = replace(slot.outcome, artifact_id=plate.artifact_id)
                execution_id = await self._submit_execution(plate.artifact_id)
            batch.submitted(slot, execution_id, output=str(self.output_dir / slot.plate.name))
            self._stores.execution_ids[slot.plate.name] = execution_id
            self._transition(batch, slot, PlateState.RUNNING)
            follower.follow(execution_id, slot.plate.name)  # applies a state event that overtook this reply
            if slot.cancel_requested:  # cancelled while its submission was in flight
                await self.backend.cancel([execution_id])
            elif batch.paused:  # submitted while the batch is paused: pause it too (best effort)
                try:
                    await self.backend.pause([execution_id])
                except HcsBatchError as exc:
                    log.warning("pausing execution %s failed: %s", execution_id, exc)
            return execution_id

        async def wait(job: tuple[PlateSlot, CompiledPlate], execution_id: str) -> FollowedExecution:
            return await follower.wait(execution_id)

        def on_result(job: tuple[PlateSlot, CompiledPlate], ended: FollowedExecution) -> None:
            assert isinstance(ended.state, ExecutionState)  # wait() raises for the other endings
            job[0].outcome = replace(job[0].outcome, wells_total=ended.wells_total, wells_reused=ended.wells_reused)
            self._transition(batch, job[0], PLATE_STATE_OF_EXECUTION[ended.state], ended.error)

        engine: BatchSubmitWaitEngine[tuple[PlateSlot, CompiledPlate], str, FollowedExecution] = BatchSubmitWaitEngine(
            submit=submit,
            wait=wait,
            max_concurrent_submits=self._limit,
            max_concurrent_waits=math.inf,
            on_result=on_result,
            on_error=lambda job, exc: self._fail(batch, job[0], exc),
        )
        try:
            await engine.run(compiled)
        finally:
            await follower.release()  # nobody waits on it now: its rows go with the batch, not to a full GC

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

    # ------------------------------------------------------------------ the one state path

    def _fail(self, batch: PlateLedger, slot: PlateSlot, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, HcsBatchError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, HcsBatchError):
            log.error("plate %s failed with an unexpected error", slot.plate.name, exc_info=exc)
        self._transition(batch, slot, PlateState.FAILED, message)

    def _transition(self, batch: PlateLedger, slot: PlateSlot, state: PlateState, error: str = "") -> bool:
        """Move one plate to ``state``; the only writer of plate state. Terminal states are final: returns
        False (and changes nothing) for a plate already terminal or already in ``state``."""
        if not batch.transition(slot, state, error):
            return False
        name = slot.plate.name
        self._stores.states[name] = state
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
        text = server_status_text(snapshot)
        self.tracker.set_server_status(text)
        self._call(self.host.emit_status, text)

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        call_logged(log, "the batch", callback, *args)
