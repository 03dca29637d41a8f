"""The compile artifacts a server keeps: bounded in number, evicted by age."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ..errors import ArtifactNotFoundError
from .compiler import Plan

__all__ = ["ArtifactStore"]


class ArtifactStore:
    """Plans by artifact id. An artifact lives ``max_age`` seconds from its last compile; beyond ``max_items``
    the oldest go first. Executing an artifact does not extend its life. Not thread-safe: Trio thread only.
    """

    def __init__(
        self, *, max_items: int = 100_000, max_age: float = 24 * 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._plans: OrderedDict[str, tuple[float, Plan]] = OrderedDict()
        self._max_items = max_items
        self._max_age = max_age
        self._clock = clock

    def __len__(self) -> int:
        return len(self._plans)

    def put(self, plan: Plan) -> None:
        """Store ``plan`` (again): its age restarts, and the oldest artifacts beyond the bound are dropped."""
        self._plans[plan.artifact_id] = (self._clock(), plan)
        self._plans.move_to_end(plan.artifact_id)
        self.evict()

    def get(self, artifact_id: str) -> Plan:
        """The plan stored under ``artifact_id``.

        Raises:
            ArtifactNotFoundError: never compiled here, evicted, or expired.
        """
        self.evict()
        entry = self._plans.get(artifact_id)
        if entry is None:
            raise ArtifactNotFoundError(
                f"compile artifact {artifact_id} is unknown or expired on this server; compile the plate again"
            )
        return entry[1]

    def evict(self) -> None:
        """Drop artifacts older than ``max_age`` and the oldest beyond ``max_items``."""
        plans = self._plans
        while len(plans) > self._max_items:
            plans.popitem(last=False)
        horizon = self._clock() - self._max_age
        while plans:
            stored_at, _ = next(iter(plans.values()))
            if stored_at >= horizon:
                break
            plans.popitem(last=False)
