"""A test double of ``BatchWorkflowService`` and its backend, for window logic without a server.

It keeps the promises the window relies on: ``batch_state`` flips before the first await, every plate reaches
exactly one terminal state, ``stop()`` is one call, host callbacks run in the Trio thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import trio
import trio_util

from hcs_batch.errors import BatchAlreadyRunningError, ServerUnreachableError
from hcs_batch.model import PlateRef, PlateState
from hcs_batch.workflow.host import BatchHost, HostStores


@dataclass
class FakeHello:
    workers: int = 2


@dataclass
class FakeBackend:
    """Lists no executions (nothing to attach to) and publishes no events."""

    hello: FakeHello = field(default_factory=FakeHello)

    async def server_info(self, *, records: bool = False) -> Any:
        return SimpleNamespace(executions=[])

    @asynccontextmanager
    async def open_event_stream(self) -> AsyncIterator[trio.MemoryReceiveChannel[Any]]:
        send, receive = trio.open_memory_channel[Any](0)
        async with send, receive:
            yield receive


@asynccontextmanager
async def fake_open_backend(
    server: str | None, *, workers: int | None = None, connect_timeout: float = 5.0
) -> AsyncIterator[FakeBackend]:
    if server is not None and "unreachable" in server:
        await trio.sleep(connect_timeout)
        raise ServerUnreachableError(f"nothing answered at {server} within {connect_timeout} s")
    yield FakeBackend()


class FakeTracker:
    def __init__(self) -> None:
        self.percent: dict[str, float] = {}
        self.server_status_text = ""

    def plate_percent(self, plate_name: str) -> float:
        return self.percent.get(plate_name, 0.0)


@dataclass(frozen=True)
class FakeSummary:
    kind: str
    counts: dict[str, int]

    def exit_code(self) -> int:
        return 0 if set(self.counts) <= {"completed", "compiled"} else 1


class FakeService:
    """Compiles instantly; a run moves each plate through progress steps, waiting on ``gate`` when ``hold``."""

    fail: frozenset[str] = frozenset()
    hold = False

    def __init__(self, host: BatchHost, backend: Any, *, pipeline_text: str, output_dir: Any = ".") -> None:
        if not isinstance(host, BatchHost):
            raise TypeError("host must subclass BatchHost")
        self.host = host
        self.backend = backend
        self.pipeline_text = pipeline_text
        self.batch_state: trio_util.AsyncValue[str] = trio_util.AsyncValue("idle")
        self.gate = trio.Event()
        self.running = trio.Event()
        self._scope: trio.CancelScope | None = None
        self.tracker = FakeTracker()
        self.stores = HostStores(tracker=self.tracker)  # type: ignore[arg-type]
        host.bind_stores(self.stores)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.tracker.server_status_text = "server connected: 0 queued, 0 running, 0/2 workers busy"
        self.host.emit_status(self.tracker.server_status_text)
        task_status.started()
        await trio.sleep_forever()

    def stop(self) -> None:
        if self._scope is not None:
            self.batch_state.value = "stopping"
            self.host.update_button_states()
            self._scope.cancel()

    def _set(self, plate: str, state: PlateState) -> None:
        current = self.host.plate_execution_states.get(plate)
        if current is not None and current.is_terminal:
            return
        self.stores.states[plate] = state
        self.host.emit_orchestrator_state(plate, state)
        if state.is_terminal:
            error = "Traceback (most recent call last):\n  ValueError: bad well" if state == PlateState.FAILED else ""
            self.host.on_plate_completed(plate, state, error)

    async def compile_plates(self, plates: Sequence[PlateRef]) -> FakeSummary:
        return await self._batch("compile", plates)

    async def run_plates(self, plates: Sequence[PlateRef]) -> FakeSummary:
        return await self._batch("run", plates)

    async def _batch(self, kind: str, plates: Sequence[PlateRef]) -> FakeSummary:
        if self.batch_state.value != "idle":
            raise BatchAlreadyRunningError("a batch is active")
        self.batch_state.value = "compiling"
        self.host.update_button_states()
        names = [p.name for p in plates]
        for name in names:
            self.stores.states.pop(name, None)
            self._set(name, PlateState.QUEUED)
        self.host.emit_progress_started(len(names))
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                await trio.lowlevel.checkpoint()
                for name in names:
                    self._set(name, PlateState.COMPILING)
                    await trio.lowlevel.checkpoint()
                    if kind == "compile" and name in self.fail:
                        self._set(name, PlateState.FAILED)
                    else:
                        self._set(name, PlateState.COMPILED)
                if kind == "run":
                    self.batch_state.value = "running"
                    self.host.update_button_states()
                    for name in names:
                        self._set(name, PlateState.RUNNING)
                    self.running.set()
                    for step in (25, 50, 75):
                        for name in names:
                            self.tracker.percent[name] = step
                        self.host.update_item_list()
                        await trio.lowlevel.checkpoint()
                        if self.hold:
                            await self.gate.wait()
                    for name in names:
                        self.tracker.percent[name] = 100
                        self._set(name, PlateState.FAILED if name in self.fail else PlateState.COMPLETED)
            for name in names:
                if not (kind == "compile" and self.host.plate_execution_states[name] == PlateState.COMPILED):
                    self._set(name, PlateState.CANCELLED)
        finally:
            self._scope = None
        counts: dict[str, int] = {}
        for name in names:
            state = self.host.plate_execution_states[name].value
            counts[state] = counts.get(state, 0) + 1
        summary = FakeSummary(kind=kind, counts=counts)
        self.batch_state.value = "idle"
        self.host.update_button_states()
        self.host.emit_progress_finished()
        self.host.on_all_plates_completed(summary)
        self.host.emit_status(f"{kind} batch finished: {counts}")
        return summary
