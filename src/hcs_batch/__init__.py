"""hcs_batch: a Trio-native batch workflow service for high-content-screening plates.

The public API is what ``__all__`` lists; everything else is private.
"""

from __future__ import annotations

import typing as _typing
from importlib import import_module as _import_module

if _typing.TYPE_CHECKING:
    from .backend import ConnectionLost, EventGap, ExecutionBackend
    from .client.connection import ServerConnection, open_connection
    from .connect import open_backend
    from .errors import (
        ArtifactNotFoundError,
        BatchAlreadyRunningError,
        BatchError,
        ConnectionClosedError,
        ExecutionNotFoundError,
        HcsBatchError,
        InputError,
        PipelineError,
        PlateBusyError,
        PlateError,
        ProtocolError,
        RemoteError,
        SecurityError,
        ServerLostError,
        ServerRestartedError,
        ServerUnreachableError,
        TransportError,
    )
    from .model import TERMINAL_STATES, CompiledPlate, CompileJob, ExecutionState, PlateRef, PlateState
    from .workflow.host import BatchHost
    from .workflow.ledger import BatchKind, BatchState, BatchSummary, PlateOutcome
    from .workflow.progress import ProgressTracker
    from .workflow.service import BatchWorkflowService

__version__ = "0.1.0"

__all__ = [
    "TERMINAL_STATES",
    "ArtifactNotFoundError",
    "BatchAlreadyRunningError",
    "BatchError",
    "BatchHost",
    "BatchKind",
    "BatchState",
    "BatchSummary",
    "BatchWorkflowService",
    "CompileJob",
    "CompiledPlate",
    "ConnectionClosedError",
    "ConnectionLost",
    "EventGap",
    "ExecutionBackend",
    "ExecutionNotFoundError",
    "ExecutionState",
    "HcsBatchError",
    "InputError",
    "PipelineError",
    "PlateBusyError",
    "PlateError",
    "PlateOutcome",
    "PlateRef",
    "PlateState",
    "ProgressTracker",
    "ProtocolError",
    "RemoteError",
    "SecurityError",
    "ServerConnection",
    "ServerLostError",
    "ServerRestartedError",
    "ServerUnreachableError",
    "TransportError",
    "open_backend",
    "open_connection",
]

_HOMES: dict[str, str] = {
    "ArtifactNotFoundError": ".errors",
    "BatchAlreadyRunningError": ".errors",
    "BatchError": ".errors",
    "BatchHost": ".workflow.host",
    "BatchKind": ".workflow.ledger",
    "BatchState": ".workflow.ledger",
    "BatchSummary": ".workflow.ledger",
    "BatchWorkflowService": ".workflow.service",
    "CompileJob": ".model",
    "CompiledPlate": ".model",
    "ConnectionClosedError": ".errors",
    "ConnectionLost": ".backend",
    "EventGap": ".backend",
    "ExecutionBackend": ".backend",
    "ExecutionNotFoundError": ".errors",
    "ExecutionState": ".model",
    "HcsBatchError": ".errors",
    "InputError": ".errors",
    "PipelineError": ".errors",
    "PlateBusyError": ".errors",
    "PlateError": ".errors",
    "PlateOutcome": ".workflow.ledger",
    "PlateRef": ".model",
    "PlateState": ".model",
    "ProgressTracker": ".workflow.progress",
    "ProtocolError": ".errors",
    "RemoteError": ".errors",
    "SecurityError": ".errors",
    "ServerConnection": ".client.connection",
    "ServerLostError": ".errors",
    "ServerRestartedError": ".errors",
    "ServerUnreachableError": ".errors",
    "TERMINAL_STATES": ".model",
    "TransportError": ".errors",
    "open_backend": ".connect",
    "open_connection": ".client.connection",
}
"""Each public name -> the module that defines it, imported on first use: ``import hcs_batch`` loads nothing else,
and importing the model, the policy or a worker's step module loads neither ZeroMQ nor Qt."""


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
