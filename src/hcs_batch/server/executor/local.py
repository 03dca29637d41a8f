"""The local executor: every well runs in a worker process of this machine through ``trio_parallel``.

Wells run with ``kill_on_cancel=True``, under the one :class:`trio.CapacityLimiter` of the worker pool, shared by
all plates: a driver that finishes a well queues again at the back of the limiter's FIFO, so concurrent plates take
turns on the workers. A cancelled well's worker process is killed (and waited for) before ``run_well`` returns.

The worker processes are a :class:`..worker_pool.WorkerPool`: their malloc is tuned for image-sized buffers
(:mod:`..allocator`) and, with ``max_wells_per_worker``, each retires after that many wells (:mod:`..recycle`),
so a long screen never grows; the next well starts a fresh process. The pool is the runner's own, or one its host
opened (and started) before the server: see :func:`open_local_runner`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from ...errors import InputError
from ..pausing import PauseGate
from ..recycle import counted
from ..results import Row
from ..stores import Execution
from ..worker import run_well
from ..worker_pool import WorkerPool, default_workers, open_worker_context, open_worker_pool
from .runner import ExecutionWells, WellFailed, WellJob, WellResult, WellRunner

__all__ = ["LocalRunner", "default_workers", "open_local_runner", "open_worker_context"]

log = logging.getLogger("hcs_batch.server")


class _LocalWells(ExecutionWells):
    def __init__(self, runner: LocalRunner, pausable: Execution | None) -> None:
        self._runner = runner
        self._pausable = pausable

    async def run_well(self, job: WellJob) -> WellResult:
        pool = self._runner.pool
        # The gate stands in for the limiter: it gives a freed worker back while the execution is paused.
        limiter: Any = pool.limiter if self._pausable is None else PauseGate(pool.limiter, self._pausable)
        try:
            rows: list[Row] = await pool.context.run_sync(
                counted,  # counts the well in the worker, for recycling (see ..recycle)
                partial(run_well, **job.worker_kwargs()),
                kill_on_cancel=True,
                limiter=limiter,
            )
        except Exception as exc:  # StepFailure, BrokenWorkerError, OSError from the worker
            raise WellFailed(str(exc) or repr(exc)) from None
        return WellResult(rows=rows, worker=str(rows[0]["worker"]) if rows else f"local:{os.getpid()}")


class LocalRunner(WellRunner):
    """Wells on the worker processes of ``pool``.

    The hard stop is the only stop: a cancelled well's worker process is killed (``kill_on_cancel``) and waited
    for before ``run_well`` returns, so an execution's block has nothing left to stop when it is left.
    """

    executor = "local"
    scheduler = None

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    @property
    def workers(self) -> int:
        return self.pool.workers

    @property
    def slots(self) -> int:
        return self.pool.workers

    def busy(self) -> int:
        return int(self.pool.limiter.borrowed_tokens)

    async def warm_up(self) -> None:
        """Start every worker process now (in parallel), unless the pool's host has already: see
        :meth:`..worker_pool.WorkerPool.start`."""
        await self.pool.wait_started()

    @asynccontextmanager
    async def open_execution(
        self, execution_id: str, *, pausable: Execution | None = None
    ) -> AsyncIterator[ExecutionWells]:
        yield _LocalWells(self, pausable)


@asynccontextmanager
async def open_local_runner(
    workers: int | None = None, max_wells_per_worker: int | None = None, *, pool: WorkerPool | None = None
) -> AsyncIterator[LocalRunner]:
    """A runner on ``pool``, or on ``workers`` (default: CPU count) worker processes of its own for as long as the
    block lasts, each retired after ``max_wells_per_worker`` wells when given (:func:`..worker_pool.open_worker_pool`;
    ended on exit). ``pool`` stays its opener's: ``workers`` and ``max_wells_per_worker`` are then the pool's.

    Raises:
        InputError: ``workers`` or ``max_wells_per_worker`` is below 1, or either is given with ``pool``.
    """
    if pool is not None:
        if workers is not None or max_wells_per_worker is not None:
            raise InputError("workers and max-wells-per-worker are the worker pool's own when a pool is given")
        yield LocalRunner(pool)
        return
    async with open_worker_pool(workers, max_wells_per_worker) as own:
        yield LocalRunner(own)
