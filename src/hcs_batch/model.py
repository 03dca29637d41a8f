"""Frozen records shared by every layer: plates, compile jobs, states. No I/O beyond path arithmetic."""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from .errors import PlateError

__all__ = [
    "TERMINAL_STATES",
    "CancelOutcome",
    "CompileJob",
    "CompiledPlate",
    "ExecutionState",
    "PlateRef",
    "PlateState",
    "cancel_each",
    "safe_plate_name",
]


class _LifeState(enum.StrEnum):
    """Base of the two state enums: both end in ``completed``, ``failed`` or ``cancelled``."""

    @property
    def is_terminal(self) -> bool:
        """``completed``, ``failed`` or ``cancelled``: final, never left again."""
        return self.value in _TERMINAL_VALUES


_TERMINAL_VALUES = frozenset({"completed", "failed", "cancelled"})


class ExecutionState(_LifeState):
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


class _HasExecutionState(Protocol):
    @property
    def state(self) -> ExecutionState: ...


_Execution = TypeVar("_Execution", bound=_HasExecutionState)

CancelOutcome = tuple[list[str], list[str], list[str]]
"""(cancelled, already terminal, unknown) execution ids: the answer to a cancel request."""


def cancel_each(
    execution_ids: Iterable[str], find: Callable[[str], _Execution | None], cancel: Callable[[_Execution], None]
) -> CancelOutcome:
    """Cancel exactly the named executions that are still live, and sort every id by what happened to it.

    ``find`` looks an id up (None: unknown); ``cancel`` is called once for each live execution, in the order
    named. A terminal execution is left as it is. Each list keeps the order the ids were named in.
    """
    cancelled: list[str] = []
    terminal: list[str] = []
    unknown: list[str] = []
    for execution_id in execution_ids:
        execution = find(execution_id)
        if execution is None:
            unknown.append(execution_id)
        elif execution.state.is_terminal:
            terminal.append(execution_id)
        else:
            cancel(execution)
            cancelled.append(execution_id)
    return cancelled, terminal, unknown


class PlateState(_LifeState):
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


TERMINAL_STATES = frozenset({PlateState.COMPLETED, PlateState.FAILED, PlateState.CANCELLED})

_MAX_NAME_BYTES = 255
"""The longest file name (in UTF-8 bytes) common file systems accept."""


def _unsafe_char(char: str) -> bool:
    # Cc: control characters (NUL, newline, escape...); Cs: undecodable bytes; Zl/Zp: line separators.
    return char in "/\\" or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")


def safe_plate_name(name: str) -> str:
    """Return ``name`` if it can be used as one folder below an output directory: any Unicode name
    (``Platte_Müller``, ``プレート1``) except empty ones, ones holding a path separator, ``..`` or a control
    character, ones starting with ``.`` (hidden or ``.``), and ones over 255 bytes.

    Raises:
        PlateError: the name cannot be one safe folder name.
    """
    if (
        not name
        or name.startswith(".")
        or ".." in name
        or any(_unsafe_char(char) for char in name)
        or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES
    ):
        raise PlateError(
            f"plate name {name!r} cannot be used as an output folder name: any name works except one with a path "
            "separator, '..', a control character or a leading '.'"
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
class CompiledPlate(CompileJob):
    """A compile job and what compiling it produced; ``artifact_id`` is what an execution is submitted by."""

    artifact_id: str
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
