"""The local executor: every well runs in a worker process of this machine through ``trio_parallel``.

Wells run with ``kill_on_cancel=True``, under one :class:`trio.CapacityLimiter` shared by all plates: a driver
that finishes a well queues again at the back of the limiter's FIFO, so concurrent plates take turns on the
workers. A cancelled well's worker process is killed (and waited for) before ``run_well`` returns.

The worker processes come from :func:`open_worker_context`: their malloc is tuned for image-sized buffers
(:mod:`..allocator`) and, with ``max_wells_per_worker``, each retires after that many wells (:mod:`..recycle`),
so a long screen never grows; the next well starts a fresh process.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio_parallel

from ...errors import InputError
from ..allocator import keep_heap
from ..pausing import PauseGate
from ..recycle import counted, retire_after
from ..results import Row
from ..stores import Execution
from ..worker import run_well, warm_up
from .runner import ExecutionWells, WellFailed, WellJob, WellResult, WellRunner

__all__ = ["LocalRunner", "default_workers", "open_local_runner", "open_worker_context"]

log = logging.getLogger("hcs_batch.server")


def default_workers() -> int:
    """One worker process per CPU."""
    return max(1, os.cpu_count() or 1)


class _LocalWells(ExecutionWells):
    def __init__(self, runner: LocalRunner, pausable: Execution | None) -> None:
        self._runner = runner
        self._pausable = pausable

    async def run_well(self, job: WellJob) -> WellResult:
        runner = self._runner
        # The gate stands in for the limiter: it gives a freed worker back while the execution is paused.
        limiter: Any = runner.limiter if self._pausable is None else PauseGate(runner.limiter, self._pausable)
        try:
            rows: list[Row] = await runner.context.run_sync(
                counted,  # counts the well in the worker, for recycling (see ..recycle)
                partial(run_well, **job.worker_kwargs()),
                kill_on_cancel=True,
                limiter=limiter,
            )
        except Exception as exc:  # StepFailure, BrokenWorkerError, OSError from the worker
            raise WellFailed(str(exc) or repr(exc)) from None
        return WellResult(rows=rows, worker=str(rows[0]["worker"]) if rows else f"local:{os.getpid()}")


class LocalRunner(WellRunner):
    """Wells on ``workers`` trio-parallel worker processes of this machine.

    The hard stop is the only stop: a cancelled well's worker process is killed (``kill_on_cancel``) and waited
    for before ``run_well`` returns, so an execution's block has nothing left to stop when it is left.
    """

    executor = "local"
    scheduler = None

    def __init__(self, context: Any, workers: int) -> None:
        self.context = context
        self._workers = workers
        self.limiter = trio.CapacityLimiter(workers)

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def slots(self) -> int:
        return self._workers

    def busy(self) -> int:
        return int(self.limiter.borrowed_tokens)

    async def warm_up(self) -> None:
        """Start every worker process now (in parallel); one that fails to start is logged, and wells start one
        on demand."""

        async def one() -> None:
            try:
                await self.context.run_sync(warm_up, kill_on_cancel=True, limiter=self.limiter)
            except Exception:
                log.exception("warming up a worker process failed")

        async with trio.open_nursery() as nursery:
            for _ in range(self._workers):
                nursery.start_soon(one)

    @asynccontextmanager
    async def open_execution(
        self, execution_id: str, *, pausable: Execution | None = None
    ) -> AsyncIterator[ExecutionWells]:
        yield _LocalWells(self, pausable)


@asynccontextmanager
async def open_local_runner(
    workers: int | None = None, max_wells_per_worker: int | None = None
) -> AsyncIterator[LocalRunner]:
    """``workers`` (default: CPU count) worker processes for as long as the block lasts, each retired after
    ``max_wells_per_worker`` wells when given (:func:`open_worker_context`); stopped on exit."""
    count = default_workers() if workers is None else workers
    async with open_worker_context(max_wells_per_worker) as context:
        yield LocalRunner(context, count)


@asynccontextmanager
async def open_worker_context(max_wells_per_worker: int | None = None) -> AsyncIterator[Any]:
    """The ``trio_parallel`` worker context a :class:`LocalRunner` runs wells on: idle workers live on, every
    worker tunes its malloc for image-sized buffers (:mod:`..allocator`), and with ``max_wells_per_worker``
    retires after that many wells.

    Raises:
        InputError: ``max_wells_per_worker`` is below 1.

    On exit (also on cancellation) the idle workers are stopped, with a 5 s grace period.
    """
    if max_wells_per_worker is not None and max_wells_per_worker < 1:
        raise InputError(f"max-wells-per-worker must be at least 1, got {max_wells_per_worker}")
    retire = bool if max_wells_per_worker is None else partial(retire_after, max_wells_per_worker)
    async with trio_parallel.open_worker_context(
        idle_timeout=math.inf, grace_period=5.0, init=keep_heap, retire=retire
    ) as context:
        yield context
