"""The local executor: every well of a plan runs in a worker process through ``trio_parallel``.

Wells run with ``kill_on_cancel=True``, under one :class:`trio.CapacityLimiter` shared by all plates. A driver
that finishes a well queues again at the back of the limiter's FIFO, so concurrent plates take turns on the
workers instead of the first plate holding all of them. A cancelled execution's worker processes are killed (and
waited for) before the execution reports ``cancelled``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import trio

from ..compiler import Plan
from ..pausing import PauseGate
from ..results import Row
from ..stores import Execution
from ..worker import run_well, warm_up
from .base import Executor

__all__ = ["LocalExecutor", "default_workers"]

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


def default_workers() -> int:
    """One worker process per CPU."""
    return max(1, os.cpu_count() or 1)
