"""Per-plate settings: the policy of a plate folder's own ``hcs_batch.toml`` (pure: no I/O here).

A plate folder may hold ``hcs_batch.toml``::

    pipeline = "my_pipeline.toml"    # optional: this plate runs this pipeline instead of the batch's
    [config]                         # optional: config entries that override the batch's for this plate
    objective = "20x"

``pipeline`` is a path relative to the plate folder and must stay inside it: absolute paths, ``~``, ``..``
components and (checked by the reader, on real paths) symlinks leading out are refused. Config values are
strings, numbers or booleans (kept as their text); they are merged over the batch's config and, like every
config entry and the pipeline text, go into the compile artifact id. Any other key is refused, so a typo is an
error and not a silently ignored setting.

The server reads the file when it compiles the plate (:mod:`hcs_batch.server.plate_files`), so the same rules
hold for a local and a remote plate, for the terminal and the window.
"""

from __future__ import annotations

import os.path
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath

from .errors import PlateError

__all__ = ["SETTINGS_FILE", "PlateSettings", "is_inside", "merged_config", "parse_plate_settings"]

SETTINGS_FILE = "hcs_batch.toml"
MAX_SETTINGS_BYTES = 64 * 1024
_KEYS = {"pipeline", "config"}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateSettings:
    """A plate's own settings: ``pipeline`` (relative to the plate folder, ``/``-separated) or None for the
    batch's; ``config`` overrides merged over the batch's config."""

    pipeline: str | None = None
    config: Mapping[str, str] = field(default_factory=dict)


def parse_plate_settings(text: str, *, where: str = SETTINGS_FILE) -> PlateSettings:
    """Parse and check the text of a plate's ``hcs_batch.toml`` (``where`` names it in errors).

    Raises:
        PlateError: not TOML, an unknown key, a ``pipeline`` that is not a relative path inside the plate
            folder, a config value that is not a string, number or boolean.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlateError(f"{where} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise PlateError(f"{where}: unknown setting {unknown[0]!r}; a plate's settings are 'pipeline' and [config]")
    pipeline = data.get("pipeline")
    if pipeline is not None:
        pipeline = _relative_inside(pipeline, where)
    raw_config = data.get("config", {})
    if not isinstance(raw_config, dict):
        raise PlateError(f"{where}: 'config' must be a table ([config] with key = value lines)")
    config: dict[str, str] = {}
    for key, value in raw_config.items():
        if isinstance(value, bool):
            config[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            config[key] = str(value)
        else:
            raise PlateError(f"{where}: config {key!r} must be a string, number or boolean, got {type(value).__name__}")
    return PlateSettings(pipeline=pipeline, config=config)


def _relative_inside(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PlateError(f"{where}: 'pipeline' must be a file name relative to the plate folder, e.g. \"p.toml\"")
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or value.startswith(("~", "\\")):
        raise PlateError(f"{where}: pipeline {value!r} must be relative to the plate folder, not an absolute path")
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        raise PlateError(f"{where}: pipeline {value!r} must stay inside the plate folder ('..' is not allowed)")
    clean = [part for part in parts if part not in ("", ".")]
    if not clean:
        raise PlateError(f"{where}: 'pipeline' must name a file inside the plate folder")
    return "/".join(clean)


def merged_config(batch: Mapping[str, str], settings: PlateSettings | None) -> dict[str, str]:
    """The batch's config with the plate's overrides on top."""
    merged = dict(batch)
    if settings is not None:
        merged.update(settings.config)
    return merged


def is_inside(folder: str, path: str) -> bool:
    """Whether ``path`` is ``folder`` or below it; both must already be real (symlink-free, absolute) paths."""
    try:
        return os.path.commonpath([folder, path]) == folder
    except ValueError:  # different drives, or one relative
        return False
