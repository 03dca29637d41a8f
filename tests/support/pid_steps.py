"""A pipeline step for the worker-recycling tests: it measures which worker process ran the image."""

from __future__ import annotations

import os
from typing import Any


def worker_pid(image: Any) -> dict[str, int]:
    """Measures ``worker_pid``: the pid of the worker process that ran this image."""
    return {"worker_pid": os.getpid()}
