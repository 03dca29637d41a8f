"""The local executor's worker processes: started as early as their host likes, ended at once when done.

:func:`open_worker_pool` opens a :class:`WorkerPool`: a ``trio_parallel`` worker context (:func:`open_worker_context`:
malloc tuned in every worker, see :mod:`.allocator`; with ``max_wells_per_worker`` a worker retires after that
many wells, see :mod:`.recycle`) and the one :class:`trio.CapacityLimiter` that every well and warm-up queues on
(FIFO). :meth:`WorkerPool.start` starts every worker process now, in the background, each importing what a well
of the built-in counter imports (:func:`.worker.warm_up`). Importing this module costs ``trio`` and
``trio_parallel`` only, nothing of the server or of numpy: a host that knows it will run wells (``hcs-batch run``)
opens and starts the pool first, so that the workers' start-up (~0.5-0.7 s of CPU each: an interpreter, numpy,
SciPy, scikit-image, OpenCV, pyarrow) overlaps its own imports and the compile instead of following them. The
embedded server then runs its wells on that pool (``worker_pool`` of :func:`.serve.serve`).

Leaving the block ends the workers: a warm-up still running is cancelled (its process killed); every idle worker
is then ended at once by a job that exits its process (:func:`.recycle.end_worker`): an idle worker holds nothing
(each well's files are written before the well returns), and ending it this way skips the interpreter's
finalization of numpy, SciPy, OpenCV and pyarrow (0.05-0.3 s a worker, which the host's exit used to wait for).
A worker still busy then (none, normally: the server stops its wells first) gets the context's 5 s grace.
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

from .._util import collapse_single_exception_group
from ..errors import InputError
from .allocator import keep_heap
from .recycle import end_worker, retire_after, warm

__all__ = ["WorkerPool", "default_workers", "open_worker_context", "open_worker_pool"]

log = logging.getLogger("hcs_batch.server")

_END_BOUND = 5.0
"""Seconds the pool's exit gives its idle workers to end (a hang guard: it takes milliseconds)."""


def default_workers() -> int:
    """One worker process per CPU."""
    return max(1, os.cpu_count() or 1)


class WorkerPool:
    """``workers`` worker processes of one ``trio_parallel`` context (``context``), all behind ``limiter``."""

    def __init__(self, context: Any, workers: int, nursery: trio.Nursery) -> None:
        self.context = context
        self.workers = workers
        self.limiter = trio.CapacityLimiter(workers)
        self._nursery = nursery
        self._started = False
        self._warm = trio.Event()

    def start(self) -> None:
        """Start every worker process now, in the background, and warm it up (:func:`.worker.warm_up`): no well
        then pays for a worker's start-up or imports. A worker that fails to start is logged, and a well starts
        one on demand. Idempotent."""
        if not self._started:
            self._started = True
            self._nursery.start_soon(self._warm_all)

    async def wait_started(self) -> None:
        """:meth:`start`, and wait until every worker has been started and warmed up (or failed to)."""
        self.start()
        await self._warm.wait()

    async def _warm_all(self) -> None:
        async def one() -> None:
            try:
                await self.context.run_sync(warm, kill_on_cancel=True, limiter=self.limiter)
            except Exception:
                log.exception("warming up a worker process failed")

        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.workers):
                    nursery.start_soon(one)
        finally:
            self._warm.set()


@asynccontextmanager
async def open_worker_pool(
    workers: int | None = None, max_wells_per_worker: int | None = None
) -> AsyncIterator[WorkerPool]:
    """A :class:`WorkerPool` of ``workers`` (default: CPU count) processes, each retired after
    ``max_wells_per_worker`` wells when given, for as long as the block lasts; no process starts before the first
    :meth:`WorkerPool.start` or job.

    Raises:
        InputError: ``workers`` or ``max_wells_per_worker`` is below 1.

    On exit (also on cancellation or an error): see the module docstring; returns once every worker has ended.
    """
    count = default_workers() if workers is None else workers
    if count < 1:
        raise InputError(f"workers must be at least 1, got {count}")
    async with open_worker_context(max_wells_per_worker) as context:
        try:
            with collapse_single_exception_group():
                async with trio.open_nursery() as nursery:
                    try:
                        yield WorkerPool(context, count, nursery)
                    finally:
                        nursery.cancel_scope.cancel()  # a warm-up still running: its worker is killed
        finally:
            await _end_idle(context)


async def _end_idle(context: Any) -> None:
    """End every idle worker of ``context`` at once (shielded, bounded by ``_END_BOUND``)."""
    idle = context.statistics().idle_workers
    if not idle:
        return
    limiter = trio.CapacityLimiter(idle)  # one job per idle worker, all at once: each takes a different one

    async def end() -> None:
        try:
            await context.run_sync(end_worker, limiter=limiter)
        except trio_parallel.BrokenWorkerError:
            pass  # its process ended: what was asked

    with trio.CancelScope(shield=True), trio.move_on_after(_END_BOUND):
        async with trio.open_nursery() as nursery:
            for _ in range(idle):
                nursery.start_soon(end)


@asynccontextmanager
async def open_worker_context(max_wells_per_worker: int | None = None) -> AsyncIterator[Any]:
    """The ``trio_parallel`` worker context of a :class:`WorkerPool`: idle workers live on, every worker tunes its
    malloc for image-sized buffers (:mod:`.allocator`), and with ``max_wells_per_worker`` retires after that many
    wells.

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
