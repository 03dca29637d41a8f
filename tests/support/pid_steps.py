"""A pipeline step for the worker-recycling tests: it measures which worker process ran the image."""

from __future__ import annotations

import os
from typing import Any


def worker_pid(image: Any) -> dict[str, int]:
    """Measures ``worker_pid``: the pid of the worker process that ran this image."""
    return {"worker_pid": os.getpid()}


def refaults(image: Any) -> dict[str, int]:
    """Measures ``refaults``: page faults taken while the arrays of two more 2,048-pixel images are allocated and
    freed in the order a counter does it, after a first image (a worker that keeps its heap reuses the freed
    pages: none; one whose malloc gives them back and maps them again: ~2,500-3,000 here)."""
    import resource

    import numpy as np

    def one_image() -> None:
        raw = np.ones(1 << 22, np.uint16)  # 8 MiB
        normalized = np.ones(1 << 22, np.float32)  # 16 MiB
        blurred = np.ones(1 << 22, np.float32)
        del normalized
        mask = np.ones(1 << 22, np.bool_)
        del blurred
        labels = np.ones(1 << 22, np.int32)
        del raw, mask, labels

    one_image()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    one_image()
    one_image()
    return {"refaults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}
