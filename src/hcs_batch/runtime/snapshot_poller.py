"""``IntervalSnapshotPoller``: fetch a snapshot every interval and report only real changes."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio
import trio_util

from .._util import call_logged

__all__ = ["IntervalSnapshotPoller", "Snapshot"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(Generic[T]):
    """One fetch: its ``value``, or the ``error`` it ended with (then ``value`` is None), and when it was taken."""

    value: T | None = None
    error: Exception | None = None
    taken_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _signature(snapshot: Snapshot[Any], key: Callable[[Any], Hashable] | None) -> tuple[Any, ...]:
    """What change detection compares: the value (or its key), or the error's type and message."""
    if snapshot.error is not None:
        return ("error", type(snapshot.error), str(snapshot.error))
    return ("value", snapshot.value if key is None else key(snapshot.value))


class IntervalSnapshotPoller(Generic[T]):
    """Call ``fetch()`` every ``interval`` seconds and report the snapshots that differ from the previous one.

    Args:
        fetch: returns the current value. An exception, or taking longer than ``timeout``, makes an error
            snapshot; errors are compared by type and message, so a persisting failure is reported once and
            the recovery after it is reported again.
        interval: seconds between the starts of two fetches (a slow fetch delays the next one, never overlaps).
        timeout: bound on one fetch (None: unbounded).
        key: compare ``key(value)`` instead of the value itself (e.g. to ignore an uptime field).
        on_change: a plain function called in the Trio thread with every changed snapshot, the first included;
            its exceptions are logged.

    ``latest`` is a ``trio_util.AsyncValue`` holding the last *changed* snapshot (None before the first);
    ``await poller.latest.wait_value(lambda s: s is not None)`` waits for the first one.
    """

    def __init__(
        self,
        *,
        fetch: Callable[[], Awaitable[T]],
        interval: float,
        timeout: float | None = None,
        key: Callable[[T], Hashable] | None = None,
        on_change: Callable[[Snapshot[T]], object] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._fetch = fetch
        self.interval = interval
        self._timeout = math.inf if timeout is None else timeout
        self._key = key
        self._on_change = on_change
        self.latest: trio_util.AsyncValue = trio_util.AsyncValue(None)
        self.fetches = 0
        self.changes = 0
        self._refresh = trio.Event()

    def refresh(self) -> None:
        """Fetch again now instead of at the next interval."""
        self._refresh.set()

    async def take(self) -> Snapshot[T]:
        """Fetch one snapshot now, bounded by ``timeout``; never raises for a failed fetch (only Cancelled)."""
        self.fetches += 1
        value: T | None = None
        error: Exception | None = None
        with trio.move_on_after(self._timeout) as scope:
            try:
                value = await self._fetch()
            except Exception as exc:
                error = exc
        if scope.cancelled_caught:
            error = TimeoutError(f"snapshot fetch took longer than {self._timeout:g} s")
        return Snapshot(value=value, error=error, taken_at=trio.current_time())

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled; the first fetch happens at once. Start with ``await nursery.start(poller.serve)``.

        Cancellation ends the loop (an in-flight fetch is cancelled); ``latest`` keeps its last value.
        """
        task_status.started()
        next_at = trio.current_time()
        while True:
            with trio.move_on_at(next_at):
                await self._refresh.wait()
            started = trio.current_time()
            if self._refresh.is_set():
                self._refresh = trio.Event()
                next_at = started  # a refresh restarts the schedule
            snapshot = await self.take()
            self._offer(snapshot)
            # Fixed rate; after an overrun the next fetch starts at once, with no burst to catch up.
            next_at = max(next_at + self.interval, trio.current_time())

    def _offer(self, snapshot: Snapshot[T]) -> None:
        previous: Snapshot[T] | None = self.latest.value
        if previous is not None and _signature(previous, self._key) == _signature(snapshot, self._key):
            return
        self.changes += 1
        self.latest.value = snapshot
        if self._on_change is not None:
            call_logged(log, "polling", self._on_change, snapshot)
