"""The plate ledger, alone: a state final for the batch is never overwritten, and the summary says how it ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from hcs_batch.errors import BatchError
from hcs_batch.model import ExecutionState, PlateRef, PlateState
from hcs_batch.workflow.ledger import BatchKind, PlateLedger, live_plate_state

PLATES = [PlateRef(name=f"P{i}", path=Path(f"/plates/P{i}")) for i in (1, 2)]


async def _filled(kind: BatchKind) -> PlateLedger:
    ledger = PlateLedger(kind, PLATES)
    assert ledger.slots == [] and not ledger.filled.is_set()  # made empty: O(1) before a batch's first await
    await ledger.fill()
    assert [slot.plate for slot in ledger.slots] == PLATES and ledger.filled.is_set()
    return ledger


async def test_a_terminal_state_is_final() -> None:
    ledger = await _filled(BatchKind.RUN)
    slot = ledger.by_name["P1"]
    assert ledger.transition(slot, PlateState.RUNNING)
    assert not ledger.transition(slot, PlateState.RUNNING)  # no change, no announcement
    assert ledger.transition(slot, PlateState.CANCELLED, "stopped")
    assert not ledger.transition(slot, PlateState.COMPLETED)
    assert (slot.outcome.state, slot.outcome.error) == (PlateState.CANCELLED, "stopped")


async def test_compiled_is_final_only_in_a_compile_only_batch() -> None:
    compile_only, run = await _filled(BatchKind.COMPILE), await _filled(BatchKind.RUN)
    for ledger in (compile_only, run):
        ledger.transition(ledger.by_name["P1"], PlateState.COMPILED)
        ledger.transition(ledger.by_name["P1"], PlateState.CANCELLED)
    assert compile_only.by_name["P1"].outcome.state is PlateState.COMPILED
    assert run.by_name["P1"].outcome.state is PlateState.CANCELLED


async def test_the_summary_and_its_exit_code() -> None:
    ledger = await _filled(BatchKind.RUN)
    ledger.transition(ledger.by_name["P1"], PlateState.COMPLETED)
    ledger.transition(ledger.by_name["P2"], PlateState.FAILED, "boom")
    summary = ledger.summary()
    assert summary.counts == {"completed": 1, "failed": 1}
    assert summary.exit_code() == 1
    assert summary.to_json()["plates"][1] == {
        "plate": "P2",
        "path": "/plates/P2",
        "state": "failed",
        "error": "boom",
        "artifact_id": "",
        "execution_id": "",
        "output": "",
        "warnings": [],
        "wells_total": 0,
        "wells_reused": 0,
        "pipeline": "",
    }
    ledger.stopped_by_user = True
    assert ledger.summary().exit_code() == 130


async def test_paused_is_live_never_final_and_resumes_to_running() -> None:
    ledger = await _filled(BatchKind.RUN)
    slot = ledger.by_name["P1"]
    ledger.transition(slot, PlateState.RUNNING)
    ledger.submitted(slot, "e1", output="/out/P1")
    assert live_plate_state(ExecutionState.PAUSED) is PlateState.PAUSED
    assert live_plate_state(ExecutionState.RUNNING) is PlateState.RUNNING
    assert ledger.transition(slot, PlateState.PAUSED) and not ledger.is_done(slot.outcome.state)
    assert ledger.live_execution_ids() == ["e1"]
    assert ledger.transition(slot, live_plate_state(ExecutionState.RUNNING))
    assert ledger.transition(slot, PlateState.CANCELLED)
    assert not ledger.transition(slot, PlateState.PAUSED)  # a terminal state is never overwritten
    assert ledger.live_execution_ids() == []


async def test_request_cancel_marks_only_a_plate_not_yet_done() -> None:
    ledger = await _filled(BatchKind.RUN)
    ledger.transition(ledger.by_name["P2"], PlateState.FAILED, "boom")
    assert ledger.request_cancel("nope") is None and ledger.request_cancel("P2") is None
    slot = ledger.request_cancel("P1")
    assert slot is not None and slot.cancel_requested
    with pytest.raises(BatchError, match="P1 was cancelled before it was compiled"):
        ledger.check_wanted(slot, "compiled")
    ledger.check_wanted(ledger.by_name["P2"], "compiled")  # not marked: no error
