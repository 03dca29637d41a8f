"""A pipeline step for the worker-recycling tests: it measures which worker process ran the image."""

from __future__ import annotations

import os
from typing import Any


def worker_pid(image: Any) -> dict[str, int]:
    """Measures ``worker_pid``: the pid of the worker process that ran this image."""
    return {"worker_pid": os.getpid()}


def refaults(image: Any) -> dict[str, int]:
    """Measures ``refaults``: page faults taken while a dozen 256 KiB arrays (a counter's per-object blocks) are
    allocated and freed twice after a first round (a worker that keeps its small heap blocks reuses the pages:
    ~none; one whose malloc gives them back each time: hundreds), ``kept_kib``: how much of a freed 16 MiB
    float image stays resident (a worker that keeps image-sized buffers for the next image: all of it; one that
    gives them back: ~0), and ``grown_kib``: how much more is resident after three more such images (reused: ~0)."""
    import resource

    import numpy as np

    def rss_kib() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)

    def small_blocks() -> None:
        blocks = [np.ones(1 << 15, np.float64) for _ in range(12)]  # 12 x 256 KiB
        del blocks

    small_blocks()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    small_blocks()
    small_blocks()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    base = rss_kib()
    image = np.ones(1 << 22, np.float32)  # 16 MiB, touched
    del image
    kept = rss_kib()
    for _ in range(3):
        image = np.ones(1 << 22, np.float32)
        del image
    return {"refaults": faults, "kept_kib": max(0, kept - base), "grown_kib": max(0, rss_kib() - kept)}
