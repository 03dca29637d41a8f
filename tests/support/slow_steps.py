"""Pipeline steps for tests only: importable by server worker processes through PYTHONPATH=tests/support."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def sleepy(image: np.ndarray, *, seconds: float = 1.0, pid_dir: str = "") -> np.ndarray:
    """Record this worker's pid in ``pid_dir`` (if given), then hold the worker for ``seconds``."""
    if pid_dir:
        Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    return image


def explode(image: np.ndarray) -> np.ndarray:
    """Fail on purpose, to test that a failing plate ends failed with the step's message."""
    raise RuntimeError("explode step failed on purpose")
