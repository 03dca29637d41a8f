"""Compile: check a pipeline against its step functions and a plate folder, and freeze the plan.

Each step's ``module:function`` is imported (on the server) and its parameters are bound against
``inspect.signature`` (the working image fills the first positional parameter; ``raw`` is supplied by the
executor, never by the pipeline). Parameters annotated with a simple type (``int``, ``float``, ``str``, ``bool``,
``list``, ``dict``, their unions with ``None``) are type-checked; other annotations are trusted. A parameter
annotated ``Annotated[float, Range(ge=0)]`` (:class:`hcs_batch.steps.Range`) is range-checked here, at compile,
not on the first image. Errors name the pipeline file and line (``nucleus.toml:12: step 2 (...)``) and suggest
the nearest step or parameter name (``did you mean 'gaussian_blur'?``).

The artifact id is the sha256 of the plate's image index, the images' content identity (sizes and modification
times, :mod:`.identity`), the plate name, the pipeline text and the config, so compiling the same thing twice gives
the same id and changed images give another. Each well also gets a key of its own (:attr:`Plan.well_keys`): the
same hash restricted to that well's images. Resume keys on it, so a well whose images changed is computed again
while the others are reused.

Config keys the compiler reads: ``layout`` (a layout name, see :mod:`.layouts`; read by the caller) and
``projection`` (how several z-planes become one: ``max`` by default, ``mean``, ``min`` or ``sum``).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PipelineError, PlateError
from ..model import safe_plate_name
from ..pipeline import StepSpec, parse_pipeline, step_line
from ..steps import Range, is_inline_noop, is_objects_step
from .images import PROJECTIONS
from .layouts.index import PlateIndex, WellImages

__all__ = ["CompiledPipeline", "CompiledStep", "Plan", "WellImages", "compile_pipeline", "compile_plate"]

WorkerStep = tuple[str, dict[str, Any], bool]
"""A step as worker processes receive it: (``module:function``, params, wants_raw). Plain data only."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledStep:
    """A checked step: its function reference, display name, parameters, whether it takes ``raw`` and whether
    its array result is the segmentation (:func:`hcs_batch.steps.makes_objects`)."""

    func: str
    name: str
    params: Mapping[str, Any]
    wants_raw: bool
    makes_objects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A compiled plate: everything an execution needs, frozen. ``inline``: every step is a marked noop.

    ``segment_channel``: the channel the steps run on when a step makes objects (then every channel is measured
    in them); otherwise the steps run on every channel's image.
    ``well_images`` is the layout's index (plain data, sent to workers well by well); ``sites``, ``channels``,
    ``timepoints`` and ``z_planes`` are counts; ``warnings`` what the layout reported (also in the compile reply).
    """

    artifact_id: str
    plate_name: str
    plate_path: str
    pipeline_name: str
    wells: tuple[str, ...]
    well_images: Mapping[str, WellImages]
    sites: int
    channels: int
    steps: tuple[CompiledStep, ...]
    worker_steps: tuple[WorkerStep, ...]
    inline: bool
    segment_channel: int = 1
    layout: str = "flat"
    timepoints: int = 1
    z_planes: int = 1
    projection: str = "max"
    channel_names: Mapping[int, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    image_metadata: Mapping[str, Any] = field(default_factory=dict)
    well_keys: Mapping[str, str] = field(default_factory=dict)
    """Per well: the hash of the pipeline, config, plate and that well's images with their content identity."""

    def well_key(self, well: str) -> str:
        """What a finished well's result files carry; a well is reused only when its key matches."""
        return self.well_keys.get(well, self.artifact_id)


_SIMPLE: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
    list: (list,),
    dict: (dict,),
}


class _StepProblem(PipelineError):
    """A step's mistake; ``key`` is the parameter it is about (for the line number), when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _ranges(annotation: Any) -> list[Range]:
    if typing.get_origin(annotation) is typing.Annotated:
        return [m for m in annotation.__metadata__ if isinstance(m, Range)]
    return []


def _accepted_types(annotation: Any) -> tuple[type, ...] | None:
    """The runtime types a simple annotation accepts, or None when we do not check it."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        return (origin,)
    if origin in (typing.Union, types.UnionType):
        accepted: list[type] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                accepted.append(type(None))
                continue
            sub = _accepted_types(arg)
            if sub is None:
                return None
            accepted.extend(sub)
        return tuple(accepted)
    return None


def _type_ok(value: Any, accepted: tuple[type, ...]) -> bool:
    # bool is an int subclass, but `sigma = true` is a mistake worth naming.
    if isinstance(value, bool) and bool not in accepted:
        return False
    return isinstance(value, accepted)


@functools.lru_cache(maxsize=256)
def _signature_info(func: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable annotations: bind-only checking
        hints = {}
    return signature, hints


def _resolve(step: StepSpec) -> Callable[..., Any]:
    module_name, _, attr = step.func.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:
        raise PipelineError(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, attr, None)
    if func is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise PipelineError(f"module {module_name!r} has no function {attr!r}{_did_you_mean(attr, names)}")
    if not callable(func):
        raise PipelineError(f"{step.func} is not a function")
    return typing.cast(Callable[..., Any], func)


def _check_step(step: StepSpec) -> tuple[CompiledStep, bool]:
    """Import and check one step. Raises PipelineError (without the step's position: the caller adds it)."""
    func = _resolve(step)
    try:
        signature, hints = _signature_info(func)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"cannot inspect the signature of {step.func}: {exc}") from None
    parameters = signature.parameters
    if "raw" in step.params:
        raise PipelineError("parameter 'raw' is reserved: the server passes the raw image to steps that declare it")
    wants_raw = "raw" in parameters and parameters["raw"].kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in step.params:
        if name not in parameters and not takes_kwargs:
            allowed = [p for p in parameters if p != "raw"][1:]
            raise _StepProblem(
                f"unknown parameter {name!r}{_did_you_mean(name, allowed)} "
                f"({step.func} takes {', '.join(allowed) or 'no parameters'})",
                name,
            )
    extra = {"raw": None} if wants_raw else {}
    try:
        signature.bind(None, **step.params, **extra)
    except TypeError as exc:
        raise PipelineError(f"parameters do not fit {step.func}{signature}: {exc}") from None
    for name, value in step.params.items():
        hint = hints.get(name, inspect.Parameter.empty)
        accepted = _accepted_types(hint)
        if accepted is not None and not _type_ok(value, accepted):
            wanted = " or ".join(t.__name__ for t in accepted)
            raise _StepProblem(f"parameter {name!r} must be {wanted}, got {type(value).__name__} {value!r}", name)
        for bound in _ranges(hint):
            problem = bound.check(value)
            if problem:
                raise _StepProblem(f"parameter {name!r} {problem}", name)
    objects = is_objects_step(func)
    compiled = CompiledStep(
        func=step.func, name=step.name, params=dict(step.params), wants_raw=wants_raw, makes_objects=objects
    )
    return compiled, is_inline_noop(func)


CompiledPipeline = tuple[str, tuple[CompiledStep, ...], bool, int]
"""(pipeline name, checked steps, every step is an inline noop, segment channel)."""


def compile_pipeline(text: str, source: str = "<pipeline>") -> CompiledPipeline:
    """Parse and check a pipeline: (name, steps, all steps are inline noops, segment channel). Imports the steps.

    Raises:
        PipelineError: unreadable TOML, an unknown module or function, a bad parameter or one out of its declared
            range; the message names the pipeline file and line, the step (number and function) and the
            parameter, and the nearest name when one is close.
    """
    spec = parse_pipeline(text, source=source)
    compiled: list[CompiledStep] = []
    inline = True
    for index, step in enumerate(spec.steps, start=1):
        try:
            checked, noop = _check_step(step)
        except PipelineError as exc:
            line = step_line(text, index, getattr(exc, "key", None) or "func")
            where = f"{source}:{line}" if line is not None else f"pipeline {source}"
            raise PipelineError(f"{where}: step {index} ({step.func}): {exc}") from None
        compiled.append(checked)
        inline = inline and noop
    return spec.name, tuple(compiled), inline, spec.segment_channel


def _base_payload(index: PlateIndex, plate_name: str, pipeline_text: str, config: Mapping[str, str]) -> str:
    payload = {
        "plate": index.path,
        "layout": index.layout,
        "plate_name": plate_name,
        "pipeline": pipeline_text,
        # The file's name only labels error messages: the same pipeline text from another file is the same work.
        "config": sorted((k, v) for k, v in config.items() if k != "pipeline_file"),
    }
    return json.dumps(payload, separators=(",", ":"))


def artifact_id_for(
    index: PlateIndex,
    plate_name: str,
    pipeline_text: str,
    config: Mapping[str, str],
    identity: Mapping[str, str] | None = None,
) -> str:
    """The content hash (sha256 hex) of what a compile depends on; ``identity``: :func:`.identity.content_identity`."""
    payload = [
        _base_payload(index, plate_name, pipeline_text, config),
        sorted(index.wells.items()),
        sorted((identity or {}).items()),
    ]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _well_keys(
    index: PlateIndex, plate_name: str, pipeline_text: str, config: Mapping[str, str], identity: Mapping[str, str]
) -> dict[str, str]:
    base = _base_payload(index, plate_name, pipeline_text, config)
    keys: dict[str, str] = {}
    for well, images in index.wells.items():
        payload = json.dumps([base, well, images, identity.get(well, "")], separators=(",", ":"))
        keys[well] = hashlib.sha256(payload.encode()).hexdigest()
    return keys


def compile_plate(
    index: PlateIndex,
    plate_name: str,
    pipeline_text: str,
    config: Mapping[str, str],
    pipeline: CompiledPipeline,
    identity: Mapping[str, str] | None = None,
) -> Plan:
    """Freeze the plan of an indexed plate and a checked pipeline (no I/O: cheap enough for the Trio thread).

    ``pipeline`` is what :func:`compile_pipeline` returned for ``pipeline_text``; ``identity`` the images' content
    identity per well (:func:`.identity.content_identity`; None for a pipeline that reads no image, an inline one).

    Raises:
        PlateError: an unsafe plate name, an unknown ``projection`` in ``config``, or a segmenting pipeline whose
            ``segment_channel`` the plate lacks.
    """
    safe_plate_name(plate_name)
    projection = config.get("projection", "max")
    if projection not in PROJECTIONS:
        raise PlateError(f"unknown projection {projection!r}; choose one of {', '.join(PROJECTIONS)}")
    pipeline_name, steps, inline, segment_channel = pipeline
    if any(s.makes_objects for s in steps) and segment_channel not in index.channels:
        have = ", ".join(str(c) for c in index.channels)
        raise PlateError(
            f"plate {plate_name}: the pipeline segments channel {segment_channel} (segment_channel) but the plate "
            f"has channel(s) {have}; set segment_channel in the pipeline to the nuclear stain's channel"
        )
    well_keys = _well_keys(index, plate_name, pipeline_text, config, identity) if identity is not None else {}
    return Plan(
        artifact_id=artifact_id_for(index, plate_name, pipeline_text, config, identity),
        plate_name=plate_name,
        plate_path=index.path,
        pipeline_name=pipeline_name,
        wells=tuple(index.wells),
        well_images=index.wells,
        sites=len(index.sites),
        channels=len(index.channels),
        steps=steps,
        worker_steps=tuple((s.func, dict(s.params), s.wants_raw) for s in steps),
        inline=inline,
        segment_channel=segment_channel,
        layout=index.layout,
        timepoints=len(index.timepoints),
        z_planes=index.z_planes,
        projection=projection,
        channel_names=index.channel_names,
        warnings=index.warnings,
        image_metadata=index.metadata,
        well_keys=well_keys,
    )
