"""Pipeline steps for tests only: importable by server worker processes through PYTHONPATH=tests/support."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


def hold(image: np.ndarray, *, pid_dir: str) -> np.ndarray:
    """Record this worker's pid in ``pid_dir``, then block until the process is killed (a well that never ends)."""
    Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    threading.Event().wait()
    return image
