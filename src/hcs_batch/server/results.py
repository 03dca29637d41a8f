"""Results on disk, every file written atomically (a temporary file in the same folder, then ``os.replace``).

Layout below the execution's output folder::

    <output>/<plate>/wells/<well>.json   one per finished well: {"artifact_id": ..., "rows": [...]}
    <output>/<plate>/wells.csv           one row per well, site and channel (written when the plate completes)
    <output>/<plate>/manifest.json       what ran, when, and how many wells were computed or skipped

A well file whose ``artifact_id`` matches the execution's artifact counts as done: a re-run of the same artifact
skips that well unless forced. A different artifact (other pipeline, other images) recomputes it.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ..errors import PlateError
from ..model import safe_plate_name

__all__ = [
    "BASE_COLUMNS",
    "Row",
    "atomic_write",
    "load_done_wells",
    "plate_output_dir",
    "well_result_path",
    "write_plate_results",
    "write_well_result",
]

Row = dict[str, Any]
BASE_COLUMNS = ("well", "site", "channel", "worker", "object_count", "mean_intensity")
"""``worker``: who computed the row (``local:<pid>`` for the local executor, the Dask worker's address for dask)."""

_json_encoder = msgspec.json.Encoder()


class _WellFile(msgspec.Struct, frozen=True):
    artifact_id: str
    rows: list[dict[str, Any]]


_well_decoder = msgspec.json.Decoder(_WellFile)


def plate_output_dir(output_dir: str | Path, plate_name: str) -> Path:
    """``<output_dir>/<plate_name>``, refusing names that would land anywhere else.

    Raises:
        PlateError: the plate name is not a single safe folder name.
    """
    base = Path(output_dir).absolute()
    target = base / safe_plate_name(plate_name)
    if target.parent != base:
        raise PlateError(f"plate name {plate_name!r} would write outside the output folder {base}")
    return target


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def well_result_path(plate_dir: Path, well: str) -> Path:
    return plate_dir / "wells" / f"{well}.json"


def write_well_result(plate_dir: Path, well: str, artifact_id: str, rows: list[Row]) -> None:
    """Record one finished well (atomically); creates the folders it needs."""
    path = well_result_path(plate_dir, well)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _json_encoder.encode(_WellFile(artifact_id=artifact_id, rows=rows)))


def load_done_wells(plate_dir: Path, wells: Iterable[str], artifact_id: str) -> dict[str, list[Row]]:
    """The rows of every well already finished for ``artifact_id``; unreadable or foreign files count as not done."""
    done: dict[str, list[Row]] = {}
    folder = plate_dir / "wells"
    if not folder.is_dir():
        return done
    for well in wells:
        try:
            data = (folder / f"{well}.json").read_bytes()
            found = _well_decoder.decode(data)
        except (OSError, msgspec.DecodeError):
            continue
        if found.artifact_id == artifact_id:
            done[well] = found.rows
    return done


def _csv_text(rows: Sequence[Row]) -> str:
    extra = sorted({key for row in rows for key in row} - set(BASE_COLUMNS))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*BASE_COLUMNS, *extra], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_plate_results(plate_dir: Path, rows: Sequence[Row], manifest: Mapping[str, Any]) -> None:
    """Write ``wells.csv`` (``BASE_COLUMNS`` first, then other measurements sorted) and ``manifest.json``."""
    plate_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(plate_dir / "wells.csv", _csv_text(rows).encode())
    atomic_write(plate_dir / "manifest.json", msgspec.json.format(_json_encoder.encode(dict(manifest))) + b"\n")
