"""The execution server: compile plates against pipelines, execute them, publish events.

Entry points: :func:`hcs_batch.server.serve.serve` (a long-running task for ``nursery.start``),
:func:`open_embedded_server` (a server inside the caller's Trio run) and ``hcs-batch serve``
(:mod:`hcs_batch.cli.serve`). The names below load lazily, so a worker process that imports
:mod:`hcs_batch.server.worker` pays for neither ZeroMQ nor the control plane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .control import ServerAddress
    from .serve import open_embedded_server, parse_bind

__all__ = ["ServerAddress", "open_embedded_server", "parse_bind"]


def __getattr__(name: str) -> Any:
    if name == "ServerAddress":
        from .control import ServerAddress

        return ServerAddress
    if name in ("open_embedded_server", "parse_bind"):
        from . import serve

        return getattr(serve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
