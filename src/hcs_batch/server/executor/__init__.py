"""Executors: where a plan's wells run. :class:`Executor` is the seam (an execution's life, written once);
:class:`LocalExecutor` runs wells on worker processes.
"""

from .base import Executor
from .local import LocalExecutor, default_workers, open_worker_context

__all__ = ["Executor", "LocalExecutor", "default_workers", "open_worker_context"]
