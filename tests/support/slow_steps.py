"""Pipeline steps for tests only, imported by server worker processes: tests put this folder on sys.path (or on
PYTHONPATH for a server subprocess). Synchronisation is through files and named pipes, never sleeps: opening a
FIFO blocks until the other side opens it."""

from __future__ import annotations

import os
import threading
import time
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


def _wait_for(path: Path) -> None:
    # Unbounded on purpose: the test always creates the file or kills the worker.
    while not path.exists():
        time.sleep(0.02)


def gate(image: np.ndarray, *, gate_dir: str, allow: int = 0) -> np.ndarray:
    """The first ``allow`` calls (over all workers) pass at once; later ones record their pid and wait until
    ``gate_dir/release`` exists (and pass then). Tokens are claimed with O_EXCL, so exactly ``allow`` pass."""
    folder = Path(gate_dir)
    release = folder / "release"
    if release.exists():
        return image
    for i in range(allow):
        try:
            os.close(os.open(folder / f"token_{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return image
        except FileExistsError:
            continue
    (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()))
    _wait_for(release)
    return image


def by_size(image: np.ndarray, *, gate_dir: str, hold_size: int = 0, fail_size: int = 0) -> np.ndarray:
    """Plates of one pipeline that behave differently by image size: ``hold_size`` images record the worker's
    pid and block until the process is killed; ``fail_size`` images fail the well; others pass at once."""
    side = int(image.shape[0])
    if side == fail_size:
        raise RuntimeError(f"planned failure for {side}px images")
    if side == hold_size:
        Path(gate_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
        threading.Event().wait()  # until the worker is killed
    return image
