"""The executor seam: an execution's life (``queued → running → completed | failed | cancelled``) written once;
each plate's wells run on a :class:`~.runner.WellRunner` (``local`` worker processes or a ``dask`` cluster).

- The runner queues wells in one FIFO shared by all plates. Each execution drives at most ``runner.slots`` wells
  at once, and a driver that finishes a well queues again at the back of that FIFO, so concurrent plates take
  turns on the workers instead of the first plate holding all of them.
- Progress: when a well starts, one ``progress`` event with an empty ``step`` (its done count unchanged); when
  it finishes, one ``progress`` event per (well, step) (steps of a well run in one call, so they are reported
  together when the well is done). Wells skipped because their result file
  already exists for the same artifact count as done and publish nothing.
- A plan whose steps are all marked noops (:func:`hcs_batch.steps.inline_noop`) runs inline: no images are read
  and no well runs on the executor; each (well, site, channel) gets a row without measurements.
- Each execution drives at most ``runner.slots`` wells at once; a failing well fails alone (see below).
- A paused execution starts no new well (:mod:`..pausing`); its running wells finish and are reported.
- An execution that reads images holds its plate folder's lock (:mod:`..plate_lock`) while it runs: a second
  execution of the plate into the same folder fails at once, naming the owner, instead of computing it twice.
- Every execution logs one line when it starts and one when it ends (plate, wells, duration, outcome).
- Every file-system call of an execution (finding done wells, writing the plate's results) runs on the server's
  :class:`~hcs_batch.runtime.thread_lane.ThreadLane`: never on the Trio thread (a slow or hung drive cannot stall
  the event loop, or a GUI hosting an embedded server), and many plates finishing together share one thread hop
  (a hop per plate cost more than the write itself).
- :meth:`Executor.cancel` cancels exactly the named executions: the runner stops their wells (local: the worker
  processes are killed and waited for; dask: see :mod:`.dask`) before the execution reports ``cancelled``;
  every other execution goes on.
- A well fails alone: when its image cannot be read, its step raises or its worker dies, the plate's other wells
  still run. Once every well is done or failed, ``wells.csv`` (a ``worker`` column says who computed each row),
  ``objects.parquet`` (not for inline plans; combined from the wells' object files while the wells run, see
  :mod:`..plate_objects`) and ``manifest.json`` (with the runner's ``executor`` and ``scheduler``) are written as
  one consistent set (see :mod:`..results`; ``failed_wells`` lists the failed
  wells, ``well_errors`` maps each to its error) for the wells that finished, then ``plate_map.png`` (not for
  inline plans, and only when no well failed; see :mod:`..plate_map`), and only then does the execution report
  ``completed``, or ``failed`` with ``"N of M wells failed: A03: cannot read ...; ..."``. A rerun of the same
  artifact computes only the wells without a result file. A cancelled execution leaves only the per-well files
  of the wells that finished (one cancelled while its results were being written may leave the set too).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ... import __version__
from ... import protocol as p
from ..._util import clip_text
from ...errors import HcsBatchError
from ...model import CancelOutcome, ExecutionState, cancel_each
from ...runtime.thread_lane import ThreadLane
from .. import plate_map, plate_objects
from ..compiler import Plan
from ..events import EventPublisher
from ..pausing import PauseOutcome, set_paused
from ..plate_lock import acquire_plate_lock, release_plate_lock
from ..plate_map import PLATE_MAP_FILE, write_plate_map
from ..plate_objects import ObjectsFile
from ..results import Row, load_done_wells, plate_output_dir, write_plate_results
from ..stores import ArtifactStore, Execution, RecordStore
from .runner import ExecutionWells, WellFailed, WellJob, WellRunner

__all__ = ["Executor", "ExecutorStatistics"]

log = logging.getLogger("hcs_batch.server")

_LOCK_RELEASE_BOUND = 5.0
"""Seconds a stopping server waits for one plate lock's release off its (stopped) lane."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorStatistics:
    """The executor's part of a ``ServerInfoReply``: each field fills the reply's field of the same name."""

    workers: int
    queued: int
    running: int
    busy_workers: int


def _iso(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) as ISO 8601 in UTC, e.g. ``2026-12-04T06:13:28.123+00:00``."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="milliseconds")


_FAILED_WELLS_SHOWN = 5
"""Failed wells named in an execution's error (all of them are in ``manifest.json``)."""


def failed_wells_message(failed: Mapping[str, str], wells: Sequence[str]) -> str:
    """``"2 of 8 wells failed: A03: cannot read A03_s1_w1.tif: ...; B01: ..."``: the first few failed wells in
    plate order (``wells``), each with its error."""
    in_order = [well for well in wells if well in failed]
    shown = "; ".join(f"{well}: {failed[well]}" for well in in_order[:_FAILED_WELLS_SHOWN])
    hidden = len(in_order) - _FAILED_WELLS_SHOWN
    more = f"; and {hidden} more (see manifest.json)" if hidden > 0 else ""
    return f"{len(in_order)} of {len(wells)} wells failed: {shown}{more}"


def _warm_writers() -> None:
    """Load what the end of a plate writes with (pyarrow, Pillow and the plate map's fonts) while its wells run: the
    first plate of a process no longer waits for them after its last well (0.1-0.8 s measured). Blocking."""
    plate_objects.warm_up()
    plate_map.warm_up()


class Executor:
    """Runs executions as tasks of ``nursery``, their wells on ``runner``; all methods are called from the Trio
    thread. It keeps the server's execution ``records`` and compiled ``artifacts``."""

    def __init__(
        self, *, nursery: trio.Nursery, runner: WellRunner, publisher: EventPublisher, lane: ThreadLane
    ) -> None:
        self._nursery = nursery
        self._lane = lane
        self.runner = runner
        self._publisher = publisher
        self.records = RecordStore()
        self.artifacts = ArtifactStore()

    @property
    def workers(self) -> int:
        """The runner's worker slots now (``ServerInfo.workers``)."""
        return self.runner.workers

    async def warm_up(self) -> None:
        """Get the runner's workers ready now, so no well pays for their start-up or imports."""
        await self.runner.warm_up()

    # ------------------------------------------------------------------ requests

    def submit(self, plan: Plan, *, output_dir: str, force: bool) -> Execution:
        """Queue an execution of ``plan`` writing below ``output_dir/<plate>``; returns it at once.

        Raises:
            PlateError: the plate name would escape ``output_dir``.
        """
        plate_dir = plate_output_dir(output_dir, plan.plate_name)
        execution = Execution(
            artifact_id=plan.artifact_id,
            plate_name=plan.plate_name,
            wells_total=len(plan.wells),
            output=str(plate_dir),
        )
        self.records.add(execution)
        self._publish_state(execution)
        self._nursery.start_soon(self._run, execution, plan, plate_dir, force)
        return execution

    def cancel(self, execution_ids: list[str]) -> CancelOutcome:
        """Cancel exactly these executions: (cancelled, already terminal, unknown) ids."""
        return cancel_each(execution_ids, self.records.get, lambda execution: execution.cancel_scope.cancel())

    def pause(self, execution_ids: list[str], *, paused: bool = True) -> PauseOutcome:
        """Pause (``paused=False``: resume) these executions, or every live one when none are named; see
        :mod:`..pausing`. Returns (changed, unchanged, already terminal, unknown) ids."""
        return set_paused(self.records, execution_ids, paused=paused, publish=self._publish_state)

    # ------------------------------------------------------------------ running

    def _publish_state(self, execution: Execution) -> None:
        self._publisher.state(execution.record())

    async def _run(self, execution: Execution, plan: Plan, plate_dir: Path, force: bool) -> None:
        state = ExecutionState.CANCELLED
        error = ""
        started = time.time()
        lock: Path | None = None
        objects: ObjectsFile | None = None
        log.info(
            "execution %s: plate %s started, %d wells, output %s",
            execution.execution_id,
            plan.plate_name,
            len(plan.wells),
            plate_dir,
        )
        try:
            with execution.cancel_scope:
                self.records.mark_running(execution)
                self._publish_state(execution)
                failed: dict[str, str] = {}
                if plan.inline:
                    rows = await self._run_inline(execution, plan)
                else:
                    lock = await self._lane.run(
                        functools.partial(
                            acquire_plate_lock,
                            execution_id=execution.execution_id,
                            server=self._publisher.instance,
                        ),
                        plate_dir,
                    )
                    objects = ObjectsFile(plate_dir, plan.wells)
                    rows = await self._run_wells(execution, plan, plate_dir, force, failed, objects)
                manifest = self._manifest(execution, plan, len(rows), started, failed)
                built = await self._lane.run(objects.finish) if objects is not None else None
                write = functools.partial(write_plate_results, objects=not plan.inline, objects_file=built)
                await self._lane.run(write, plate_dir, rows, manifest)
                if not plan.inline and not failed:  # a picture of the measurements (issue 15); never fails the plate
                    await self._lane.run(write_plate_map, plate_dir, plan.plate_name, rows)
                elif not plan.inline:  # a completed plate's picture only: an earlier one would describe another run
                    await self._lane.run(functools.partial((plate_dir / PLATE_MAP_FILE).unlink, missing_ok=True))
                if failed:
                    state, error = ExecutionState.FAILED, failed_wells_message(failed, plan.wells)
                else:
                    state = ExecutionState.COMPLETED
        except HcsBatchError as exc:
            state, error = ExecutionState.FAILED, str(exc)
        except OSError as exc:
            state, error = ExecutionState.FAILED, f"cannot write results below {plate_dir}: {exc}"
        except Exception as exc:
            log.exception("execution %s of plate %s failed", execution.execution_id, plan.plate_name)
            state, error = ExecutionState.FAILED, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            # Runs on cancellation too (the server stopping): the record and the event say "cancelled".
            if objects is not None:  # its temporary file, unless write_plate_results took it
                await self._shielded(objects.discard)
            if lock is not None:
                await self._shielded(functools.partial(release_plate_lock, lock, execution_id=execution.execution_id))
            self.records.finish(execution, state, error)
            self._publish_state(execution)
            log.info(
                "execution %s: plate %s %s in %.2f s, %d of %d wells done (%d reused)%s",
                execution.execution_id,
                plan.plate_name,
                execution.state.value,
                time.time() - started,
                execution.wells_done,
                execution.wells_total,
                execution.wells_skipped,
                f": {clip_text(execution.error, 300)}" if execution.error else "",
            )

    async def _shielded(self, clean_up: Callable[[], object]) -> None:
        """Run ``clean_up`` (the plate lock's release, the removal of a temporary file) on the lane, also on
        cancellation. When the server is stopping, its lane may have stopped before this execution's end: then it
        runs on a thread of its own, given at most ``_LOCK_RELEASE_BOUND`` seconds (a hung drive must not hold up
        the shutdown; the lock then stays, naming this execution)."""
        with trio.CancelScope(shield=True):
            try:
                await self._lane.run(clean_up)
            except trio.ClosedResourceError:
                with trio.move_on_after(_LOCK_RELEASE_BOUND):
                    await trio.to_thread.run_sync(clean_up, abandon_on_cancel=True)

    def _progress(self, execution: Execution, plan: Plan, well: str) -> None:
        steps = plan.steps
        total = execution.wells_total * len(steps)
        done = (execution.wells_done - 1) * len(steps)
        for step in steps:
            done += 1
            self._publisher.progress(execution, well=well, step=step.name, done=done, total=total)

    def _well_started(self, execution: Execution, plan: Plan, well: str) -> None:
        # A progress event with an empty step: the well is running (its done count unchanged).
        self._publisher.progress(
            execution,
            well=well,
            step="",
            done=execution.wells_done * len(plan.steps),
            total=execution.wells_total * len(plan.steps),
        )

    async def _run_inline(self, execution: Execution, plan: Plan) -> list[Row]:
        rows: list[Row] = []
        here = f"local:{os.getpid()}"  # inline plans are "computed" by the server itself
        for well in plan.wells:
            for site, timepoint, channels in plan.well_images[well]:
                for channel, sources in channels:
                    row = {"well": well, "site": site, "channel": channel, "worker": here, "timepoint": timepoint}
                    rows.append({**row, "file": ";".join(sources)})
            execution.wells_done += 1
            self._progress(execution, plan, well)
        await trio.lowlevel.checkpoint()
        return rows

    async def _run_wells(
        self,
        execution: Execution,
        plan: Plan,
        plate_dir: Path,
        force: bool,
        failed: dict[str, str],
        objects: ObjectsFile,
    ) -> list[Row]:
        """Run every well not yet done; returns the rows of the finished wells (in plate order) and fills
        ``failed`` (well -> error) with the wells that failed. Every well, reused, finished or failed, is added to
        ``objects`` (on the lane, beside the drivers) as it ends."""
        done: dict[str, list[Row]] = {}
        if not force:
            keys = {well: plan.well_key(well) for well in plan.wells}
            done = await self._lane.run(load_done_wells, plate_dir, keys)
        execution.wells_skipped = len(done)
        execution.wells_done = len(done)
        todo = iter([well for well in plan.wells if well not in done])
        results: dict[str, list[Row]] = {}
        drivers = min(self.runner.slots, len(plan.wells) - len(done))
        opened = self.runner.open_execution(execution.execution_id, pausable=execution)
        async with opened as wells, trio.open_nursery() as nursery:
            nursery.start_soon(self._lane.run, _warm_writers)

            def ended(*ended_wells: tuple[str, bool]) -> None:
                nursery.start_soon(self._lane.run, objects.add, *ended_wells)

            if done:
                ended(*((well, bool(rows)) for well, rows in done.items()))
            for _ in range(drivers):
                nursery.start_soon(self._drive, wells, execution, plan, plate_dir, todo, results, failed, ended)
        return [row for well in plan.wells if well not in failed for row in done.get(well) or results[well]]

    async def _drive(
        self,
        wells: ExecutionWells,
        execution: Execution,
        plan: Plan,
        plate_dir: Path,
        todo: Iterator[str],
        results: dict[str, list[Row]],
        failed: dict[str, str],
        ended: Callable[[tuple[str, bool]], None],
    ) -> None:
        # The drivers share one iterator: each next() hands out a different well. A paused execution starts
        # no new well until it is resumed (running wells finish and are reported).
        for well in todo:
            await execution.wait_unpaused()
            self._well_started(execution, plan, well)
            job = WellJob(
                execution_id=execution.execution_id,
                well=well,
                plate_path=plan.plate_path,
                images=plan.well_images[well],
                steps=plan.worker_steps,
                plate_dir=str(plate_dir),
                well_key=plan.well_key(well),
                projection=plan.projection,
                segment_channel=plan.segment_channel,
                channel_names=dict(plan.channel_names),
            )
            try:
                result = await wells.run_well(job)
            except WellFailed as exc:  # its image, its step or its worker: this well only
                # The execution's error prefixes each failed well ("A03: ..."): the worker's "well A03 " or
                # "well A03: " goes.
                failed[well] = exc.message.removeprefix(f"well {well}").removeprefix(":").lstrip()
                log.info("plate %s: well %s failed: %s", plan.plate_name, well, failed[well])
                ended((well, False))
                continue
            results[well] = result.rows
            ended((well, bool(result.rows)))
            execution.wells_done += 1
            self._progress(execution, plan, well)

    def _manifest(
        self, execution: Execution, plan: Plan, rows: int, started: float, failed: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "plate": plan.plate_name,
            "plate_path": plan.plate_path,
            "artifact_id": plan.artifact_id,
            "execution_id": execution.execution_id,
            "pipeline": plan.pipeline_name,
            "steps": [{"func": s.func, "params": dict(s.params)} for s in plan.steps],
            "wells": list(plan.wells),
            "sites": plan.sites,
            "channels": plan.channels,
            "segment_channel": plan.segment_channel,
            "layout": plan.layout,
            "timepoints": plan.timepoints,
            "z_planes": plan.z_planes,
            "projection": plan.projection,
            "channel_names": {str(k): v for k, v in plan.channel_names.items()},
            "image_metadata": dict(plan.image_metadata),
            "compile_warnings": list(plan.warnings),
            "result_rows": rows,
            "wells_computed": execution.wells_done - execution.wells_skipped,
            "wells_reused": execution.wells_skipped,
            "failed_wells": [well for well in plan.wells if well in failed],
            "well_errors": {well: failed[well] for well in plan.wells if well in failed},
            "inline": plan.inline,
            "executor": self.runner.executor,
            "scheduler": self.runner.scheduler,
            "started_at": _iso(started),
            "finished_at": _iso(time.time()),
            "software_version": __version__,
            "protocol_version": p.PROTOCOL_VERSION,
        }

    def statistics(self) -> ExecutorStatistics:
        """The worker slots, the executions waiting and running, and the wells running right now."""
        return ExecutorStatistics(
            workers=self.workers,
            queued=self.records.queued,
            running=self.records.running,
            busy_workers=self.runner.busy(),
        )
