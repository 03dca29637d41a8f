"""hcs_batch: a Trio-native batch workflow service for high-content-screening plates.

The public API is what ``__all__`` lists; everything else is private.
"""

from __future__ import annotations

from .client import ConnectionLost, EventGap, ExecutionBackend, ServerConnection, open_connection
from .embedded import open_backend
from .errors import (
    ArtifactNotFoundError,
    BatchAlreadyRunningError,
    BatchError,
    ConnectionClosedError,
    ExecutionNotFoundError,
    HcsBatchError,
    InputError,
    PipelineError,
    PlateError,
    ProtocolError,
    RemoteError,
    SecurityError,
    ServerLostError,
    ServerRestartedError,
    ServerShutDownError,
    ServerUnreachableError,
    TransportError,
)
from .host import BatchHost
from .model import TERMINAL_STATES, CompiledPlate, CompileJob, ExecutionState, PlateRef, PlateState
from .progress import ProgressTracker
from .service import BatchKind, BatchState, BatchSummary, BatchWorkflowService, PlateOutcome

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
    "ServerShutDownError",
    "ServerUnreachableError",
    "TransportError",
    "open_backend",
    "open_connection",
]
