"""Frozen records shared by every layer: plates, compile jobs, states. No I/O beyond path arithmetic."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import PlateError

__all__ = [
    "TERMINAL_STATES",
    "CompileJob",
    "CompiledPlate",
    "ExecutionState",
    "PlateRef",
    "PlateState",
    "safe_plate_name",
]


class ExecutionState(enum.StrEnum):
    """The life of one execution on the server; the last three are terminal.

    ``paused``: the execution is live but starts no new well until it is resumed (its running wells finish);
    it goes back to ``queued`` or ``running`` on resume. Like those two it is live, never terminal.
    """

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_EXECUTION


_TERMINAL_EXECUTION = frozenset({ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELLED})


class PlateState(enum.StrEnum):
    """The life of one plate in one batch, as a host shows it.

    ``idle → queued → compiling → compiled → running → completed | failed | cancelled``; a compile-only batch
    ends at ``compiled`` (or ``failed``/``cancelled``). Terminal states are final for the batch. A running plate
    whose execution is paused on the server shows ``paused`` (and ``running`` again once resumed).
    """

    IDLE = "idle"
    QUEUED = "queued"
    COMPILING = "compiling"
    COMPILED = "compiled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({PlateState.COMPLETED, PlateState.FAILED, PlateState.CANCELLED})

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")


def safe_plate_name(name: str) -> str:
    """Return ``name`` if it can be used as one folder below an output directory.

    Raises:
        PlateError: the name is empty, absolute, contains a path separator or ``..``, or odd characters.
    """
    if not _SAFE_NAME.match(name) or ".." in name:
        raise PlateError(
            f"plate name {name!r} cannot be used as an output folder name: use letters, digits, '.', '_', '-' "
            "or spaces, with no path separators and no '..'"
        )
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateRef:
    """A plate as the user named it: its folder and the name its results are filed under.

    Raises PlateError for a ``name`` that is not one safe folder name (:func:`safe_plate_name`).
    """

    name: str
    path: Path

    def __post_init__(self) -> None:
        # However a host builds it, a plate never carries a name that would write outside the output folder.
        safe_plate_name(self.name)

    @classmethod
    def from_path(cls, path: str | Path) -> PlateRef:
        """Name the plate after its folder. Raises PlateError for a name that would escape the output folder."""
        p = Path(path).expanduser().absolute()
        return cls(name=safe_plate_name(p.name), path=p)


@dataclass(frozen=True, slots=True, kw_only=True)
class CompileJob:
    """One immutable compile unit (the seed's flow, step 2): a plate and the pipeline text it is compiled with."""

    plate: PlateRef
    pipeline_text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledPlate:
    """What compiling a plate produced; ``artifact_id`` is what an execution is submitted by."""

    plate: PlateRef
    artifact_id: str
    pipeline_text: str
    wells: int
    sites: int
    channels: int
    steps: tuple[str, ...]
    server_instance: str = ""
    """The server instance that holds the artifact; another instance must compile again."""
    config: tuple[tuple[str, str], ...] = ()
    """The compile config it was compiled with (``layout``, ``projection``, ...)."""
    warnings: tuple[str, ...] = ()
    """What the plate's layout reported: ignored files, images missing against its promise, unreadable parts."""
    pipeline: str = ""
    """The name of the pipeline the plate compiled with (its own, when its ``hcs_batch.toml`` names one)."""
