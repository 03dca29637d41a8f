"""Executors: where a plan's wells run. :class:`Executor` is an execution's life (written once); a
:class:`WellRunner` computes its wells: :mod:`.local` (worker processes) or :mod:`.dask` (a Dask cluster, imported
only when asked for).
"""

from .base import Executor
from .local import LocalRunner, default_workers, open_worker_context
from .runner import WellRunner, open_well_runner

__all__ = ["Executor", "LocalRunner", "WellRunner", "default_workers", "open_well_runner", "open_worker_context"]
