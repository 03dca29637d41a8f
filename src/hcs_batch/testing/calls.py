"""Records of :class:`~.backend.InMemoryBackend`: the requests it saw and the executions it simulates."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from ..model import ExecutionState
from ..protocol import ExecutionRecord, execution_record

__all__ = ["CompileCall", "ExecuteCall", "SimulatedExecution", "artifact_id_of", "fresh_error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileCall:
    """One compile request as the backend saw it; ``outcome`` is ``"ok"``, ``"failed"`` or ``"cancelled"``."""

    plate_name: str
    started_at: float
    ended_at: float
    outcome: str
    artifact_id: str | None = None
    error: Exception | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteCall:
    """One execute request: when it arrived, and the execution id it got or the error that rejected it."""

    artifact_id: str
    plate_name: str
    at: float
    execution_id: str | None = None
    error: Exception | None = None


class SimulatedExecution:
    """The state of one simulated execution."""

    __slots__ = (
        "artifact_id",
        "error",
        "execution_id",
        "finished_at",
        "output",
        "paused",
        "plate_name",
        "scope",
        "state",
        "submitted_at",
        "wells_done",
    )

    def __init__(self, *, execution_id: str, artifact_id: str, plate_name: str, output: str, now: float) -> None:
        self.execution_id = execution_id
        self.artifact_id = artifact_id
        self.plate_name = plate_name
        self.output = output
        self.state = ExecutionState.QUEUED
        self.error = ""
        self.submitted_at = now
        self.finished_at = 0.0
        self.wells_done = 0
        self.scope = trio.CancelScope()
        self.paused: trio.Event | None = None  # set while paused; set() on resume

    @property
    def shown(self) -> ExecutionState:
        """Its state as reported: ``paused`` while paused and not terminal."""
        return ExecutionState.PAUSED if self.paused is not None and not self.state.is_terminal else self.state

    def record(self, *, wells_total: int) -> ExecutionRecord:
        """What a status request reports of it."""
        return execution_record(self, state=self.shown, error=self.error, wells_total=wells_total)


def fresh_error(error: Exception) -> Exception:
    """A new exception like ``error``, so repeated raises do not share one traceback."""
    try:
        return type(error)(*error.args)
    except Exception:
        return error


def artifact_id_of(plate_name: str, pipeline: str, config: Mapping[str, str]) -> str:
    """The artifact id of a compile: the same for the same plate, pipeline and config."""
    digest = hashlib.sha256(repr((plate_name, pipeline, sorted(config.items()))).encode()).hexdigest()
    return f"art-{digest[:16]}"
