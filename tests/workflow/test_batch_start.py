"""A 10,000-plate batch starts without holding the scheduler: its per-plate records are made in slices, while the
synchronous start still claims the service (no second batch) and shows every plate queued at once."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from hcs_batch import BatchAlreadyRunningError, PlateState
from hcs_batch.testing.backend import open_in_memory_backend
from hcs_batch.workflow import ledger as ledger_module
from hcs_batch.workflow import progress as progress_module
from hcs_batch.workflow.service import BatchSummary

from .test_service import RecordingHost, plates, service_for

PLATES = 10_000


class _RecordsPerStep(trio.abc.Instrument):
    """Counts the per-plate records (ledger slots, progress rows) each task step makes; keeps the most."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.steps_making = 0

    def made(self) -> None:
        self.now += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.now = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.most = max(self.most, self.now)
        self.steps_making += self.now > 0


class _StartHost(RecordingHost):
    """Checks the views at the synchronous start of the batch (``emit_progress_started`` is called there)."""

    def __init__(self) -> None:
        super().__init__()
        self.at_start: dict[str, Any] = {}

    def emit_progress_started(self, total: int) -> None:
        states = self.plate_execution_states
        tracker = self.progress_tracker
        assert tracker is not None
        self.at_start = {
            "total": total,
            "queued": sum(1 for state in states.values() if state is PlateState.QUEUED),
            "counts": tracker.counts(),
            "percent": tracker.plate_percent(f"P{PLATES}"),
        }


async def test_a_10000_plate_start_makes_its_records_in_slices_and_claims_the_service_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = _RecordsPerStep()
    real_slot, real_progress = ledger_module.PlateSlot, progress_module.PlateProgress

    def counted_slot(**kwargs: Any) -> Any:
        counter.made()
        return real_slot(**kwargs)

    def counted_progress(**kwargs: Any) -> Any:
        counter.made()
        return real_progress(**kwargs)

    monkeypatch.setattr(ledger_module, "PlateSlot", counted_slot)
    monkeypatch.setattr(progress_module, "PlateProgress", counted_progress)
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(300):  # hang guard only
            async with open_in_memory_backend(compile_delay=1.0) as backend:
                host = _StartHost()
                service = service_for(backend, host)
                results: list[object] = []
                turns_before_first_compile = 0

                async def click() -> None:
                    try:
                        results.append(await service.run_plates(plates(PLATES)))
                    except BatchAlreadyRunningError as exc:
                        results.append(exc)

                async def watch_then_stop() -> None:
                    nonlocal turns_before_first_compile
                    while backend.compile_calls == 0:
                        turns_before_first_compile += 1
                        await trio.lowlevel.checkpoint()
                    service.stop()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(click)
                    nursery.start_soon(click)  # the double click: refused before its first await
                    nursery.start_soon(watch_then_stop)
    finally:
        trio.lowlevel.remove_instrument(counter)
    # One batch ran, one was refused; every plate showed queued from the synchronous start on.
    assert sum(isinstance(r, BatchAlreadyRunningError) for r in results) == 1
    (summary,) = [r for r in results if isinstance(r, BatchSummary)]
    assert host.at_start == {"total": PLATES, "queued": PLATES, "counts": (0, PLATES), "percent": 0.0}
    # The 10,000 slots were made over several task steps, other tasks running in between (a start that made them
    # all before its first yield, as it once did, holds a GUI's guest tick for tens of milliseconds).
    assert counter.most < PLATES, counter.most
    assert counter.steps_making >= 2
    assert turns_before_first_compile >= 2
    # Stopped at its first compile: every plate ended exactly once, cancelled or (the one compiling) so too.
    assert len(summary.plates) == PLATES
    assert all(outcome.state is PlateState.CANCELLED for outcome in summary.plates)
    assert all(n == 1 for n in host.terminal_counts().values()) and len(host.terminal_counts()) == PLATES
    assert service.tracker.counts() == (PLATES, PLATES)


async def test_cancel_plate_while_the_slots_are_being_made_waits_for_them_then_cancels(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    real = ledger_module.map_in_slices

    async def one_per_slice(fn: Any, items: Any) -> Any:  # a yield after every slot: the gap is always there
        return await real(fn, items, slice_seconds=0.0)

    monkeypatch.setattr(ledger_module, "map_in_slices", one_per_slice)
    async with open_in_memory_backend(compile_delay=1.0) as backend:
        host = RecordingHost()
        service = service_for(backend, host, max_concurrent_requests=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.run_plates, plates(50))
            while not service.active:
                await trio.lowlevel.checkpoint()
            batch = service._batch
            assert batch is not None and "P50" not in batch.by_name  # its slot is not made yet
            assert await service.cancel_plate("P50")
    assert host.transitions["P50"] == [PlateState.QUEUED, PlateState.CANCELLED]
    assert host.transitions["P1"][-1] is PlateState.COMPLETED
    assert backend.compile_calls == 49
