"""Worker recycling: a worker process retires after it has run a given number of wells; and the other jobs of a
worker's life that its pool (:mod:`.worker_pool`) sends: warming up, ending.

A long screen must not grow: memory a step leaks, or the C allocator keeps after a large image, is given back to
the system when the process ends. The executor runs every well through :func:`counted`, which counts it in the
worker process; :func:`retire_after` is trio_parallel's ``retire`` hook (called in the worker after each job),
bound to the limit with :func:`functools.partial` so that it pickles by reference. Warm-up jobs are not counted.
The next well after a retirement starts a fresh worker process (which pays its start-up and imports then).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

__all__ = ["counted", "end_worker", "retire_after", "warm", "wells_run"]

T = TypeVar("T")

_wells = 0


def counted(func: Callable[..., T], *args: Any) -> T:
    """Run ``func(*args)`` in this worker and count it as one well (also when it raises)."""
    global _wells
    _wells += 1
    return func(*args)


def wells_run() -> int:
    """Wells this worker process has run so far."""
    return _wells


def retire_after(limit: int) -> bool:
    """True once this worker process has run ``limit`` wells: trio_parallel then ends it. Never raises."""
    return _wells >= limit


def warm() -> int:
    """The warm-up job of a fresh worker (:func:`.worker.warm_up`, imported here, in the worker: the host that
    sends this job need not import the worker's modules first); returns the worker's pid. Not counted as a well."""
    from .worker import warm_up

    return warm_up()


def end_worker() -> NoReturn:
    """End this worker process at once (exit status 0), skipping the interpreter's finalization: the job that ends
    an idle worker when its pool closes (:mod:`.worker_pool`). Standard streams are flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # None, closed or broken: nothing more to save
            pass
    os._exit(0)
