"""Pipelines: an ordered list of steps in TOML, parsed into a frozen :class:`PipelineSpec`.

The file format::

    name = "nucleus_counter"          # optional; defaults to the file's stem or "pipeline"

    [[steps]]
    func = "hcs_batch.steps:gaussian_blur"   # "module:function", imported on the server at compile time
    sigma = 1.0                              # every other key is a keyword parameter of the step

Parsing checks the shape only (TOML syntax, ``func`` present and well formed, parameters are a table); whether
the step exists and takes those parameters is checked when the server compiles the pipeline
(:mod:`hcs_batch.server.compiler`). Every error is a :class:`~hcs_batch.errors.PipelineError` naming the file,
the step and the parameter.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import PipelineError

__all__ = [
    "PipelineSpec",
    "StepSpec",
    "default_pipeline_text",
    "load_pipeline_file",
    "noop_pipeline_text",
    "parse_pipeline",
]

_FUNC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSpec:
    """One step: ``func`` is ``"module:function"``; ``params`` its keyword parameters (do not mutate)."""

    func: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The function's name, as progress events report the step."""
        return self.func.rpartition(":")[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSpec:
    """A parsed pipeline: its name and its steps in order (at least one)."""

    name: str
    steps: tuple[StepSpec, ...]


def parse_pipeline(text: str, *, source: str = "<pipeline>") -> PipelineSpec:
    """Parse pipeline TOML ``text``; ``source`` names it in error messages (a file path, or ``<pipeline>``).

    Raises:
        PipelineError: invalid TOML, no ``[[steps]]``, a step without a well-formed ``func``, a bad name.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"pipeline {source} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise PipelineError(f"pipeline {source} nests arrays or tables too deeply to be a pipeline") from None
    name = data.get("name", Path(source).stem if not source.startswith("<") else "pipeline")
    if not isinstance(name, str) or not name:
        raise PipelineError(f"pipeline {source}: 'name' must be a non-empty string")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PipelineError(f"pipeline {source} has no steps: add at least one [[steps]] table with func = 'module:fn'")
    unknown = sorted(set(data) - {"name", "steps"})
    if unknown:
        raise PipelineError(f"pipeline {source}: unknown top-level key(s) {', '.join(unknown)} (allowed: name, steps)")
    steps: list[StepSpec] = []
    for index, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict):
            raise PipelineError(f"pipeline {source}: step {index} must be a [[steps]] table")
        func = raw.get("func")
        if not isinstance(func, str) or not _FUNC.match(func):
            raise PipelineError(f'pipeline {source}: step {index} needs func = "module:function" (got {func!r})')
        params = {key: value for key, value in raw.items() if key != "func"}
        steps.append(StepSpec(func=func, params=params))
    return PipelineSpec(name=name, steps=tuple(steps))


def load_pipeline_file(path: str | Path) -> str:
    """Read a pipeline file and check that it parses; return its text (what travels to the server).

    Raises:
        PipelineError: the file cannot be read, is not UTF-8, or is not a valid pipeline.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read pipeline file {p}: {exc}") from None
    parse_pipeline(text, source=str(p))
    return text


def _builtin(name: str) -> str:
    return resources.files("hcs_batch").joinpath("pipelines", name).read_text(encoding="utf-8")


def default_pipeline_text() -> str:
    """The built-in nucleus counter (normalize, gaussian_blur, otsu_threshold, count_objects, mean_intensity)."""
    return _builtin("nucleus_counter.toml")


def noop_pipeline_text() -> str:
    """A one-step pipeline that does nothing; the server runs it inline, without worker processes."""
    return _builtin("noop.toml")
