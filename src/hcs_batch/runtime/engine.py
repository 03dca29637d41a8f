"""``BatchSubmitWaitEngine``: submit every job, then wait for all of them concurrently, bounded.

The two phases are strict: no wait starts before every submit has finished (succeeded, failed or been cancelled).
Each job ends in exactly one :class:`JobStatus`, recorded in input order in a frozen :class:`BatchOutcome`;
errors are collected per job and never raised as an ``ExceptionGroup``.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar, cast

import trio

from .._util import call_logged
from .slices import map_in_slices

__all__ = ["BatchOutcome", "BatchSubmitWaitEngine", "JobOutcome", "JobPhase", "JobStatus"]

log = logging.getLogger(__name__)

J = TypeVar("J")
H = TypeVar("H")
R = TypeVar("R")
T = TypeVar("T")


class JobStatus(enum.StrEnum):
    """How one job ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobPhase(enum.StrEnum):
    """The phase a job had reached when it ended."""

    SUBMIT = "submit"
    WAIT = "wait"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcome(Generic[J, H, R]):
    """The end of one job."""

    index: int
    """The job's place in the batch's input."""
    job: J
    status: JobStatus
    phase: JobPhase
    """Where the job ended: a cancelled job with phase ``SUBMIT`` never got a handle."""
    handle: H | None = None
    """Set whenever the submit succeeded, also for a job that failed or was cancelled while waiting: what a caller
    needs to clean up (for example cancel a remote execution that runs on)."""
    result: R | None = None
    """Meaningful only when ``status`` is ``SUCCEEDED``."""
    error: Exception | None = None
    """Set only when ``status`` is ``FAILED``."""

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.status is JobStatus.FAILED

    @property
    def cancelled(self) -> bool:
        return self.status is JobStatus.CANCELLED


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOutcome(Generic[J, H, R]):
    """Every job's outcome, one per input job, in input order."""

    jobs: tuple[JobOutcome[J, H, R], ...]

    @property
    def ok(self) -> bool:
        """True when every job succeeded (an empty batch is ok)."""
        return all(o.succeeded for o in self.jobs)

    @property
    def succeeded(self) -> tuple[JobOutcome[J, H, R], ...]:
        return tuple(o for o in self.jobs if o.succeeded)

    @property
    def failed(self) -> tuple[JobOutcome[J, H, R], ...]:
        return tuple(o for o in self.jobs if o.failed)

    @property
    def cancelled(self) -> tuple[JobOutcome[J, H, R], ...]:
        return tuple(o for o in self.jobs if o.cancelled)

    @property
    def errors(self) -> tuple[Exception, ...]:
        """The errors of the failed jobs, in input order."""
        return tuple(o.error for o in self.jobs if o.error is not None)

    def __len__(self) -> int:
        return len(self.jobs)


def _as_limiter(value: int | float | trio.CapacityLimiter, what: str) -> trio.CapacityLimiter:
    if isinstance(value, trio.CapacityLimiter):
        return value
    if value != math.inf and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{what} must be a positive int, math.inf or a trio.CapacityLimiter, not {value!r}")
    return trio.CapacityLimiter(value)


def _call_safely(callback: Callable[..., object] | None, *args: Any) -> None:
    """Run a user callback; its exception is logged, never allowed to break the batch."""
    if callback is not None:
        call_logged(log, "the batch", callback, *args)


class _Slot(Generic[J, H, R]):
    """Mutable per-job bookkeeping during one run; frozen into a JobOutcome at the end."""

    __slots__ = ("error", "handle", "job", "result", "status", "submitted")

    def __init__(self, job: J) -> None:
        self.job = job
        self.submitted = False
        self.handle: H | None = None
        self.result: R | None = None
        self.error: Exception | None = None
        self.status: JobStatus | None = None


class BatchSubmitWaitEngine(Generic[J, H, R]):
    """Submit all jobs, then wait for all of them; bounded, fail-fast optional, errors aggregated per job.

    Args:
        submit: ``await submit(job)`` returns the job's handle (e.g. an execution id). Should return promptly.
        wait: ``await wait(job, handle)`` returns the job's result once it has finished.
        max_concurrent_submits / max_concurrent_waits: how many submits / waits may be in flight at once: an
            int, ``math.inf``, or a ``trio.CapacityLimiter`` (share one to bound several batches together).
        fail_fast: on the first failed submit or wait, cancel every other submit and wait; those jobs end
            ``CANCELLED`` (not ``FAILED``), and no wait starts if the failure happened while submitting.
        on_submitted(job, handle), on_result(job, result), on_error(job, exc): plain functions called in the
            Trio thread as each job progresses. An exception from one is logged and does not affect the batch.

    The engine keeps no state between runs; one engine may run several batches, even concurrently.
    """

    def __init__(
        self,
        *,
        submit: Callable[[J], Awaitable[H]],
        wait: Callable[[J, H], Awaitable[R]],
        max_concurrent_submits: int | float | trio.CapacityLimiter = 16,
        max_concurrent_waits: int | float | trio.CapacityLimiter = math.inf,
        fail_fast: bool = False,
        on_submitted: Callable[[J, H], object] | None = None,
        on_result: Callable[[J, R], object] | None = None,
        on_error: Callable[[J, Exception], object] | None = None,
    ) -> None:
        self._submit = submit
        self._wait = wait
        self._submit_limiter = _as_limiter(max_concurrent_submits, "max_concurrent_submits")
        self._wait_limiter = _as_limiter(max_concurrent_waits, "max_concurrent_waits")
        self.fail_fast = fail_fast
        self._on_submitted = on_submitted
        self._on_result = on_result
        self._on_error = on_error

    async def run(self, jobs: Iterable[J]) -> BatchOutcome[J, H, R]:
        """Run one batch to the end and return every job's outcome, in input order.

        Submits start in input order, then waits in input order; every submit finishes before the first wait
        starts. A job's failure (an ``Exception`` from submit or wait)
        is recorded on that job, reported to ``on_error``, and (with ``fail_fast``) cancels the rest of the batch.
        Never raises a job's error.

        Cancellation: if the caller's scope is cancelled, the in-flight submits and waits are cancelled and
        ``trio.Cancelled`` propagates; no outcome is returned.
        """
        slots: list[_Slot[J, H, R]] = await map_in_slices(_Slot, jobs)
        with trio.CancelScope() as batch_scope:
            async with trio.open_nursery() as nursery:
                for slot in slots:
                    # Taking the slot here, not in the child, makes jobs start in input order (Trio runs
                    # newly started tasks in no promised order).
                    await self._submit_limiter.acquire_on_behalf_of(slot)
                    nursery.start_soon(self._submit_one, slot, batch_scope)
            # The submit nursery has closed: every submit is over. Only now may waits begin.
            async with trio.open_nursery() as nursery:
                for slot in slots:
                    if slot.submitted and slot.status is None:
                        await self._wait_limiter.acquire_on_behalf_of(slot)
                        nursery.start_soon(self._wait_one, slot, batch_scope)
        # A fail-fast cancel is absorbed by batch_scope; a cancel from the caller must still reach the caller.
        await trio.lowlevel.checkpoint_if_cancelled()
        # In slices: 10,000 records made in one step would hold a guest-mode GUI for tens of milliseconds.
        return BatchOutcome(jobs=tuple(await map_in_slices(self._freeze, enumerate(slots))))

    async def _submit_one(self, slot: _Slot[J, H, R], batch_scope: trio.CancelScope) -> None:
        ok, handle = await self._attempt(slot, partial(self._submit, slot.job), self._submit_limiter, batch_scope)
        if ok:
            slot.handle = handle
            slot.submitted = True
            _call_safely(self._on_submitted, slot.job, handle)

    async def _wait_one(self, slot: _Slot[J, H, R], batch_scope: trio.CancelScope) -> None:
        handle = cast(H, slot.handle)  # set by a successful submit (a handle may itself be None)
        ok, result = await self._attempt(slot, partial(self._wait, slot.job, handle), self._wait_limiter, batch_scope)
        if ok:
            slot.result = result
            slot.status = JobStatus.SUCCEEDED
            _call_safely(self._on_result, slot.job, result)

    async def _attempt(
        self,
        slot: _Slot[J, H, R],
        call: Callable[[], Awaitable[T]],
        limiter: trio.CapacityLimiter,
        batch_scope: trio.CancelScope,
    ) -> tuple[bool, T | None]:
        """One phase of a job (its submit or its wait), run under ``limiter`` (taken on the slot's behalf by the
        caller, released here). Returns (True, its value), or (False, None) after recording its ``Exception`` on
        the slot. Cancellation propagates (the limiter is released)."""
        try:
            return True, await call()
        except Exception as exc:
            self._record_error(slot, exc, batch_scope)
            return False, None
        finally:
            limiter.release_on_behalf_of(slot)

    def _record_error(self, slot: _Slot[J, H, R], exc: Exception, batch_scope: trio.CancelScope) -> None:
        slot.error = exc
        slot.status = JobStatus.FAILED
        _call_safely(self._on_error, slot.job, exc)
        if self.fail_fast:
            batch_scope.cancel()

    @staticmethod
    def _freeze(numbered: tuple[int, _Slot[J, H, R]]) -> JobOutcome[J, H, R]:
        index, slot = numbered
        phase = JobPhase.WAIT if slot.submitted else JobPhase.SUBMIT
        # A job with no status was cancelled (fail-fast) before its submit or wait finished.
        status = slot.status if slot.status is not None else JobStatus.CANCELLED
        return JobOutcome(
            index=index,
            job=slot.job,
            status=status,
            phase=phase,
            handle=slot.handle,
            result=slot.result,
            error=slot.error,
        )
