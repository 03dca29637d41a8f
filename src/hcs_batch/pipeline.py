"""Pipelines: an ordered list of steps in TOML, parsed into a frozen :class:`PipelineSpec`.

The file format::

    name = "nucleus_counter"          # optional; defaults to the file's stem or "pipeline"
    segment_channel = 1               # optional (default 1): the channel a segmenting step runs on

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
    "step_line",
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
    """A parsed pipeline: its name, its steps in order (at least one) and its segmentation channel.

    ``segment_channel`` matters only when a step makes objects (:func:`hcs_batch.steps.makes_objects`): the
    steps then run on that channel of every image set and every channel is measured inside the objects.
    """

    name: str
    steps: tuple[StepSpec, ...]
    segment_channel: int = 1


def parse_pipeline(text: str, *, source: str = "<pipeline>") -> PipelineSpec:
    """Parse pipeline TOML ``text``; ``source`` names it in error messages (a file path, or ``<pipeline>``).

    Raises:
        PipelineError: invalid TOML, no ``[[steps]]``, a step without a well-formed ``func``, a bad name.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"pipeline {source} is not valid TOML: {exc}") from None
    name = data.get("name", Path(source).stem if not source.startswith("<") else "pipeline")
    if not isinstance(name, str) or not name:
        raise PipelineError(f"pipeline {source}: 'name' must be a non-empty string")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PipelineError(f"pipeline {source} has no steps: add at least one [[steps]] table with func = 'module:fn'")
    unknown = sorted(set(data) - {"name", "steps", "segment_channel"})
    if unknown:
        raise PipelineError(
            f"pipeline {source}: unknown top-level key(s) {', '.join(unknown)} (allowed: name, segment_channel, steps)"
        )
    segment_channel = data.get("segment_channel", 1)
    if isinstance(segment_channel, bool) or not isinstance(segment_channel, int) or segment_channel < 1:
        raise PipelineError(
            f"pipeline {source}: 'segment_channel' must be a channel number >= 1, got {segment_channel!r}"
        )
    steps: list[StepSpec] = []
    for index, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict):
            raise PipelineError(f"pipeline {source}: step {index} must be a [[steps]] table")
        func = raw.get("func")
        if not isinstance(func, str) or not _FUNC.match(func):
            raise PipelineError(f'pipeline {source}: step {index} needs func = "module:function" (got {func!r})')
        params = {key: value for key, value in raw.items() if key != "func"}
        steps.append(StepSpec(func=func, params=params))
    return PipelineSpec(name=name, steps=tuple(steps), segment_channel=segment_channel)


_STEPS_HEADER = re.compile(r"^\s*\[\[\s*steps\s*\]\]")
_TABLE_HEADER = re.compile(r"^\s*\[")


def step_line(text: str, step: int, key: str | None = None) -> int | None:
    """The 1-based line of the ``step``-th ``[[steps]]`` table of pipeline ``text`` (1-based), or of its ``key``
    when given and found there; None when the text does not show it (e.g. an inline array of tables)."""
    lines = text.splitlines()
    seen = 0
    for number, line in enumerate(lines, start=1):
        if not _STEPS_HEADER.match(line):
            continue
        seen += 1
        if seen != step:
            continue
        if key is not None:
            pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
            for offset, body in enumerate(lines[number:], start=number + 1):
                if _TABLE_HEADER.match(body):
                    break
                if pattern.match(body):
                    return offset
        return number
    return None


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
    """The built-in nucleus counter (normalize, gaussian_blur, otsu_threshold on log intensities, split_touching)."""
    return _builtin("nucleus_counter.toml")


def noop_pipeline_text() -> str:
    """A one-step pipeline that does nothing; the server runs it inline, without worker processes."""
    return _builtin("noop.toml")
