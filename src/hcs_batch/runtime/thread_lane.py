"""``ThreadLane``: blocking calls run in batches on one worker thread, so many small calls cost one thread hop.

``trio.to_thread.run_sync`` costs a thread hand-off (and a wake-up of the event loop) per call. For many small
blocking calls — listing a folder, writing two small files — the hand-off is most of the cost, and a thread per
call also makes the event loop fight those threads for the GIL. A lane queues the calls and runs whatever is
queued in one ``to_thread`` call, in order, so the event loop never blocks on them and pays one hop per batch.

A call that blocks for long (a hung network drive) holds up the calls queued behind it, never the event loop.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

__all__ = ["ThreadLane"]

T = TypeVar("T")


class _Call:
    __slots__ = ("args", "done", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = trio.Event()
        self.result: outcome.Outcome[Any] | None = None


def _run_batch(batch: list[_Call]) -> None:
    for call in batch:
        call.result = outcome.capture(call.fn, *call.args)


class ThreadLane:
    """Run blocking calls on one worker thread, batched. Start :meth:`serve` in a nursery first.

    ``max_batch`` bounds how many queued calls one thread hop takes.
    """

    def __init__(self, *, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._max_batch = max_batch
        self._queue: collections.deque[_Call] = collections.deque()
        self._work = trio.Event()
        self._closed = False
        self.batches = 0
        self.calls = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the lane's thread and return its result (or raise its exception).

        Cancellation: a call still queued is dropped; one already running finishes on the thread and its
        result is discarded.

        Raises:
            trio.ClosedResourceError: the lane is not serving any more.
        """
        if self._closed:
            raise trio.ClosedResourceError("the thread lane has stopped")
        call = _Call(fn, args)
        self._queue.append(call)
        self._work.set()
        try:
            await call.done.wait()
        except trio.Cancelled:
            if call.result is None:
                try:
                    self._queue.remove(call)
                except ValueError:
                    pass  # already taken by the thread: it will run, its result is dropped
            raise
        assert call.result is not None
        return call.result.unwrap()  # type: ignore[no-any-return]

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take queued calls in batches to the worker thread until cancelled.

        Cancellation: the batch on the thread is abandoned (it finishes in the background; a call stuck on a hung
        drive must not hold up shutting down) and its callers, like those of calls still queued, get
        ``trio.ClosedResourceError``.
        """
        task_status.started()
        batch: list[_Call] = []
        try:
            while True:
                await self._work.wait()
                self._work = trio.Event()
                while self._queue:
                    batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                    # Abandoned on cancel: a call stuck on a hung drive must not hold up shutting down.
                    await trio.to_thread.run_sync(_run_batch, batch, abandon_on_cancel=True)
                    self.batches += 1
                    self.calls += len(batch)
                    for call in batch:
                        call.done.set()
                    batch = []
                    await trio.lowlevel.checkpoint()
        finally:
            self._closed = True
            for call in [*batch, *self._queue]:
                if call.result is None:
                    call.result = outcome.Error(
                        trio.ClosedResourceError("the thread lane stopped before this call ran")
                    )
                call.done.set()
            self._queue.clear()
