"""Long per-item loops in short slices: a 10,000-item list never holds one Trio task step for long.

In Trio guest mode every task step runs inside one GUI callback (a *guest tick*), and a tick over 16 ms is a visible
stutter. Work that is linear in the batch size (building 10,000 outcome records, say) therefore gives the scheduler
a turn whenever it has run for ``SLICE_SECONDS`` in one go.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import trio

__all__ = ["SLICE_SECONDS", "map_in_slices"]

T = TypeVar("T")
U = TypeVar("U")

SLICE_SECONDS = 0.002
"""How long one slice may run before the loop yields: an eighth of a 60 Hz frame, so that a slice and the work
around it (a busy machine stretches both) stay well inside one frame."""


async def map_in_slices(fn: Callable[[T], U], items: Iterable[T], *, slice_seconds: float = SLICE_SECONDS) -> list[U]:
    """``[fn(item) for item in items]``, yielding to the scheduler whenever ``slice_seconds`` passed since the
    last yield (always at least one item per slice).

    The yields are not cancellation points (``trio.lowlevel.cancel_shielded_checkpoint``): a loop that must
    finish (the shielded end of a batch, say) finishes, and a cancelled caller sees ``Cancelled`` at its next
    checkpoint, not in the middle of the list. Raises whatever ``fn`` raises. Other tasks run between slices:
    ``fn`` must not depend on state they may change, or must tolerate it.
    """
    results: list[U] = []
    started = time.perf_counter()
    for item in items:
        results.append(fn(item))
        if time.perf_counter() - started > slice_seconds:
            await trio.lowlevel.cancel_shielded_checkpoint()
            started = time.perf_counter()
    return results
