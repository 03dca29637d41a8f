"""Progress projection: the latest event per (plate, well, step), plate percent, server status text."""

from __future__ import annotations

__all__ = ["ProgressTracker"]


class ProgressTracker:
    """Placeholder until the service lands; see issue 3."""
