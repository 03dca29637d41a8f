"""Test-only pipeline steps, imported by the server's worker processes (this folder is on their sys.path).

Synchronisation is through named pipes (FIFOs), not sleeps: opening a FIFO blocks until the other side opens it.
"""

from __future__ import annotations

import os
import time
from typing import Any


def pid_then_wait(image: Any, *, pid_fifo: str, release_fifo: str = "") -> None:
    """Write this worker's pid into ``pid_fifo``; then block until ``release_fifo`` is written (or forever)."""
    with open(pid_fifo, "w") as fh:
        fh.write(str(os.getpid()))
    if release_fifo:
        with open(release_fifo) as fh:
            fh.read()
    else:
        time.sleep(3600)


def explode(image: Any, *, message: str = "boom") -> None:
    """Always fails, to check that a failing step fails its execution with a message naming it."""
    raise RuntimeError(message)


def typed(image: Any, *, count: int = 1, scale: float = 1.0, label: str = "", flag: bool = False) -> None:
    """Takes parameters of simple types, for the compile-time type checks."""
