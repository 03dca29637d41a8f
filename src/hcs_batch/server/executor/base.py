"""The executor seam: an execution's life (``queued → running → completed | failed | cancelled``) written once;
each plate's wells run on a :class:`~.runner.WellRunner` (``local`` worker processes or a ``dask`` cluster).

- The runner queues wells in one FIFO shared by all plates. Each execution drives at most ``runner.slots`` wells
  at once, and a driver that finishes a well queues again at the back of that FIFO, so concurrent plates take
  turns on the workers instead of the first plate holding all of them.
- Progress: when a well finishes, one ``progress`` event per (well, step) is published (steps of a well run in
  one call, so they are reported together when the well is done). Wells skipped because their result file
  already exists for the same artifact count as done and publish nothing.
- A plan whose steps are all marked noops (:func:`hcs_batch.steps.inline_noop`) runs inline: no images are read
  and no well runs on the executor; each (well, site, channel) gets a row without measurements.
- The first failing well cancels the execution's other wells.
- Every file-system call of an execution (finding done wells, writing the plate's results) runs on the server's
  :class:`~hcs_batch.runtime.thread_lane.ThreadLane`: never on the Trio thread (a slow or hung drive cannot stall
  the event loop, or a GUI hosting an embedded server), and many plates finishing together share one thread hop
  (a hop per plate cost more than the write itself).
- :meth:`Executor.cancel` cancels exactly the named executions: the runner stops their wells (local: the worker
  processes are killed and waited for; dask: see :mod:`.dask`) before the execution reports ``cancelled``;
  every other execution goes on.
- On completion ``wells.csv`` (a ``worker`` column says who computed each row), ``objects.parquet`` (not for
  inline plans) and ``manifest.json`` (with the runner's ``executor`` and ``scheduler``) are written (see
  :mod:`..results`), and only once all are on disk does the execution report ``completed``; a failed or
  cancelled execution leaves only the per-well files of the wells that finished (one cancelled while its results
  were being written may leave those too).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ... import protocol as p
from ...errors import HcsBatchError
from ...model import ExecutionState
from ...runtime.thread_lane import ThreadLane
from ..compiler import Plan
from ..events import EventPublisher
from ..results import Row, load_done_wells, plate_output_dir, write_plate_results
from ..stores import ArtifactStore, Execution, RecordStore
from .runner import ExecutionWells, WellFailed, WellJob, WellRunner

__all__ = ["Executor", "ExecutorStatistics"]

log = logging.getLogger("hcs_batch.server")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorStatistics:
    queued: int
    running: int
    busy_workers: int


class Executor:
    """Runs executions as tasks of ``nursery``, their wells on ``runner``; all methods are called from the Trio
    thread."""

    def __init__(
        self,
        *,
        nursery: trio.Nursery,
        runner: WellRunner,
        publisher: EventPublisher,
        records: RecordStore,
        artifacts: ArtifactStore,
        lane: ThreadLane,
    ) -> None:
        self._nursery = nursery
        self._lane = lane
        self.runner = runner
        self._publisher = publisher
        self.records = records
        self.artifacts = artifacts

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

    def cancel(self, execution_ids: list[str]) -> tuple[list[str], list[str], list[str]]:
        """Cancel exactly these executions: (cancelled, already terminal, unknown) ids."""
        cancelled: list[str] = []
        terminal: list[str] = []
        unknown: list[str] = []
        for execution_id in execution_ids:
            execution = self.records.get(execution_id)
            if execution is None:
                unknown.append(execution_id)
            elif execution.state.is_terminal:
                terminal.append(execution_id)
            else:
                execution.cancel_scope.cancel()
                cancelled.append(execution_id)
        return cancelled, terminal, unknown

    # ------------------------------------------------------------------ running

    def _publish_state(self, execution: Execution) -> None:
        self._publisher.state(
            execution_id=execution.execution_id,
            plate_name=execution.plate_name,
            state=execution.state,
            error=execution.error,
        )

    async def _run(self, execution: Execution, plan: Plan, plate_dir: Path, force: bool) -> None:
        state = ExecutionState.CANCELLED
        error = ""
        started = time.time()
        try:
            with execution.cancel_scope:
                self.records.mark_running(execution)
                self._publish_state(execution)
                if plan.inline:
                    rows = await self._run_inline(execution, plan)
                else:
                    rows = await self._run_wells(execution, plan, plate_dir, force)
                manifest = self._manifest(execution, plan, len(rows), started)
                write = functools.partial(write_plate_results, objects=not plan.inline)
                await self._lane.run(write, plate_dir, rows, manifest)
                state = ExecutionState.COMPLETED
        except WellFailed as exc:
            state, error = ExecutionState.FAILED, exc.message
        except HcsBatchError as exc:
            state, error = ExecutionState.FAILED, str(exc)
        except OSError as exc:
            state, error = ExecutionState.FAILED, f"cannot write results below {plate_dir}: {exc}"
        except Exception as exc:
            log.exception("execution %s of plate %s failed", execution.execution_id, plan.plate_name)
            state, error = ExecutionState.FAILED, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            # Runs on cancellation too (the server stopping): the record and the event say "cancelled".
            self.records.finish(execution, state, error)
            self._publish_state(execution)

    def _progress(self, execution: Execution, plan: Plan, well: str) -> None:
        steps = plan.steps
        total = execution.wells_total * len(steps)
        done = (execution.wells_done - 1) * len(steps)
        for step in steps:
            done += 1
            self._publisher.progress(
                execution_id=execution.execution_id,
                plate_name=plan.plate_name,
                well=well,
                step=step.name,
                done=done,
                total=total,
            )

    async def _run_inline(self, execution: Execution, plan: Plan) -> list[Row]:
        rows: list[Row] = []
        here = f"local:{os.getpid()}"  # inline plans are "computed" by the server itself
        for well in plan.wells:
            for site, timepoint, channels in plan.well_images[well]:
                for channel, _ in channels:
                    rows.append(
                        {"well": well, "site": site, "channel": channel, "worker": here, "timepoint": timepoint}
                    )
            execution.wells_done += 1
            self._progress(execution, plan, well)
        await trio.lowlevel.checkpoint()
        return rows

    async def _run_wells(self, execution: Execution, plan: Plan, plate_dir: Path, force: bool) -> list[Row]:
        done: dict[str, list[Row]] = {}
        if not force:
            done = await self._lane.run(load_done_wells, plate_dir, plan.wells, plan.artifact_id)
        execution.wells_skipped = len(done)
        execution.wells_done = len(done)
        todo = iter([well for well in plan.wells if well not in done])
        results: dict[str, list[Row]] = {}
        failure: list[str] = []
        drivers = min(self.runner.slots, len(plan.wells) - len(done))
        async with self.runner.open_execution(execution.execution_id) as wells, trio.open_nursery() as nursery:
            for _ in range(drivers):
                nursery.start_soon(self._drive, wells, execution, plan, plate_dir, todo, results, failure, nursery)
        if failure:
            raise WellFailed(failure[0])
        return [row for well in plan.wells for row in done.get(well) or results[well]]

    async def _drive(
        self,
        wells: ExecutionWells,
        execution: Execution,
        plan: Plan,
        plate_dir: Path,
        todo: Iterator[str],
        results: dict[str, list[Row]],
        failure: list[str],
        nursery: trio.Nursery,
    ) -> None:
        # The drivers share one iterator: each next() hands out a different well.
        for well in todo:
            job = WellJob(
                execution_id=execution.execution_id,
                well=well,
                plate_path=plan.plate_path,
                images=plan.well_images[well],
                steps=plan.worker_steps,
                plate_dir=str(plate_dir),
                artifact_id=plan.artifact_id,
                projection=plan.projection,
                segment_channel=plan.segment_channel,
                channel_names=dict(plan.channel_names),
            )
            try:
                result = await wells.run_well(job)
            except WellFailed as exc:
                if not failure:
                    failure.append(f"plate {plan.plate_name}: {exc.message}")
                nursery.cancel_scope.cancel()  # stops this execution's other wells
                return
            results[well] = result.rows
            execution.wells_done += 1
            self._progress(execution, plan, well)

    def _manifest(self, execution: Execution, plan: Plan, rows: int, started: float) -> dict[str, Any]:
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
            "rows": rows,
            "wells_computed": execution.wells_done - execution.wells_skipped,
            "wells_skipped": execution.wells_skipped,
            "inline": plan.inline,
            "executor": self.runner.executor,
            "scheduler": self.runner.scheduler,
            "started_at": started,
            "finished_at": time.time(),
            "protocol_version": p.PROTOCOL_VERSION,
        }

    def statistics(self) -> ExecutorStatistics:
        """The executions waiting and running, and the wells running right now."""
        return ExecutorStatistics(
            queued=self.records.queued, running=self.records.running, busy_workers=self.runner.busy()
        )
