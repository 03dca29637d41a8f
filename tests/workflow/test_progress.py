"""The progress tracker's per-well states: a start marker (empty step) means running, a step means done."""

from __future__ import annotations

from hcs_batch.protocol import ProgressEvent
from hcs_batch.workflow.progress import MAX_WELLS, ProgressTracker, WellState


def _event(well: str, step: str, done: int, plate: str = "P") -> ProgressEvent:
    return ProgressEvent(
        seq=1, instance="i1", execution_id="e1", plate_name=plate, well=well, step=step, done=done, total=4
    )


def test_wells_go_running_then_done_and_a_late_start_marker_never_undoes_done() -> None:
    tracker = ProgressTracker()
    tracker.reset(["P"])
    tracker.record(_event("A01", "", 0))
    tracker.record(_event("A02", "", 0))
    assert tracker.plates["P"].wells == {"A01": WellState.RUNNING, "A02": WellState.RUNNING}
    tracker.record(_event("A02", "count", 1))
    tracker.record(_event("A02", "measure", 2))
    tracker.record(_event("A02", "", 2))  # a duplicate marker after the well finished
    assert tracker.plates["P"].wells == {"A01": WellState.RUNNING, "A02": WellState.DONE}
    assert tracker.plate_percent("P") == 50.0
    tracker.record(_event("A01", "count", 1))  # out of order: ignored, like the counts
    assert tracker.plates["P"].wells["A01"] is WellState.RUNNING
    tracker.record(_event("B01", "", 0, plate="other"))  # not in the batch
    assert "other" not in tracker.plates
    tracker.reset(["P"])
    assert tracker.plates["P"].wells == {}


def test_a_flood_of_invented_well_names_is_bounded() -> None:
    tracker = ProgressTracker()
    tracker.reset(["P"])
    for i in range(MAX_WELLS + 50):
        tracker.record(_event(f"W{i}", "", 0))
    tracker.record(_event("W0", "count", 1))  # a known well still moves on
    wells = tracker.plates["P"].wells
    assert len(wells) == MAX_WELLS and wells["W0"] is WellState.DONE
