"""Worker processes give their largest image buffers back to the system when freed and keep the heap's blocks.

glibc's malloc returns the top of its heap to the system once more than its trim threshold is free there, and
serves big blocks from fresh mappings above its mmap threshold; both thresholds adapt to the largest block freed
so far (up to 32 MiB). Left alone, a worker that allocates and frees a few 4-16 MiB arrays per image maps, faults
in and unmaps the same memory again and again (~4,000-12,000 page faults per well of four 2,048-pixel images).
Fixing both thresholds at their maximum (the first :func:`keep_heap`: no refaulting at all) put every
image-sized buffer in the heap, whose top then stays at the worst moment's live images *plus* the holes that
smaller blocks leave below them: ~2 images more than the buffers alive at once.

:func:`keep_heap` (the worker context's ``init`` hook) keeps the trim threshold at 256 MiB (blocks freed are
reused, never refaulted) and fixes the mmap threshold at 4 MiB, one 2,048 x 2,048 mask: those and everything
larger (the uint16 planes, the float32 working image, label images) are mappings of their own, unmapped when freed,
so they never sit on top of the holes that smaller blocks leave in the heap; numpy asks for transparent huge pages
for them, so mapping them again costs a few faults, not thousands. (A free heap block that fits is still reused
first: glibc maps only what its bins cannot serve.) It also has Arrow (the well's result files) allocate through
the same malloc instead of its own mimalloc pool, which kept ~1 image of freed pages. Measured (HOTSPOTS.md,
"Worker peak memory"): with the Gaussian blurring in place, peak RSS above the interpreter on the 96-well real
plate (``hcs-batch run``, 48 wells per worker, 6 runs) 175-177 MiB = 5.4-5.6 images at 4 MiB against 178-187 MiB
= 5.7-6.8 at 16 MiB; ~900 instead of ~180 page faults and ~6 ms more system CPU per well of four images (~1.5%).
Earlier: an 8,000 KiB threshold with a 4 MiB trim threshold gave 5.3-5.5 but ~12,500 faults and ~40 ms of system
CPU more per well (~10%: the hcs-batch vs Pool ratio fell from 0.98 to 0.88); the trim threshold stays high.
Elsewhere than glibc (no ``mallopt``) the thresholds are left as they are.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 256 << 20
_MMAP_THRESHOLD = 4 << 20  # a 2,048 x 2,048 mask: image-sized buffers are mappings of their own


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
