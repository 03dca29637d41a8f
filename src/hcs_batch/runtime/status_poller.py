"""``ExecutionStatusPoller``: follow many executions to a terminal status with one task.

Pushed statuses (events) come first; batched polls (one request for all pending ids) are the fallback, backing
off while nothing changes. A liveness deadline fails every pending wait when neither a poll succeeds nor a status
is pushed for too long, so a dead or frozen peer never leaves a waiter hanging.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

from .slices import map_in_slices

__all__ = ["ExecutionStatusPoller", "PollerStatistics"]

log = logging.getLogger(__name__)

S = TypeVar("S")

_RECENT_LIMIT = 4096  # how many early pushes / finished ids are remembered (bounded memory for a long-lived poller)


@dataclass(frozen=True, slots=True, kw_only=True)
class PollerStatistics:
    """Counters since the poller was made, and its current state."""

    polls: int
    """Fetch calls made (each one batched request)."""
    polls_failed: int
    """Fetches that raised or exceeded ``request_timeout``."""
    ids_polled: int
    """Sum over all fetches of the number of ids asked for."""
    pushes: int
    """Statuses pushed, including ignored ones."""
    pushes_ignored: int
    """Pushes for an id already terminal or already delivered."""
    tracked: int
    """Ids currently held (pending, or terminal but not yet delivered by ``wait``)."""
    pending: int
    """Tracked ids without a terminal status or error: what the next poll asks for."""
    delivered: int
    """Terminal statuses or errors handed to a ``wait``."""
    liveness_failures: int
    """Times the liveness deadline failed every pending id."""
    unknown_failures: int
    """Ids failed because the peer kept not knowing them."""
    interval: float
    """The current poll interval (grows by ``backoff`` while nothing changes)."""


class _Entry(Generic[S]):
    __slots__ = ("done", "error", "status", "terminal", "unknown_polls", "waiting")

    def __init__(self) -> None:
        self.status: S | None = None
        self.terminal = False
        self.error: BaseException | None = None
        self.unknown_polls = 0
        self.done = trio.Event()
        self.waiting = False

    @property
    def pending(self) -> bool:
        return not self.terminal and self.error is None


def _default_liveness_error(timeout: float) -> Exception:
    return TimeoutError(f"no status was fetched or pushed for {timeout:g} s; the peer looks dead")


def _default_unknown_error(execution_id: str, polls: int) -> Exception:
    return LookupError(f"{execution_id!r} was unknown to the peer in {polls} consecutive polls")


class ExecutionStatusPoller(Generic[S]):
    """Follow many executions (by id) to terminal statuses, with one task and batched polls.

    Args:
        fetch: ``await fetch(ids)`` returns ``{id: status}`` for the ids the peer knows, in ONE request; an id
            missing from the mapping is unknown to the peer. May raise; a failure counts as a failed poll.
        is_terminal: whether a status is final.
        interval: delay before the first poll after an id becomes pending, and the base poll period.
        max_interval: ceiling of the poll period; ``backoff`` multiplies the period after every poll (or
            push) that changed nothing, and any change resets it to ``interval``.
        request_timeout: bound on one fetch; a slower fetch counts as failed (None: only the liveness bound).
        liveness_timeout: when ids are pending and no fetch has succeeded and nothing was pushed for this long,
            every pending id fails with ``liveness_error()`` (its ``__cause__`` is the last fetch error).
        unknown_after: an id the peer reports unknown in this many consecutive successful polls fails with
            ``unknown_error(id, polls)``.

    Run :meth:`serve` in a nursery (``await nursery.start(poller.serve)``); without it only pushes, ``fail``
    and ``fail_all`` complete waits. All methods are called from the Trio thread.
    """

    def __init__(
        self,
        *,
        fetch: Callable[[Sequence[str]], Awaitable[Mapping[str, S]]],
        is_terminal: Callable[[S], bool],
        interval: float = 1.0,
        max_interval: float = 10.0,
        backoff: float = 2.0,
        request_timeout: float | None = 10.0,
        liveness_timeout: float = 30.0,
        unknown_after: int = 3,
        liveness_error: Callable[[float], Exception] = _default_liveness_error,
        unknown_error: Callable[[str, int], Exception] = _default_unknown_error,
    ) -> None:
        if not 0 < interval <= max_interval:
            raise ValueError(f"need 0 < interval <= max_interval, got interval={interval}, max_interval={max_interval}")
        if backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {backoff}")
        if liveness_timeout <= 0 or unknown_after < 1:
            raise ValueError("liveness_timeout must be > 0 and unknown_after >= 1")
        self._fetch = fetch
        self._is_terminal = is_terminal
        self._base_interval = interval
        self._max_interval = max_interval
        self._backoff = backoff
        self._request_timeout = math.inf if request_timeout is None else request_timeout
        self._liveness_timeout = liveness_timeout
        self._unknown_after = unknown_after
        self._liveness_error = liveness_error
        self._unknown_error = unknown_error

        self._entries: dict[str, _Entry[S]] = {}
        self._pending: dict[str, None] = {}  # tracked ids with no terminal status or error, in tracking order
        self._early: OrderedDict[str, S] = OrderedDict()  # pushes that arrived before track()
        self._finished: OrderedDict[str, None] = OrderedDict()  # delivered ids: later pushes are ignored
        self._interval = interval
        self._next_poll_at = math.inf
        self._alive_at = 0.0
        self._last_fetch_error: BaseException | None = None
        self._changed = False  # a status changed since the last poll (resets backoff)
        self._wakeup = trio.Event()
        self._poll_requested = False
        self._counts = dict.fromkeys(
            ("polls", "polls_failed", "ids_polled", "pushes", "pushes_ignored", "delivered", "liveness", "unknown"), 0
        )

    # ------------------------------------------------------------------ public API

    def track(self, execution_id: str) -> None:
        """Start following ``execution_id`` (idempotent). A status pushed before this call is applied now."""
        if execution_id in self._entries:
            return
        self._finished.pop(execution_id, None)
        if not self._pending:
            # The liveness clock and the poll schedule only run while something is pending.
            now = trio.current_time()
            self._alive_at = now
            self._interval = self._base_interval
            self._next_poll_at = now + self._base_interval
        self._entries[execution_id] = _Entry()
        self._pending[execution_id] = None
        early = self._early.pop(execution_id, None)
        if early is not None:
            self._record(execution_id, early)
        self._wake()

    def push(self, execution_id: str, status: S) -> None:
        """Record a status learned without polling (an event). A terminal push completes the wait at once.

        Ignored for an id that is already terminal or delivered. A push for an id not tracked yet is kept
        (bounded) and applied when it is tracked: events may overtake the reply that names the id.
        Any push counts as a sign of life for the liveness deadline.
        """
        self._counts["pushes"] += 1
        self._alive_at = trio.current_time()
        entry = self._entries.get(execution_id)
        if entry is None:
            if execution_id in self._finished:
                self._counts["pushes_ignored"] += 1
                return
            self._early[execution_id] = status
            self._early.move_to_end(execution_id)
            while len(self._early) > _RECENT_LIMIT:
                self._early.popitem(last=False)
            return
        if not entry.pending:
            self._counts["pushes_ignored"] += 1
            return
        self._record(execution_id, status)

    def poll_now(self) -> None:
        """Poll all pending ids as soon as possible (e.g. events were missed), whatever the current interval."""
        self._poll_requested = True
        self._wake()

    def fail(self, execution_id: str, error: BaseException) -> None:
        """Fail one tracked, pending id: its ``wait`` raises ``error``. No effect on a terminal or unknown id."""
        entry = self._entries.get(execution_id)
        if entry is not None and entry.pending:
            entry.error = error
            entry.done.set()
            self._pending.pop(execution_id, None)

    def fail_all(self, error: BaseException) -> None:
        """Fail every pending id with ``error`` (e.g. the connection is gone). Terminal ids keep their status."""
        for execution_id in list(self._pending):
            self.fail(execution_id, error)

    def forget(self, execution_id: str) -> None:
        """Stop following ``execution_id`` without delivering it: no longer polled, later pushes ignored.

        For callers that learn the end some other way (they keep their own view of each id) and never ``wait``.
        """
        self._forget(execution_id)

    def status(self, execution_id: str) -> S | None:
        """The latest status known for a tracked id (terminal or not), or None."""
        entry = self._entries.get(execution_id)
        return None if entry is None else entry.status

    async def wait(self, execution_id: str) -> S:
        """Wait for the terminal status of ``execution_id`` (tracking it if needed) and return it.

        Each id is delivered once: after this returns or raises, the id is forgotten, and later pushes for it
        are ignored. Raises the error given to :meth:`fail`/:meth:`fail_all` or made by the liveness or unknown
        rules; ``trio.BusyResourceError`` if another task is already waiting for the same id.

        Cancellation: the id is forgotten (no longer polled); a terminal status arriving later is ignored.
        """
        self.track(execution_id)
        entry = self._entries[execution_id]
        if entry.waiting:
            raise trio.BusyResourceError(f"another task is already waiting for {execution_id!r}")
        entry.waiting = True
        try:
            await entry.done.wait()
        finally:
            self._forget(execution_id)
        if entry.error is not None:
            raise entry.error
        assert entry.status is not None
        return entry.status

    def statistics(self) -> PollerStatistics:
        c = self._counts
        return PollerStatistics(
            polls=c["polls"],
            polls_failed=c["polls_failed"],
            ids_polled=c["ids_polled"],
            pushes=c["pushes"],
            pushes_ignored=c["pushes_ignored"],
            tracked=len(self._entries),
            pending=len(self._pending),
            delivered=c["delivered"],
            liveness_failures=c["liveness"],
            unknown_failures=c["unknown"],
            interval=self._interval,
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The one polling loop; runs until cancelled. Start it with ``await nursery.start(poller.serve)``.

        Sleeps while nothing is pending. Never raises for a failed fetch (that is a failed poll); only
        ``trio.Cancelled`` ends it. Waits still pending when it is cancelled keep waiting (fail them if needed).
        """
        task_status.started()
        while True:
            if not self._pending:
                await self._sleep_until(math.inf)
                continue
            liveness_deadline = self._alive_at + self._liveness_timeout
            if trio.current_time() >= liveness_deadline:
                self._fail_liveness()
                continue
            if not self._poll_requested and trio.current_time() < self._next_poll_at:
                await self._sleep_until(min(self._next_poll_at, liveness_deadline))
                continue
            await self._poll(liveness_deadline)

    # ------------------------------------------------------------------ internals

    def _wake(self) -> None:
        self._wakeup.set()

    async def _sleep_until(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._wakeup.wait()
        if self._wakeup.is_set():
            self._wakeup = trio.Event()

    def _record(self, execution_id: str, status: S) -> None:
        entry = self._entries[execution_id]
        entry.unknown_polls = 0
        if entry.status != status:
            self._changed = True
        entry.status = status
        if self._is_terminal(status):
            entry.terminal = True
            entry.done.set()
            self._pending.pop(execution_id, None)

    def _forget(self, execution_id: str) -> None:
        entry = self._entries.pop(execution_id, None)
        self._pending.pop(execution_id, None)
        if entry is None:
            return
        if entry.done.is_set():
            self._counts["delivered"] += 1
        self._finished[execution_id] = None
        while len(self._finished) > _RECENT_LIMIT:
            self._finished.popitem(last=False)

    def _fail_liveness(self) -> None:
        self._counts["liveness"] += 1
        error = self._liveness_error(self._liveness_timeout)
        if self._last_fetch_error is not None and error.__cause__ is None:
            error.__cause__ = self._last_fetch_error
        self.fail_all(error)

    async def _poll(self, liveness_deadline: float) -> None:
        ids = list(self._pending)
        self._poll_requested = False
        self._counts["polls"] += 1
        self._counts["ids_polled"] += len(ids)
        started = trio.current_time()
        result: Mapping[str, S] | None = None
        with trio.move_on_at(min(started + self._request_timeout, liveness_deadline)) as scope:
            try:
                result = await self._fetch(ids)
            except Exception as exc:
                self._last_fetch_error = exc
                log.debug("status fetch for %d ids failed: %r", len(ids), exc)
        if scope.cancelled_caught:
            self._last_fetch_error = TimeoutError(f"status fetch took longer than {self._request_timeout:g} s")
        if result is None:
            self._counts["polls_failed"] += 1
        else:
            self._alive_at = trio.current_time()
            self._last_fetch_error = None
            fetched = result

            def apply(execution_id: str) -> None:
                entry = self._entries.get(execution_id)
                if entry is None or not entry.pending:
                    return  # delivered, failed or pushed terminal meanwhile: terminal is final
                if execution_id in fetched:
                    self._record(execution_id, fetched[execution_id])
                else:
                    entry.unknown_polls += 1
                    if entry.unknown_polls >= self._unknown_after:
                        self._counts["unknown"] += 1
                        self.fail(execution_id, self._unknown_error(execution_id, entry.unknown_polls))

            await map_in_slices(apply, ids)  # 10,000 ids must not hold one guest tick (~12 ms)
        if self._changed:
            self._interval = self._base_interval
        else:
            self._interval = min(self._interval * self._backoff, self._max_interval)
        self._changed = False
        self._next_poll_at = trio.current_time() + self._interval
