"""Worker recycling: a worker process retires after it has run a given number of wells.

A long screen must not grow: memory a step leaks, or the C allocator keeps after a large image, is given back to
the system when the process ends. The executor runs every well through :func:`counted`, which counts it in the
worker process; :func:`retire_after` is trio_parallel's ``retire`` hook (called in the worker after each job),
bound to the limit with :func:`functools.partial` so that it pickles by reference. Warm-up jobs are not counted.
The next well after a retirement starts a fresh worker process (which pays its start-up and imports then).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["counted", "retire_after", "wells_run"]

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
