"""The local executor: every well of a plan runs in a worker process through ``trio_parallel``.

Wells run with ``kill_on_cancel=True``, under one :class:`trio.CapacityLimiter` shared by all plates. A driver
that finishes a well queues again at the back of the limiter's FIFO, so concurrent plates take turns on the
workers instead of the first plate holding all of them. A cancelled execution's worker processes are killed (and
waited for) before the execution reports ``cancelled``.

The worker processes come from :func:`open_worker_context`: they keep their C heap between images
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
from pathlib import Path
from typing import Any

import trio
import trio_parallel

from ...errors import InputError
from ..allocator import keep_heap
from ..compiler import Plan
from ..pausing import PauseGate
from ..recycle import counted, retire_after
from ..results import Row
from ..stores import Execution
from ..worker import run_well, warm_up
from .base import Executor

__all__ = ["LocalExecutor", "default_workers", "open_worker_context"]

log = logging.getLogger("hcs_batch.server")


class LocalExecutor(Executor):
    """Wells on ``trio_parallel`` worker processes of ``worker_context``, at most ``workers`` at once."""

    def __init__(self, *, worker_context: Any, **options: Any) -> None:
        super().__init__(**options)
        self._context = worker_context
        self.limiter = trio.CapacityLimiter(self.workers)

    async def warm_up(self) -> None:
        """Start every worker process now (in parallel), so no well pays for process start-up or imports.

        A worker that fails to start is logged; wells will start one on demand.
        """

        async def one() -> None:
            try:
                await self._context.run_sync(warm_up, kill_on_cancel=True, limiter=self.limiter)
            except Exception:
                log.exception("warming up a worker process failed")

        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(one)

    async def run_well(self, plan: Plan, well: str, plate_dir: Path, execution: Execution) -> list[Row]:
        # The gate stands in for the limiter: it gives a freed worker back while the execution is paused.
        gate: Any = PauseGate(self.limiter, execution)
        rows: list[Row] = await self._context.run_sync(
            counted,  # counts the well in the worker, for recycling (see ..recycle)
            run_well,
            plan.plate_path,
            well,
            plan.well_images[well],
            plan.worker_steps,
            str(plate_dir),
            plan.well_key(well),
            plan.projection,
            plan.segment_channel,
            dict(plan.channel_names),
            kill_on_cancel=True,
            limiter=gate,
        )
        return rows

    def busy_workers(self) -> int:
        return int(self.limiter.borrowed_tokens)


@asynccontextmanager
async def open_worker_context(max_wells_per_worker: int | None = None) -> AsyncIterator[Any]:
    """The ``trio_parallel`` worker context a :class:`LocalExecutor` runs wells on: idle workers live on, every
    worker keeps its C heap between images, and with ``max_wells_per_worker`` retires after that many wells.

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


def default_workers() -> int:
    """One worker process per CPU."""
    return max(1, os.cpu_count() or 1)
