"""The executor seam: what the execution lifecycle (:mod:`.base`) asks of whatever computes wells.

One small interface, :class:`WellRunner`, with two implementations:

- ``local`` (:class:`.local.LocalRunner`, the default): trio-parallel worker processes of the server's own machine;
- ``dask`` (:class:`.dask.DaskRunner`): a ``distributed.Client`` to a Dask scheduler.

A runner does three things: run one well and return its rows and who computed it (:meth:`ExecutionWells.run_well`),
say how many wells it can have in flight (``slots``) and how busy it is, and stop an execution's wells: leaving
:meth:`WellRunner.open_execution`'s block (normally, by an error or by cancellation) returns only once nothing of
that execution is running or will start anywhere. Records, progress events, the limiter's fairness between plates
and results files stay with the lifecycle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import InputError
from ..compiler import WorkerStep
from ..results import Row
from ..stores import Execution

if TYPE_CHECKING:
    from ..worker_pool import WorkerPool

__all__ = [
    "EXECUTORS",
    "ExecutionWells",
    "WellFailed",
    "WellJob",
    "WellResult",
    "WellRunner",
    "open_well_runner",
]

EXECUTORS = ("local", "dask")


@dataclass(frozen=True, slots=True, kw_only=True)
class WellJob:
    """One well of one execution, as plain data: what a worker needs to compute it and write its result file."""

    execution_id: str
    well: str
    plate_path: str
    images: tuple[Any, ...]
    steps: tuple[WorkerStep, ...]
    plate_dir: str
    well_key: str
    projection: str = "max"
    segment_channel: int = 1
    channel_names: dict[int, str] = field(default_factory=dict)

    def worker_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`hcs_batch.server.worker.run_well` for this well."""
        return {
            "plate_path": self.plate_path,
            "well": self.well,
            "images": self.images,
            "steps": self.steps,
            "plate_dir": self.plate_dir,
            "well_key": self.well_key,
            "projection": self.projection,
            "segment_channel": self.segment_channel,
            "channel_names": self.channel_names,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class WellResult:
    """A computed well: its rows (each with a ``worker`` value) and the worker that computed it."""

    rows: list[Row]
    worker: str


class WellFailed(Exception):
    """A well could not be computed; ``message`` says why in one line (the step, the lost worker or scheduler)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ExecutionWells(ABC):
    """The wells of one execution on a runner (Trio thread only)."""

    @abstractmethod
    async def run_well(self, job: WellJob) -> WellResult:
        """Compute ``job`` on a worker and return its result; waits for a free slot first (FIFO across executions).

        Raises:
            WellFailed: a step failed, or the worker or scheduler computing it was lost.

        On cancellation: returns at once; the well is stopped when the execution's block is left.
        """


class WellRunner(ABC):
    """Where wells run. ``executor`` and ``scheduler`` go into every ``manifest.json``."""

    executor: str
    scheduler: str | None

    @property
    @abstractmethod
    def workers(self) -> int:
        """Worker slots (processes or threads) the runner computes on now: what ``ServerInfo.workers`` reports."""

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many wells one execution may keep in flight (the number of its drivers)."""

    @abstractmethod
    def busy(self) -> int:
        """Wells in flight right now, over all executions."""

    @abstractmethod
    async def warm_up(self) -> None:
        """Get the workers ready now so the first wells do not pay for start-up; logs, never raises."""

    @abstractmethod
    def open_execution(
        self, execution_id: str, *, pausable: Execution | None = None
    ) -> AbstractAsyncContextManager[ExecutionWells]:
        """A block in which the wells of ``execution_id`` run; a well of ``pausable`` still waiting for a worker
        when it is paused waits until it is resumed where the runner can hold it back (local). Leaving the block
        (however) stops every well of the execution still running and drops those not started: when the block
        is left, none is computing or will start. Leaving it by cancellation waits for that too (shielded,
        bounded by the runner's hard stop)."""


@asynccontextmanager
async def open_well_runner(
    executor: str = "local",
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    max_wells_per_worker: int | None = None,
    worker_pool: WorkerPool | None = None,
) -> AsyncIterator[WellRunner]:
    """The runner named by ``executor`` for as long as the block lasts.

    ``local``: ``workers`` (default: CPU count) worker processes, each retired after ``max_wells_per_worker``
    wells when given; or the processes of ``worker_pool``, which a host opened (and perhaps started) before it,
    and which stays the host's (:mod:`..worker_pool`). ``dask``: a client of the scheduler at
    ``scheduler`` or named in ``scheduler_file``; with neither, a LocalCluster of ``workers`` worker processes
    on 127.0.0.1 started here (see :func:`.dask.open_dask_runner`).

    Raises:
        InputError: an unknown executor, fewer than one worker, a scheduler option without ``dask``,
            ``max_wells_per_worker`` below 1 or with ``dask``, a ``worker_pool`` with ``dask`` or with ``workers``
            or ``max_wells_per_worker``, or a scheduler that is refused or does not answer.

    On exit (cancellation too): the worker processes (local) or the client and the cluster started here (dask)
    are stopped.
    """
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; use one of: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if executor == "dask":
        if max_wells_per_worker is not None:
            raise InputError("--max-wells-per-worker is for --executor local (Dask manages its own workers)")
        if worker_pool is not None:
            raise InputError("a local worker pool cannot serve --executor dask")
        from .dask import open_dask_runner  # distributed is imported only when asked for

        async with open_dask_runner(scheduler=scheduler, scheduler_file=scheduler_file, workers=workers) as runner:
            yield runner
        return
    if scheduler is not None or scheduler_file is not None:
        raise InputError("--scheduler and --scheduler-file need --executor dask")
    from .local import open_local_runner

    async with open_local_runner(workers, max_wells_per_worker, pool=worker_pool) as local:
        yield local
