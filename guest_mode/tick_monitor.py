"""Guest-tick monitor: how long each Trio guest tick blocks the Qt event loop.

In guest mode Trio runs every ready task inside one Qt callback (a *guest tick*). While a tick runs the GUI cannot
repaint or react, so a tick longer than one 60 Hz frame (16 ms) is a visible stutter. The runner times every
callback it re-enters Trio with and reports it here; the monitor logs a warning for each slow tick (rate-limited)
and keeps statistics for benchmarks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

__all__ = ["DEFAULT_THRESHOLD", "TickMonitor", "TickStatistics"]

DEFAULT_THRESHOLD = 0.016
"""Seconds one guest tick may block the Qt loop before it counts as slow (one 60 Hz frame)."""

logger = logging.getLogger("guest_mode.ticks")


@dataclass(frozen=True, slots=True, kw_only=True)
class TickStatistics:
    """What the monitor saw since it was made (or last reset); times in seconds."""

    ticks: int
    total: float
    longest: float
    longest_cpu: float
    """The most CPU time the GUI thread spent in one tick (0 when the runner did not say)."""
    slow_ticks: int
    threshold: float

    @property
    def mean(self) -> float:
        return self.total / self.ticks if self.ticks else 0.0


class TickMonitor:
    """Collects guest-tick durations; ``record`` is called by the runner in the Qt thread after every tick.

    A slow tick logs a warning on the ``guest_mode.ticks`` logger, at most once per ``warn_interval`` seconds
    (the message counts the slow ticks it stands for), so a stuck GUI does not also flood the log.
    """

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, warn_interval: float = 1.0) -> None:
        self.threshold = threshold
        self.warn_interval = warn_interval
        self.reset()

    def reset(self) -> None:
        """Forget every tick seen so far."""
        self._ticks = 0
        self._total = 0.0
        self._longest = 0.0
        self._longest_cpu = 0.0
        self._slow = 0
        self._unreported = 0
        self._last_warning = -float("inf")

    def record(self, duration: float, *, cpu: float | None = None) -> None:
        """Account one tick that blocked the Qt loop for ``duration`` seconds (wall clock), of which the GUI thread
        ran ``cpu`` seconds when known (the rest it waited: for the GIL, or for a core on a busy machine)."""
        self._ticks += 1
        if cpu is not None and cpu > self._longest_cpu:
            self._longest_cpu = cpu
        self._total += duration
        if duration > self._longest:
            self._longest = duration
        if duration > self.threshold:
            self._slow += 1
            self._unreported += 1
            now = time.monotonic()
            if now - self._last_warning >= self.warn_interval:
                logger.warning(
                    "a Trio guest tick blocked the Qt event loop for %.1f ms (threshold %.1f ms; %d slow tick(s) "
                    "since the last warning): keep per-task work short and coalesce wake-ups",
                    duration * 1e3,
                    self.threshold * 1e3,
                    self._unreported,
                )
                self._last_warning = now
                self._unreported = 0

    def statistics(self) -> TickStatistics:
        """A snapshot of the counters."""
        return TickStatistics(
            ticks=self._ticks,
            total=self._total,
            longest=self._longest,
            longest_cpu=self._longest_cpu,
            slow_ticks=self._slow,
            threshold=self.threshold,
        )
