"""Reading a plate's own ``hcs_batch.toml`` and the pipeline it names (blocking I/O: run it on a lane thread).

The policy (what the file may say) is :mod:`hcs_batch.plate_settings`; this module only reads, and checks on real
paths that the pipeline file stays inside the plate folder (a symlink out is refused like ``..``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import PlateError
from ..plate_settings import MAX_SETTINGS_BYTES, SETTINGS_FILE, PlateSettings, is_inside, parse_plate_settings

__all__ = ["PlateFiles", "read_plate_files"]

_MAX_PIPELINE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateFiles:
    """A plate's settings and, when they name one, its pipeline's text."""

    settings: PlateSettings
    pipeline_text: str | None = None


def _read(path: str, limit: int, what: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise PlateError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise PlateError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise PlateError(f"{what} {path} is over {limit} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise PlateError(f"{what} {path} is not UTF-8 text") from None


def read_plate_files(plate_path: str, names: list[str]) -> PlateFiles | None:
    """The plate's settings (None when ``names``, its folder listing, has no ``hcs_batch.toml``).

    Raises:
        PlateError: the settings are unreadable or invalid, or the pipeline they name is missing, unreadable,
            or (after resolving symlinks) outside the plate folder.
    """
    if SETTINGS_FILE not in names:
        return None
    where = os.path.join(plate_path, SETTINGS_FILE)
    folder = os.path.realpath(plate_path)
    if not is_inside(folder, os.path.realpath(where)):
        raise PlateError(f"{where} is a link out of the plate folder; put the settings file itself in the folder")
    settings = parse_plate_settings(_read(where, MAX_SETTINGS_BYTES, "plate settings"), where=where)
    if settings.pipeline is None:
        return PlateFiles(settings=settings)
    pipeline_path = os.path.join(folder, settings.pipeline)
    if not is_inside(folder, os.path.realpath(pipeline_path)):
        raise PlateError(f"{where}: pipeline {settings.pipeline!r} leads out of the plate folder (a symlink?)")
    return PlateFiles(settings=settings, pipeline_text=_read(pipeline_path, _MAX_PIPELINE_BYTES, "plate pipeline"))
