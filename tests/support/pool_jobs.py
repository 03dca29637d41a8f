"""Jobs for the worker-pool tests (``hcs_batch.server.worker_pool``), run in its worker processes: the repository
root is on their path. Synchronisation is through files, never sleeps."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path


def mark_at_exit(path: str) -> int:
    """Have this worker write ``path`` when its interpreter finalizes (an ``atexit`` handler); returns its pid."""
    atexit.register(Path(path).write_text, "finalized")
    return os.getpid()


def held_warm_up(pid_dir: str) -> int:
    """A warm-up that never ends: record this worker's pid in ``pid_dir``, then block until the process is killed."""
    Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
    threading.Event().wait()
    return os.getpid()
