"""Test helpers for hosts and policy code: an in-memory, scripted execution server.

:class:`InMemoryBackend` implements :class:`~hcs_batch.backend.ExecutionBackend` (the seam the service talks to)
without sockets or processes, on Trio's clock, so policy tests run under ``autojump_clock`` in milliseconds::

    from hcs_batch.testing import open_in_memory_backend

    async def test_compile_failure_does_not_stop_the_others(autojump_clock):
        async with open_in_memory_backend(
            compile_delay=2.0,
            execute_delay=10.0,
            compile_failures={"P2": PlateError("P2: no images")},
        ) as backend:
            ...  # run the service against `backend`
            assert backend.last_compile_end <= backend.first_execute_start

What it simulates (all times are Trio time, so virtual under ``autojump_clock``):

- ``compile`` takes ``compile_delay`` and returns an artifact id derived from (plate, pipeline, config), so
  compiling the same thing twice gives the same id; it raises a fresh copy of ``compile_failures[plate_name]``.
- ``execute`` answers at once with an execution id (``ArtifactNotFoundError`` for an unknown artifact, a copy of
  ``reject_execute[plate_name]`` to reject a submission). The execution then goes queued → running → completed
  over ``execute_delay`` (``queue_delay`` of it queued), emitting a ``ProgressEvent`` per (well, step), or ends
  ``failed`` with the message ``execute_failures[plate_name]``. ``workers`` bounds how many run at once.
- Events (``StateEvent``, ``ProgressEvent``, a ``HeartbeatEvent`` every ``heartbeat_interval``) are numbered
  from 1 and carry ``instance``, as the real server's are. ``drop_events`` (a bool or a predicate on the event,
  changeable at any time) drops state and progress events after numbering them, so subscribers see an
  ``EventGap`` before the next delivered event (unless ``gap_markers=False``) and only polls see the end.
- ``status`` and ``cancel`` are batched and exact: ``cancel`` cancels only the named executions.
- :meth:`InMemoryBackend.lose` simulates a dead server or broken connection: pending requests raise the error,
  event streams get ``ConnectionLost`` and end, later requests raise it, executions stop. :meth:`freeze`
  simulates a hung server: requests never answer and no event is sent.

Counters and logs (``compile_calls``, ``execute_calls``, ``cancel_calls``, ``status_calls``,
``max_concurrent_compiles``, ``max_running``, ``compile_log``, ``execute_log``, ``cancel_log``, ``published``)
are plain attributes for assertions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import trio

from ..backend import EventFanout, EventGap, ExecutionBackend, StreamItem
from ..errors import ArtifactNotFoundError, TransportError
from ..model import ExecutionState, cancel_each
from ..protocol import (
    HEARTBEAT_INTERVAL,
    PROTOCOL_VERSION,
    CancelReply,
    CompileReply,
    Event,
    ExecutionRecord,
    HeartbeatEvent,
    PauseReply,
    ServerInfoReply,
    StateEvent,
    progress_event,
)
from .calls import CompileCall, ExecuteCall, SimulatedExecution, artifact_id_of, fresh_error

__all__ = ["CompileCall", "ExecuteCall", "InMemoryBackend", "open_in_memory_backend"]

T = TypeVar("T")


class InMemoryBackend(ExecutionBackend):
    """A scripted execution server in memory; see the module docstring for what it simulates.

    It must be served (``async with open_in_memory_backend(...)``, or ``await nursery.start(backend.serve)``)
    for executions to progress and heartbeats to flow; ``compile``, ``status`` and ``cancel`` work without.
    The scripting attributes (``compile_failures``, ``execute_failures``, ``reject_execute``, ``drop_events``,
    the delays) may be changed between calls.
    """

    def __init__(
        self,
        *,
        compile_delay: float = 0.0,
        execute_delay: float = 1.0,
        queue_delay: float = 0.0,
        request_delay: float = 0.0,
        compile_failures: Mapping[str, Exception] | None = None,
        execute_failures: Mapping[str, str | Exception] | None = None,
        reject_execute: Mapping[str, Exception] | None = None,
        workers: int | None = None,
        wells: Sequence[str] = ("A01", "A02", "B01", "B02"),
        steps: Sequence[str] = ("segment", "count"),
        drop_events: bool | Callable[[Event], bool] = False,
        gap_markers: bool = True,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL,
        instance: str = "in-memory-1",
    ) -> None:
        self.compile_delay = compile_delay
        self.execute_delay = execute_delay
        self.queue_delay = queue_delay
        self.request_delay = request_delay
        self.compile_failures: dict[str, Exception] = dict(compile_failures or {})
        self.execute_failures: dict[str, str | Exception] = dict(execute_failures or {})
        self.reject_execute: dict[str, Exception] = dict(reject_execute or {})
        self.workers = workers
        self.wells = tuple(wells)
        self.steps = tuple(steps)
        self.drop_events = drop_events
        self.gap_markers = gap_markers
        self.heartbeat_interval = heartbeat_interval
        self._instance = instance

        # Counters and logs for assertions.
        self.compile_calls = 0
        self.execute_calls = 0
        self.status_calls = 0
        self.cancel_calls = 0
        self.server_info_calls = 0
        self.max_concurrent_compiles = 0
        self.max_concurrent_requests = 0
        self.max_running = 0
        self.compile_log: list[CompileCall] = []
        self.execute_log: list[ExecuteCall] = []
        self.cancel_log: list[tuple[str, ...]] = []
        self.published: list[Event] = []
        """Every event delivered to subscribers (dropped ones are not here)."""

        self._compiling = 0
        self._requests = 0
        self._running = 0
        self._artifacts: dict[str, str] = {}
        self._executions: dict[str, SimulatedExecution] = {}
        self._ids = itertools.count(1)
        self._seq = 0
        self._last_delivered = 0
        self._fanout = EventFanout()
        self._request_scopes: set[trio.CancelScope] = set()
        self._lost: TransportError | None = None
        self._frozen = False
        self._nursery: trio.Nursery | None = None
        self._limiter = trio.CapacityLimiter(workers if workers is not None else math.inf)
        self._started_at: float | None = None

    # ------------------------------------------------------------------ scripting and inspection

    @property
    def last_compile_end(self) -> float | None:
        """When the last compile request ended (any outcome), or None."""
        return max((c.ended_at for c in self.compile_log), default=None)

    @property
    def first_execute_start(self) -> float | None:
        """When the first execute request arrived (accepted or not), or None."""
        return min((c.at for c in self.execute_log), default=None)

    def record(self, execution_id: str) -> ExecutionRecord:
        """The current record of one execution. Raises KeyError for an unknown id."""
        return self._record(self._executions[execution_id])

    def records(self) -> list[ExecutionRecord]:
        """Every execution's record, in submission order."""
        return [self._record(ex) for ex in self._executions.values()]

    def live_executions(self) -> list[str]:
        """Ids of executions that are queued or running (what a clean stop must leave empty)."""
        return [ex.execution_id for ex in self._executions.values() if not ex.state.is_terminal]

    def lose(self, error: TransportError) -> None:
        """Simulate a lost server: pending requests raise ``error``, event streams get ``ConnectionLost`` and
        end, later requests and streams fail with it, executions stop where they are. Idempotent."""
        if self._lost is not None:
            return
        self._lost = error
        for scope in self._request_scopes:
            scope.cancel()
        self._fanout.end(error)
        for ex in self._executions.values():
            ex.scope.cancel()

    def freeze(self) -> None:
        """Simulate a hung server: requests never answer (until :meth:`lose`), no event or heartbeat is sent,
        executions make no progress."""
        self._frozen = True

    # ------------------------------------------------------------------ ExecutionBackend

    async def compile(
        self, *, plate_path: str, plate_name: str, pipeline: str, config: dict[str, str] | None = None
    ) -> CompileReply:
        self.compile_calls += 1

        async def body() -> CompileReply:
            started = trio.current_time()
            self._compiling += 1
            self.max_concurrent_compiles = max(self.max_concurrent_compiles, self._compiling)
            outcome, artifact_id, error = "cancelled", None, None
            try:
                await trio.sleep(self.compile_delay)
                failure = self.compile_failures.get(plate_name)
                if failure is not None:
                    outcome, error = "failed", fresh_error(failure)
                    raise error
                artifact_id = artifact_id_of(plate_name, pipeline, config or {})
                self._artifacts[artifact_id] = plate_name
                outcome = "ok"
                return CompileReply(
                    rid=0,
                    artifact_id=artifact_id,
                    plate_name=plate_name,
                    wells=list(self.wells),
                    sites=1,
                    channels=1,
                    steps=list(self.steps),
                )
            finally:
                self._compiling -= 1
                self.compile_log.append(
                    CompileCall(
                        plate_name=plate_name,
                        started_at=started,
                        ended_at=trio.current_time(),
                        outcome=outcome,
                        artifact_id=artifact_id,
                        error=error,
                    )
                )

        return await self._guard(body)

    async def execute(self, artifact_id: str, *, output_dir: str, force: bool = False) -> str:
        self.execute_calls += 1

        async def body() -> str:
            await trio.sleep(self.request_delay)
            now = trio.current_time()
            plate_name = self._artifacts.get(artifact_id)
            error: Exception | None = None
            if plate_name is None:
                error = ArtifactNotFoundError(f"artifact {artifact_id!r} is unknown to this server; compile again")
            elif plate_name in self.reject_execute:
                error = fresh_error(self.reject_execute[plate_name])
            elif self._nursery is None:
                raise RuntimeError(
                    "InMemoryBackend is not being served: use 'async with open_in_memory_backend()' or "
                    "'await nursery.start(backend.serve)' so executions can run"
                )
            if error is not None:
                self.execute_log.append(
                    ExecuteCall(artifact_id=artifact_id, plate_name=plate_name or "", at=now, error=error)
                )
                raise error
            assert plate_name is not None and self._nursery is not None
            execution_id = f"exec-{next(self._ids)}"
            ex = SimulatedExecution(
                execution_id=execution_id,
                artifact_id=artifact_id,
                plate_name=plate_name,
                output=f"{output_dir.rstrip('/')}/{plate_name}",
                now=now,
            )
            self._executions[execution_id] = ex
            self.execute_log.append(
                ExecuteCall(artifact_id=artifact_id, plate_name=plate_name, at=now, execution_id=execution_id)
            )
            self._emit_state(ex)
            self._nursery.start_soon(self._run_execution, ex)
            return execution_id

        return await self._guard(body)

    async def status(self, execution_ids: Sequence[str]) -> tuple[list[ExecutionRecord], list[str]]:
        self.status_calls += 1

        async def body() -> tuple[list[ExecutionRecord], list[str]]:
            await trio.sleep(self.request_delay)
            known = [self._record(self._executions[i]) for i in execution_ids if i in self._executions]
            unknown = [i for i in execution_ids if i not in self._executions]
            return known, unknown

        return await self._guard(body)

    async def cancel(self, execution_ids: Sequence[str]) -> CancelReply:
        self.cancel_calls += 1
        self.cancel_log.append(tuple(execution_ids))

        async def body() -> CancelReply:
            await trio.sleep(self.request_delay)

            def cancel(ex: SimulatedExecution) -> None:
                ex.scope.cancel()
                self._finish(ex, ExecutionState.CANCELLED, "cancelled on request")

            cancelled, already, unknown = cancel_each(execution_ids, self._executions.get, cancel)
            return CancelReply(rid=0, cancelled=cancelled, already_terminal=already, unknown=unknown)

        return await self._guard(body)

    async def pause(self, execution_ids: Sequence[str], *, paused: bool = True) -> PauseReply:
        async def body() -> PauseReply:
            await trio.sleep(self.request_delay)
            ids = list(execution_ids) or [i for i, ex in self._executions.items() if not ex.state.is_terminal]
            out: dict[str, list[str]] = {"changed": [], "unchanged": [], "already_terminal": [], "unknown": []}
            for execution_id in ids:
                ex = self._executions.get(execution_id)
                if ex is None or ex.state.is_terminal:
                    out["unknown" if ex is None else "already_terminal"].append(execution_id)
                elif (ex.paused is None) == paused:
                    if paused:
                        ex.paused = trio.Event()
                    else:
                        assert ex.paused is not None
                        ex.paused.set()
                        ex.paused = None
                    out["changed"].append(execution_id)
                    self._emit_state(ex)
                else:
                    out["unchanged"].append(execution_id)
            return PauseReply(rid=0, **out)

        return await self._guard(body)

    async def server_info(self, *, records: bool = False) -> ServerInfoReply:
        self.server_info_calls += 1

        async def body() -> ServerInfoReply:
            await trio.sleep(self.request_delay)
            now = trio.current_time()
            queued = sum(ex.state is ExecutionState.QUEUED for ex in self._executions.values())
            return ServerInfoReply(
                rid=0,
                instance=self._instance,
                version=PROTOCOL_VERSION,
                uptime=0.0 if self._started_at is None else now - self._started_at,
                workers=self.workers or 0,
                queued=queued,
                running=self._running,
                busy_workers=self._running,
                executions=self.records() if records else [],
            )

        return await self._guard(body)

    def open_event_stream(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[StreamItem]]:
        return self._fanout.open(self._lost)

    # ------------------------------------------------------------------ serving

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the server side (executions and heartbeats) until cancelled; executions stop with it."""
        if self._nursery is not None:
            raise RuntimeError("this InMemoryBackend is already being served")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._started_at = trio.current_time()
                if self.heartbeat_interval is not None:
                    nursery.start_soon(self._heartbeats, self.heartbeat_interval)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def _heartbeats(self, interval: float) -> None:
        while self._lost is None:
            await trio.sleep(interval)
            queued = sum(ex.state is ExecutionState.QUEUED for ex in self._executions.values())
            self._publish(HeartbeatEvent, time=trio.current_time(), queued=queued, running=self._running)

    async def _run_execution(self, ex: SimulatedExecution) -> None:
        with ex.scope:
            async with self._limiter:
                await trio.sleep(self.queue_delay)
                await self._unfrozen()
                ex.state = ExecutionState.RUNNING
                self._emit_state(ex)
                self._running += 1
                self.max_running = max(self.max_running, self._running)
                try:
                    await self._work(ex)
                finally:
                    self._running -= 1

    async def _work(self, ex: SimulatedExecution) -> None:
        units = len(self.wells) * len(self.steps)
        step_time = max(self.execute_delay - self.queue_delay, 0.0) / max(units, 1)
        done = 0
        for well in self.wells:
            while ex.paused is not None:
                await ex.paused.wait()
            for step in self.steps:
                await trio.sleep(step_time)
                await self._unfrozen()
                done += 1
                self._publish(partial(progress_event, ex), well=well, step=step, done=done, total=units)
            ex.wells_done += 1
        if units == 0:
            await trio.sleep(step_time)
        failure = self.execute_failures.get(ex.plate_name)
        if failure is not None:
            self._finish(ex, ExecutionState.FAILED, str(failure))
        else:
            self._finish(ex, ExecutionState.COMPLETED, "")

    # ------------------------------------------------------------------ internals

    async def _guard(self, body: Callable[[], Awaitable[T]]) -> T:
        """Run one request so that :meth:`lose` can end it with the loss error, and :meth:`freeze` can hang it."""
        if self._lost is not None:
            raise self._lost
        scope = trio.CancelScope()
        self._request_scopes.add(scope)
        self._requests += 1
        self.max_concurrent_requests = max(self.max_concurrent_requests, self._requests)
        try:
            with scope:
                if self._frozen:
                    await trio.sleep_forever()
                return await body()
        finally:
            self._requests -= 1
            self._request_scopes.discard(scope)
        # Only lose() cancels this scope: the request dies with the connection.
        assert self._lost is not None
        raise self._lost

    async def _unfrozen(self) -> None:
        if self._frozen:
            await trio.sleep_forever()

    def _finish(self, ex: SimulatedExecution, state: ExecutionState, error: str) -> None:
        ex.state = state
        ex.error = error
        ex.finished_at = trio.current_time()
        self._emit_state(ex)

    def _emit_state(self, ex: SimulatedExecution) -> None:
        self._publish(
            StateEvent, execution_id=ex.execution_id, plate_name=ex.plate_name, state=ex.shown, error=ex.error
        )

    def _publish(self, kind: Callable[..., Event], **fields: Any) -> None:
        """Number and deliver one event made by ``kind`` (an event class or builder taking ``seq`` and
        ``instance``), unless a lost or frozen server sends nothing."""
        seq = self._next_seq()
        if seq:
            self._deliver(kind(seq=seq, instance=self._instance, **fields))

    def _next_seq(self) -> int:
        """The next event number, or 0 when a lost or frozen server sends nothing."""
        if self._lost is not None or self._frozen:
            return 0
        self._seq += 1
        return self._seq

    def _deliver(self, event: Event) -> None:
        if callable(self.drop_events):
            drop = self.drop_events(event)
        else:  # True drops what reports executions; heartbeats still show the server alive (and reveal the gap)
            drop = self.drop_events and not isinstance(event, HeartbeatEvent)
        if drop:
            return
        if self.gap_markers and event.seq > self._last_delivered + 1:
            self._fanout.publish(EventGap(expected=self._last_delivered + 1, received=event.seq))
        self._last_delivered = event.seq
        self.published.append(event)
        self._fanout.publish(event)

    def _record(self, ex: SimulatedExecution) -> ExecutionRecord:
        return ex.record(wells_total=len(self.wells))


@asynccontextmanager
async def open_in_memory_backend(**options: Any) -> AsyncIterator[InMemoryBackend]:
    """Make an :class:`InMemoryBackend` with ``options`` and serve it for the duration of the block.

    Leaving the block stops every execution (no events after that) and closes nothing else.
    """
    backend = InMemoryBackend(**options)
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.serve)
        try:
            yield backend
        finally:
            nursery.cancel_scope.cancel()
