"""Worker processes keep their C heap between images instead of giving it back after every one.

glibc's malloc returns the top of its heap to the system once more than its trim threshold is free there, and
serves big blocks from fresh mappings above its mmap threshold; both thresholds adapt to the largest block freed
so far (up to 32 MiB). A worker that allocates and frees a few 8-16 MiB arrays per image therefore maps, faults in
and unmaps the same memory again and again: on a 2,048-pixel plate ~12,000 page faults and ~45 ms of system CPU
per well of four images, a quarter of the well's CPU. :func:`keep_heap` (the worker context's ``init`` hook) fixes
both thresholds so that freed image buffers are reused, and has Arrow (the well's result files) allocate through
the same malloc instead of its own mimalloc pool, which kept ~1 image of freed pages per worker. The peak resident
memory is then what a well needs at once plus the heap's fragmentation (~1-2 images; an mmap threshold of one
image was tried and did not lower the peak reliably, HOTSPOTS.md "Worker peak memory"); it is not returned
between images (worker recycling returns it, see :mod:`.recycle`). Elsewhere than glibc (no ``mallopt``) the
thresholds are left as they are.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 256 << 20
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit systems


def keep_heap() -> bool:
    """Fix malloc's trim and mmap thresholds and Arrow's memory pool in this process; True when glibc accepted
    both thresholds. Never raises."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
        tuned = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    except (OSError, AttributeError):
        tuned = False
    # Arrow reads this when it first allocates (its pool is chosen once): its buffers then come from malloc too.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    return tuned
