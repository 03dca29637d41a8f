"""The local executor: every well runs in a worker process of this machine through ``trio_parallel``.

Wells run with ``kill_on_cancel=True``, under one :class:`trio.CapacityLimiter` shared by all plates: a driver
that finishes a well queues again at the back of the limiter's FIFO, so concurrent plates take turns on the
workers. A cancelled well's worker process is killed (and waited for) before ``run_well`` returns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio_parallel

from ..results import Row
from ..worker import run_well, warm_up
from .runner import ExecutionWells, WellFailed, WellJob, WellResult, WellRunner

__all__ = ["LocalRunner", "default_workers", "open_local_runner"]

log = logging.getLogger("hcs_batch.server")


def default_workers() -> int:
    """One worker process per CPU."""
    return max(1, os.cpu_count() or 1)


class _LocalWells(ExecutionWells):
    def __init__(self, runner: LocalRunner) -> None:
        self._runner = runner

    async def run_well(self, job: WellJob) -> WellResult:
        runner = self._runner
        try:
            rows: list[Row] = await runner.context.run_sync(
                partial(run_well, **job.worker_kwargs()),
                kill_on_cancel=True,
                limiter=runner.limiter,
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
    async def open_execution(self, execution_id: str) -> AsyncIterator[ExecutionWells]:
        yield _LocalWells(self)


@asynccontextmanager
async def open_local_runner(workers: int | None = None) -> AsyncIterator[LocalRunner]:
    """``workers`` (default: CPU count) worker processes for as long as the block lasts; stopped on exit."""
    count = default_workers() if workers is None else workers
    async with trio_parallel.open_worker_context(idle_timeout=float("inf"), grace_period=5.0) as context:
        yield LocalRunner(context, count)
