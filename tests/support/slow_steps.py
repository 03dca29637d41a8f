"""Pipeline steps for tests only (``tests.support.slow_steps:NAME``), imported by server worker processes: the
repository root is on their path (pytest's for embedded servers, ``serverproc.env()`` for server subprocesses).
Synchronisation is through files and named pipes, never sleeps: opening a FIFO blocks until the other side opens
it."""

from __future__ import annotations

import os
import select
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


def _wait_for_release(folder: Path) -> None:
    """Block until :func:`release_gate` runs for ``folder`` (or the process is killed), without polling.

    Readers hold ``release.fifo`` open; release_gate creates ``release`` and then opens and closes the FIFO for
    writing, which wakes every reader blocked in ``select``. A reader that opens the FIFO after that finds
    ``release`` already there. (Linux: a FIFO that never had a writer is not readable, so ``select`` blocks.)
    """
    fifo = folder / "release.fifo"
    try:
        os.mkfifo(fifo)
    except FileExistsError:
        pass
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not (folder / "release").exists():
            select.select([fd], [], [])
    finally:
        os.close(fd)


def release_gate(folder: Path) -> None:
    """Let every ``gate`` call in ``folder`` pass, those waiting now and those to come."""
    (folder / "release").touch()
    try:
        os.close(os.open(folder / "release.fifo", os.O_WRONLY | os.O_NONBLOCK))
    except (FileNotFoundError, OSError):
        pass  # no FIFO or no reader yet: later readers see the release file


def gate(image: np.ndarray, *, gate_dir: str, allow: int = 0) -> np.ndarray:
    """The first ``allow`` calls (over all workers) pass at once; later ones record their pid and wait until
    :func:`release_gate` (and pass then). Tokens are claimed with O_EXCL, so exactly ``allow`` pass."""
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
    _wait_for_release(folder)
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


def tick(image: np.ndarray, *, pid_dir: str, seconds: float = 0.05) -> np.ndarray:
    """A step that takes ``seconds`` of (simulated) work and records this worker's pid in ``pid_dir``: many of
    them in a row make a long well that a cooperative stop can end between two steps."""
    Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    threading.Event().wait(seconds)
    return image


def crash(image: np.ndarray) -> np.ndarray:
    """Ends the worker process at once, every time (a step that segfaults or is killed for its memory)."""
    os._exit(13)
