"""Generic Trio primitives for batches of remote work; nothing here knows what the work is.

- :class:`BatchSubmitWaitEngine`: submit every job, then wait for all of them, bounded, fail-fast optional.
- :class:`ExecutionStatusPoller`: follow many executions to terminal statuses with one task (pushes first,
  batched polls with backoff as the fallback, a liveness deadline).
- :class:`IntervalSnapshotPoller`: a periodic snapshot that reports only real changes.
- :class:`ThreadLane`: blocking calls batched onto one worker thread, one thread hop per batch.
- :func:`map_in_slices`: a long per-item loop that yields to the scheduler every few milliseconds.
"""

from __future__ import annotations

from .engine import BatchOutcome, BatchSubmitWaitEngine, JobOutcome, JobPhase, JobStatus
from .slices import map_in_slices
from .snapshot_poller import IntervalSnapshotPoller, Snapshot
from .status_poller import ExecutionStatusPoller, PollerStatistics
from .thread_lane import ThreadLane

__all__ = [
    "BatchOutcome",
    "BatchSubmitWaitEngine",
    "ExecutionStatusPoller",
    "IntervalSnapshotPoller",
    "JobOutcome",
    "JobPhase",
    "JobStatus",
    "PollerStatistics",
    "Snapshot",
    "ThreadLane",
    "map_in_slices",
]
