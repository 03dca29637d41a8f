"""Compile: check a pipeline against its step functions and a plate folder, and freeze the plan.

Each step's ``module:function`` is first checked against the server's :class:`~.allowlist.StepAllowlist` (a
refused module is never imported), then imported (on the server) and its parameters are bound against
``inspect.signature`` (the working image fills the first positional parameter; ``raw`` is supplied by the
executor, never by the pipeline). Parameters annotated with a simple type (``int``, ``float``, ``str``, ``bool``,
``list``, ``dict``, their unions with ``None``) are type-checked; other annotations are trusted.

The artifact id is the sha256 of the plate listing, the plate name, the pipeline text and the config, so compiling
the same thing twice gives the same id.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import PipelineError
from ..model import safe_plate_name
from ..pipeline import StepSpec, parse_pipeline
from ..steps import is_inline_noop
from .allowlist import StepAllowlist
from .plates import PlateListing

__all__ = ["CompiledPipeline", "CompiledStep", "Plan", "compile_pipeline", "compile_plate"]

WorkerStep = tuple[str, dict[str, Any], bool]
"""A step as worker processes receive it: (``module:function``, params, wants_raw). Plain data only."""
WellImages = tuple[tuple[int, int, str], ...]
"""The images of one well: (site, channel, file name)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledStep:
    """A checked step: its function reference, display name, parameters and whether it takes ``raw``."""

    func: str
    name: str
    params: Mapping[str, Any]
    wants_raw: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A compiled plate: everything an execution needs, frozen. ``inline``: every step is a marked noop."""

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


_SIMPLE: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
    list: (list,),
    dict: (dict,),
}


def _accepted_types(annotation: Any) -> tuple[type, ...] | None:
    """The runtime types a simple annotation accepts, or None when we do not check it."""
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
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: bind-only checking
        hints = {}
    return signature, hints


def _resolve(step: StepSpec, allowlist: StepAllowlist) -> Callable[..., Any]:
    allowlist.check(step.func)  # before the import: a refused module's import-time code never runs
    module_name, _, attr = step.func.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:
        raise PipelineError(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, attr, None)
    if func is None:
        raise PipelineError(f"module {module_name!r} has no function {attr!r}")
    if not callable(func):
        raise PipelineError(f"{step.func} is not a function")
    allowlist.check_function(step.func, func)
    return typing.cast(Callable[..., Any], func)


def _check_step(step: StepSpec, allowlist: StepAllowlist) -> tuple[CompiledStep, bool]:
    """Import and check one step. Raises PipelineError (without the step's position: the caller adds it)."""
    func = _resolve(step, allowlist)
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
            raise PipelineError(
                f"unknown parameter {name!r}; {step.func} takes {', '.join(allowed) or 'no parameters'}"
            )
    extra = {"raw": None} if wants_raw else {}
    try:
        signature.bind(None, **step.params, **extra)
    except TypeError as exc:
        raise PipelineError(f"parameters do not fit {step.func}{signature}: {exc}") from None
    for name, value in step.params.items():
        accepted = _accepted_types(hints.get(name, inspect.Parameter.empty))
        if accepted is not None and not _type_ok(value, accepted):
            wanted = " or ".join(t.__name__ for t in accepted)
            raise PipelineError(f"parameter {name!r} must be {wanted}, got {type(value).__name__} {value!r}")
    compiled = CompiledStep(func=step.func, name=step.name, params=dict(step.params), wants_raw=wants_raw)
    return compiled, is_inline_noop(func)


CompiledPipeline = tuple[str, tuple[CompiledStep, ...], bool]
"""(pipeline name, checked steps, every step is an inline noop)."""


def compile_pipeline(text: str, source: str = "<pipeline>", allowlist: StepAllowlist | None = None) -> CompiledPipeline:
    """Parse and check a pipeline: (name, steps, all steps are inline noops). Imports the step modules, and only
    those ``allowlist`` allows (default: the built-in steps and the registered step packages).

    Raises:
        PipelineError: unreadable TOML, a module outside the allowlist (not imported), an unknown module or
            function, a bad parameter; the message names the pipeline, the step (number and function) and the
            parameter.
    """
    allowlist = allowlist if allowlist is not None else StepAllowlist.build()
    spec = parse_pipeline(text, source=source)
    # Check every step against the allowlist before importing any: a refused step later in the pipeline must
    # not let an earlier one's import-time code run either.
    for index, step in enumerate(spec.steps, start=1):
        try:
            allowlist.check(step.func)
        except PipelineError as exc:
            raise PipelineError(f"pipeline {source}: step {index} ({step.func}): {exc}") from None
    compiled: list[CompiledStep] = []
    inline = True
    for index, step in enumerate(spec.steps, start=1):
        try:
            checked, noop = _check_step(step, allowlist)
        except PipelineError as exc:
            raise PipelineError(f"pipeline {source}: step {index} ({step.func}): {exc}") from None
        compiled.append(checked)
        inline = inline and noop
    return spec.name, tuple(compiled), inline


def artifact_id_for(listing: PlateListing, plate_name: str, pipeline_text: str, config: Mapping[str, str]) -> str:
    """The content hash (sha256 hex) of what a compile depends on."""
    payload = {
        "plate": listing.path,
        "plate_name": plate_name,
        "images": [[im.well, im.site, im.channel, im.name] for im in listing.images],
        "pipeline": pipeline_text,
        "config": sorted(config.items()),
    }
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def compile_plate(
    listing: PlateListing,
    plate_name: str,
    pipeline_text: str,
    config: Mapping[str, str],
    pipeline: CompiledPipeline,
) -> Plan:
    """Freeze the plan of a discovered plate and a checked pipeline (no I/O: cheap enough for the Trio thread).

    ``pipeline`` is what :func:`compile_pipeline` returned for ``pipeline_text``.

    Raises:
        PlateError: an unsafe plate name.
    """
    safe_plate_name(plate_name)
    pipeline_name, steps, inline = pipeline
    per_well: dict[str, list[tuple[int, int, str]]] = {}
    for im in listing.images:
        per_well.setdefault(im.well, []).append((im.site, im.channel, im.name))
    return Plan(
        artifact_id=artifact_id_for(listing, plate_name, pipeline_text, config),
        plate_name=plate_name,
        plate_path=listing.path,
        pipeline_name=pipeline_name,
        wells=listing.wells,
        well_images=types.MappingProxyType({well: tuple(images) for well, images in per_well.items()}),
        sites=len(listing.sites),
        channels=len(listing.channels),
        steps=steps,
        worker_steps=tuple((s.func, dict(s.params), s.wants_raw) for s in steps),
        inline=inline,
    )
