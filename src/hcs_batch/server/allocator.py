"""Worker processes keep the heap's blocks, image-sized ones too, for the next image instead of refaulting them.

glibc's malloc returns the top of its heap to the system once more than its trim threshold is free there, and
serves big blocks from fresh mappings above its mmap threshold; both thresholds adapt to the largest block freed
so far (up to 32 MiB). Left alone, a worker that allocates and frees a few 4-16 MiB arrays per image maps, faults
in and unmaps the same memory again and again (~4,000-12,000 page faults per well of four 2,048-pixel images).
:func:`keep_heap` (the worker context's ``init`` hook) fixes both at glibc's largest values that matter: the trim
threshold at 256 MiB and the mmap threshold at 32 MiB, so every buffer of a 2,048-pixel image (uint16 planes, masks,
the float32 working image, labels) is a heap block, reused by the next image: no page is unmapped and faulted in
again. The heap's top then stays at the most bytes a well ever holds at once plus the holes smaller blocks leave:
with the Gaussian blurring in place (:func:`hcs_batch.steps.may_overwrite`) that is the normalize step, one plane and
its float32. It also has Arrow (the well's result files) allocate through the same malloc instead of its own
mimalloc pool, which kept ~1 image of freed pages.

Measured (HOTSPOTS.md, "Worker peak memory"; 24 wells of the real plate in one worker, peak RSS above the
interpreter in 8 MiB images, CPU per well): mmap threshold 32 MiB 4.3-4.4, ~140 faults, 8-10 ms system CPU; 16 MiB
(the float32 image a mapping of its own) 5.8-6.8, ~170 faults, 11-16 ms; 4 MiB (every image-sized buffer a
mapping) 5.2-5.4, ~1,100-3,900 faults, 23-39 ms. With the Gaussian copying (before), 32 MiB gave 6.3 and 16 MiB
5.8: the copy was the peak.
Elsewhere than glibc (no ``mallopt``) the thresholds are left as they are.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 256 << 20
_MMAP_THRESHOLD = 32 << 20  # glibc's largest: every image of up to 4,096 x 2,048 float32 pixels is a heap block


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
