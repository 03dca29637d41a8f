"""Worker processes give image-sized buffers back to the system when freed and keep the small heap blocks.

glibc's malloc returns the top of its heap to the system once more than its trim threshold is free there, and
serves big blocks from fresh mappings above its mmap threshold; both thresholds adapt to the largest block freed
so far (up to 32 MiB). Left alone, a worker that allocates and frees a few 4-16 MiB arrays per image maps, faults
in and unmaps the same memory again and again (~4,000-12,000 page faults per well of four 2,048-pixel images).
Fixing both thresholds at their maximum (the first :func:`keep_heap`: no refaulting at all) put every
image-sized buffer in the heap, whose top then stays at the worst moment's live images *plus* the holes that
smaller blocks leave below them: ~2 images more than the buffers alive at once.

:func:`keep_heap` (the worker context's ``init`` hook) fixes the mmap threshold just under one 2,048-pixel
uint16 plane (8,000 KiB): planes, float images and int32 labels of such a field are mappings of their own, unmapped
when freed, so the heap's holes never add to them; and the trim threshold at 4 MiB, so that what the smaller blocks
leave free at the heap's top goes back too but the next image's small blocks are not refaulted one by one. It
also has Arrow (the well's result files) allocate through the same malloc instead of its own mimalloc pool, which
kept ~1 image of freed pages. Measured (HOTSPOTS.md, "Worker peak memory", ``python -m benchmarks.worker_memory``):
peak RSS 6.3 -> 5.3-5.5 images above the interpreter, for ~12,500 page faults and ~40 ms of system CPU more per
well of four images (~10% of the well's CPU); both thresholds at their maximum was stable at 6.3, a 4 MiB mmap
threshold with the heap kept varied between 5.6 and 7.2 from run to run. Elsewhere than glibc (no ``mallopt``)
the thresholds are left as they are.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 4 << 20  # up to 4 MiB free at the heap's top stays for the next image's small blocks
_MMAP_THRESHOLD = 8000 << 10  # just under a 2,048 x 2,048 uint16 plane (8 MiB): those are mappings of their own


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
