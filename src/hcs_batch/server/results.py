"""Results on disk, every file written atomically (a temporary file in the same folder, then ``os.replace``).

Layout below the execution's output folder::

    <output>/<plate>/wells/<well>.json   one per finished well: {"artifact_id": ..., "rows": [...]}
    <output>/<plate>/wells.csv           one row per well, site and channel of the wells that finished
    <output>/<plate>/manifest.json       what ran (``execution_id``), when, how many wells were computed, skipped
                                         or failed (``failed_wells``), and the sha256 of its ``wells.csv``

``wells.csv`` and ``manifest.json`` are a pair describing one execution: both are written in full to temporary
files first (a full disk fails there, leaving the previous pair untouched), then the old manifest is removed and
both are renamed into place, manifest last. So a reader never sees a partial file, nor a table with another
execution's manifest; a ``wells.csv`` without a ``manifest.json`` (only if the process died between two renames)
is an unfinished write.

A well file whose ``artifact_id`` matches the execution's artifact counts as done: a re-run of the same artifact
skips that well unless forced. A different artifact (other pipeline, other images) recomputes it.
"""

from __future__ import annotations

import csv
import hashlib
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
BASE_COLUMNS = ("well", "site", "channel", "object_count", "mean_intensity")

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


def _write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` in full to a fresh temporary file beside ``path``; returns its path. A full disk fails here
    (ext4 and XFS reserve the space at ``write``), before anything final is touched. Not fsynced: the files are
    whole for every reader, but durability across a power cut is not promised (it cost ~1 ms a plate)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    tmp = _write_temp(path, data)
    try:
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
    """Write ``wells.csv`` (``BASE_COLUMNS`` first, then other measurements sorted) and ``manifest.json`` as one
    pair (see the module docstring); the manifest gains ``wells_csv_sha256``.

    Raises:
        OSError: e.g. a full disk; then the previous pair (if any) is left as it was and no temporary file stays.
    """
    plate_dir.mkdir(parents=True, exist_ok=True)
    table = _csv_text(rows).encode()
    document = {**manifest, "wells_csv_sha256": hashlib.sha256(table).hexdigest()}
    table_path, manifest_path = plate_dir / "wells.csv", plate_dir / "manifest.json"
    table_tmp = _write_temp(table_path, table)
    try:
        manifest_tmp = _write_temp(manifest_path, msgspec.json.format(_json_encoder.encode(document)) + b"\n")
    except BaseException:
        table_tmp.unlink(missing_ok=True)
        raise
    try:
        manifest_path.unlink(missing_ok=True)  # from here on the old pair is gone, and no mixed pair can exist
        os.replace(table_tmp, table_path)
        os.replace(manifest_tmp, manifest_path)
    finally:
        table_tmp.unlink(missing_ok=True)
        manifest_tmp.unlink(missing_ok=True)
