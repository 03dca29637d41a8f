"""Pipeline steps for tests only, imported by server worker processes: tests put this folder on sys.path (or on
PYTHONPATH for a server subprocess). Synchronisation is through files and named pipes, never sleeps: opening a
FIFO blocks until the other side opens it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np


def hold(image: np.ndarray, *, pid_dir: str) -> np.ndarray:
    """Record this worker's pid in ``pid_dir``, then block until the process is killed (a well that never ends)."""
    Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    threading.Event().wait()
    return image


def pid_then_wait(image: Any, *, pid_fifo: str, release_fifo: str = "") -> None:
    """Write this worker's pid into ``pid_fifo``; then block until ``release_fifo`` is written (or forever)."""
    with open(pid_fifo, "w") as fh:
        fh.write(str(os.getpid()))
    if release_fifo:
        with open(release_fifo) as fh:
            fh.read()
    else:
        threading.Event().wait()  # until the worker is killed


def explode(image: Any, *, message: str = "boom") -> None:
    """Always fails, to check that a failing step fails its execution with a message naming it."""
    raise RuntimeError(message)


def typed(image: Any, *, count: int = 1, scale: float = 1.0, label: str = "", flag: bool = False) -> None:
    """Takes parameters of simple types, for the compile-time type checks."""
