"""The ``dask`` executor: every well is a task on a Dask cluster, keyed ``<execution_id>/<well>``.

The server is the cluster's only client: a synchronous ``distributed.Client`` (it runs its own event loop in a
thread of its own), whose blocking calls go through ``trio.to_thread.run_sync``; ``Client.submit`` only queues a
message for that loop and is called on the Trio thread. A finished task's done-callback (on Dask's callback thread)
wakes the waiting Trio task through ``TrioToken.run_sync_soon``, which then reads the well's rows from the result
file the task wrote (no round trip through the scheduler; fetched from the worker only when the server does not
see that file). No asyncio bridge.

- **Where**: a scheduler named by address or scheduler file, or a LocalCluster started here (see
  :mod:`.dask_cluster`).
- **Fair sharing**: wells wait for a slot in one FIFO (a ``trio.CapacityLimiter`` of twice the cluster's threads,
  refreshed as workers come and go), so plates submitted together take turns, and each worker has its next well
  queued while it computes one (no idle round trip between wells).
- **Stop** (Cancel, Stop, Ctrl-C, a failed well of the same plate): tasks not started are cancelled
  (``Client.cancel(force=True)``: they never start), then the workers holding its wells are told it stopped
  (``Client.run`` of :func:`_tell_stopped`: a set in the worker process); every task looks at that set before
  each image and after each step (a lookup in its own process, no round trip) and gives up there, writing no
  result file. Running tasks get ``STOP_GRACE`` seconds to notice; a step still running then (it never returns)
  gets the hard stop: its worker process is killed (SIGKILL from its nanny, which starts a fresh worker; a worker
  without a nanny ends itself), and the other wells that worker held are recomputed elsewhere. The execution
  reports ``cancelled`` once no worker thread computes any of its wells.
- **Faults**: a worker that dies mid-well is noticed by the scheduler, which recomputes its wells on other
  workers; a well whose workers died ``distributed.scheduler.allowed-failures`` + 1 times (default 4) fails its
  plate with ``KilledWorker`` (a death counts against every task the worker held, the queued one too). A lost
  scheduler fails the wells in flight (and so their plates) with a message naming it once the client's reconnect
  window (:data:`.dask_cluster.CONNECT_TIMEOUT`) has passed; wells already written stay, and later executions
  fail at once until the server is restarted against a live scheduler.
"""

from __future__ import annotations

import logging
import operator
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import distributed as _distributed
import msgspec
import trio

from ..results import Row, read_well_rows
from ..stores import Execution
from ..worker import StepFailure, WellStopped, run_well, warm_up
from .dask_cluster import close, connect
from .runner import ExecutionWells, WellFailed, WellJob, WellResult, WellRunner

distributed: Any = _distributed  # its functions carry no annotations mypy --strict accepts

__all__ = ["STOP_GRACE", "DaskRunner", "dask_well", "open_dask_runner"]

log = logging.getLogger("hcs_batch.server")

STOP_GRACE = 0.75
"""Seconds running wells of a stopped execution get to notice the stop before their workers are restarted."""
STOP_TIMEOUT = 30.0
"""Bound on stopping one execution's wells (a restart included); beyond it the server logs and moves on."""
_REFRESH = 2.0


# ---------------------------------------------------------------------------------------------- on the workers


_stopped: set[str] = set()
"""On a worker: the executions it was told have stopped (:func:`_tell_stopped`)."""


def _tell_stopped(execution_id: str) -> None:
    """Run on the workers holding wells of an execution that stops. The id stays in the set (a few dozen bytes
    per cancelled execution for the worker's life): forgetting it would be another broadcast, to workers of
    which a hard stop may just have killed some."""
    _stopped.add(execution_id)


def dask_well(job: WellJob) -> bytes | None:
    """The task of one well, run by a Dask worker: :func:`..worker.run_well` with the worker's address in every
    row and "this worker was told the execution stopped" (:func:`_tell_stopped`) as its ``should_stop`` hook.
    Returns the well's rows as JSON (the server reads them from the well's result file and fetches these bytes
    only when it cannot), or None when the execution was stopped before or during the well (no result file is
    written then).

    Raises:
        StepFailure: as ``run_well``.
    """
    address = str(distributed.get_worker().address)
    try:
        stopped = partial(operator.contains, _stopped, job.execution_id)
        rows = run_well(**job.worker_kwargs(), worker=address, should_stop=stopped)
    except WellStopped:
        return None
    return msgspec.json.encode(rows)


def _executing(prefix: str, dask_worker: Any = None) -> list[str]:
    """Run on a worker: the keys starting with ``prefix`` that one of its threads is computing right now (a task
    cancelled on the scheduler stays here until its thread returns)."""
    state = dask_worker.state
    return [str(ts.key) for ts in (*state.executing, *state.long_running) if str(ts.key).startswith(prefix)]


# ---------------------------------------------------------------------------------------------- in the server


class _DaskWells(ExecutionWells):
    def __init__(self, runner: DaskRunner, execution_id: str) -> None:
        self._runner = runner
        self.execution_id = execution_id
        self.futures: dict[str, Any] = {}
        """Futures of wells submitted and not yet collected, by key."""

    async def run_well(self, job: WellJob) -> WellResult:
        runner = self._runner
        key = f"{job.execution_id}/{job.well}"
        async with runner.limiter:
            done = trio.Event()
            try:
                # Only queues a message for the client's event-loop thread: no thread hop needed. The job goes as
                # one object: Dask neither walks nor sizes what is inside it.
                future = runner.client.submit(dask_well, job, key=key, pure=False, retries=0)
            except Exception as exc:  # the client closed after losing the scheduler
                raise WellFailed(
                    f"well {job.well}: cannot submit to the Dask scheduler at {runner.scheduler}: {exc}"
                ) from None
            self.futures[key] = future
            future.add_done_callback(partial(runner.wake, done))
            await done.wait()
            try:
                return await self._outcome(future, job)
            finally:
                del self.futures[key]

    async def _outcome(self, future: Any, job: WellJob) -> WellResult:
        where = f"well {job.well}"
        status = future.status
        if status == "finished":
            # The task wrote the well's result file before it finished: read the rows there, without the round
            # trips of fetching them through the scheduler. Where the server does not see that file (yet: a
            # shared file system's cache), they are fetched from the worker after all.
            read = partial(read_well_rows, Path(job.plate_dir), job.well, job.well_key)
            rows = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
            if rows is None:
                rows = await self._fetch(future, where)
            return WellResult(rows=rows, worker=str(rows[0]["worker"]) if rows else "")
        if status == "error":
            error = await trio.to_thread.run_sync(future.exception)
            if isinstance(error, StepFailure):
                raise WellFailed(str(error))
            if isinstance(error, distributed.KilledWorker):
                raise WellFailed(
                    f"{where}: every Dask worker that computed it died (the scheduler retries a lost worker's wells "
                    f"up to distributed.scheduler.allowed-failures times): {error}"
                )
            raise WellFailed(f"{where}: {type(error).__name__}: {error}")
        raise WellFailed(
            f"{where}: the Dask scheduler at {self._runner.scheduler} dropped it ({status}): "
            "the scheduler was lost or restarted"
        )

    @staticmethod
    async def _fetch(future: Any, where: str) -> list[Row]:
        """The rows a finished task returned, fetched from its worker."""
        try:
            # Abandoned on cancellation: if the worker holding the result died meanwhile, Dask recomputes it and
            # result() waits for that.
            value = await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        except Exception as exc:  # lost with its worker and then cancelled or failed
            raise WellFailed(f"{where}: its result was lost on the Dask cluster: {type(exc).__name__}: {exc}") from None
        if value is None:
            raise WellFailed(f"{where}: stopped")
        return msgspec.json.decode(value, type=list[Row])


class DaskRunner(WellRunner):
    """Wells as tasks on the cluster behind ``client`` (see the module docstring). Trio thread only."""

    executor = "dask"

    def __init__(self, client: Any, scheduler: str, token: trio.lowlevel.TrioToken) -> None:
        self.client = client
        self.scheduler = scheduler
        self._token = token
        self._threads = 0
        self.limiter = trio.CapacityLimiter(1)

    @property
    def workers(self) -> int:
        return self._threads

    @property
    def slots(self) -> int:
        return int(self.limiter.total_tokens)

    def busy(self) -> int:
        # Up to two wells per thread are in flight; at most one per thread computes.
        return min(int(self.limiter.borrowed_tokens), self._threads)

    def set_threads(self, threads: int) -> None:
        """The cluster has ``threads`` worker threads now: keep two wells in flight per thread (at least one)."""
        self._threads = threads
        self.limiter.total_tokens = max(1, 2 * threads)

    def wake(self, done: trio.Event, _future: Any) -> None:
        """A done-callback (Dask's callback thread): set ``done`` in the Trio thread."""
        try:
            self._token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass  # the server is gone; nobody waits

    async def refresh(self) -> None:
        """Follow the cluster's size (workers join and leave, e.g. an adaptive dask-jobqueue cluster)."""
        said = False
        while True:
            try:
                nthreads = await trio.to_thread.run_sync(self.client.nthreads, abandon_on_cancel=True)
                self.set_threads(sum(int(n) for n in nthreads.values()))
                said = False
            except Exception as exc:  # the scheduler is away: keep the last size, wells fail on their own
                if not said:  # once per outage, not every few seconds
                    log.warning("cannot ask the Dask scheduler at %s for its workers: %s", self.scheduler, exc)
                said = True
            await trio.sleep(_REFRESH)

    async def warm_up(self) -> None:
        """Import what every well needs on every worker now."""
        try:
            await trio.to_thread.run_sync(self.client.run, warm_up, abandon_on_cancel=True)
        except Exception:
            log.exception("warming up the Dask workers failed")

    @asynccontextmanager
    async def open_execution(
        self, execution_id: str, *, pausable: Execution | None = None
    ) -> AsyncIterator[ExecutionWells]:
        # A paused execution's drivers submit no new well; a well already queued on the cluster still runs.
        wells = _DaskWells(self, execution_id)
        try:
            yield wells
        finally:
            if wells.futures:
                with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT) as bound:
                    await trio.to_thread.run_sync(self._stop, wells, abandon_on_cancel=True)
                if bound.cancelled_caught:
                    log.error("stopping the wells of execution %s on Dask took over %s s", execution_id, STOP_TIMEOUT)

    def _stop(self, wells: _DaskWells) -> None:
        """In a thread: stop every well of ``wells`` still submitted (see the module docstring, **Stop**)."""
        client = self.client
        futures = list(wells.futures.values())
        keys = set(wells.futures)
        prefix = wells.execution_id + "/"
        try:
            where = _computing_on(client, keys)
            client.cancel(futures, force=True)  # first: no task of it starts on a worker that is not told
            where = sorted(set(where) | set(_computing_on(client, keys)))
            if where:  # only workers that hold its wells: a broadcast to a worker just killed waits out 30 s
                client.run(_tell_stopped, wells.execution_id, workers=where, on_error="return")
            where = _wait_stopped(client, prefix, where, STOP_GRACE)
            if where:
                log.warning("hard stop: ending the Dask worker processes %s (a step of %s runs on)", where, prefix)
                before = _worker_processes(client, where)
                _end_worker_processes(client, where)
                where = _wait_replaced(client, before, STOP_TIMEOUT)
                if where:
                    log.error("Dask workers %s still run after a hard stop (wells of %s)", where, prefix)
        except Exception as exc:  # the scheduler is lost: nothing of this execution can be running through it
            log.warning("stopping %s on Dask: %s: %s", wells.execution_id, type(exc).__name__, exc)


def _computing_on(client: Any, keys: set[str]) -> list[str]:
    """The workers the scheduler has given any of ``keys`` (computing or queued there)."""
    return [addr for addr, held in client.processing().items() if keys.intersection(map(str, held))]


def _still_computing(client: Any, prefix: str, where: list[str]) -> list[str]:
    """The workers of ``where`` still registered whose threads compute a key starting with ``prefix``."""
    present = set(client.scheduler_info(n_workers=-1)["workers"])
    ask = [addr for addr in where if addr in present]
    if not ask:
        return []
    running = client.run(_executing, prefix, workers=ask, on_error="return")
    return [addr for addr, found in running.items() if isinstance(found, list) and found]


def _wait_stopped(client: Any, prefix: str, where: list[str], seconds: float) -> list[str]:
    """Wait up to ``seconds`` until no worker of ``where`` computes a key of ``prefix``; the workers that still do.
    (A remote state that sends no notification: a short bounded poll.)"""
    deadline = time.monotonic() + seconds
    while where:
        where = _still_computing(client, prefix, where)
        if not where or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return where


def _worker_processes(client: Any, where: list[str]) -> dict[str, str]:
    """Each registered worker of ``where`` with what tells its process apart: its scratch folder (every worker
    process makes a new one, so a worker restarted on the same port has another)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {addr: str(workers[addr].get("local_directory")) for addr in where if addr in workers}


def _wait_replaced(client: Any, before: dict[str, str], seconds: float) -> list[str]:
    """Wait up to ``seconds`` until the scheduler no longer lists the worker processes of ``before`` (gone, or a new
    process at the same address); the addresses still held by the old process. Asks only the scheduler: a request
    routed to a dead worker waits out Dask's whole connect timeout (30 s) on a refused port."""
    deadline = time.monotonic() + seconds
    while True:
        current = _worker_processes(client, list(before))
        left = [addr for addr, process in current.items() if before[addr] == process]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def _end_worker_processes(client: Any, where: list[str]) -> None:
    """The hard stop: SIGKILL the worker processes at ``where`` from their nannies (which start fresh ones); a
    worker without a nanny ends itself. Only standard-library functions are sent: nothing to import over there."""
    pids = client.run(os.getpid, workers=where, on_error="return")
    for addr in where:  # one at a time: the scheduler pairs workers and nannies wrongly when one has none
        pid = pids.get(addr)
        killed = {}
        if isinstance(pid, int):
            killed = client.run(os.kill, pid, signal.SIGKILL, workers=[addr], nanny=True, on_error="return")
        if addr not in killed or isinstance(killed[addr], Exception):
            client.run(os._exit, 70, workers=[addr], wait=False, on_error="ignore")


@asynccontextmanager
async def open_dask_runner(
    *, scheduler: str | None = None, scheduler_file: str | None = None, workers: int | None = None
) -> AsyncIterator[DaskRunner]:
    """A :class:`DaskRunner` on the scheduler at ``scheduler``, named in ``scheduler_file``, or (neither) a
    LocalCluster of ``workers`` processes started here, for as long as the block lasts.

    Raises:
        InputError: as :func:`.dask_cluster.connect`.

    On exit (cancellation too, shielded): the client is closed, and a LocalCluster started here is shut down
    (its worker processes end). A cluster we did not start is left running.
    """
    client, cluster, address = await trio.to_thread.run_sync(connect, scheduler, scheduler_file, workers)
    try:
        runner = DaskRunner(client, address, trio.lowlevel.current_trio_token())
        started = "a LocalCluster started by this server" if cluster is not None else "an existing cluster"
        log.info("wells run on the Dask scheduler at %s (%s)", runner.scheduler, started)
        async with trio.open_nursery() as nursery:
            nthreads = await trio.to_thread.run_sync(client.nthreads)
            runner.set_threads(sum(int(n) for n in nthreads.values()))
            nursery.start_soon(runner.refresh)
            yield runner
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close, client, cluster)
