"""Results on disk, every file written atomically (a temporary file in the same folder, then ``os.replace``).

Layout below the execution's output folder::

    <output>/<plate>/wells/<well>.parquet  one per finished well: its objects (written before the json)
    <output>/<plate>/wells/<well>.json     one per finished well: {"artifact_id": ..., "rows": [...]}
    <output>/<plate>/wells.csv             one row per well, site, channel and timepoint (at plate completion)
    <output>/<plate>/objects.parquet       one row per object, the wells' object files in well order (ditto)
    <output>/<plate>/manifest.json         what ran, when, and how many wells were computed or skipped

A well counts as done when its json and its object file both carry the execution's ``artifact_id`` (the object
file in its parquet metadata, key ``hcs_batch.artifact_id``): a re-run of the same artifact skips it unless
forced. A different artifact (other pipeline, other images) recomputes it. The object file is written before the
json, so a crash between the two leaves a pair that disagrees (or agrees and holds the same artifact's result):
never a done well with foreign objects.

``objects.parquet`` (pyarrow) columns: ``well, site, channel, timepoint`` (``channel`` is the segmentation
channel), then :mod:`hcs_batch.measure`'s columns. For every image (row of ``wells.csv``) the objects of its well,
site and timepoint number ``object_count``. A pipeline that makes no objects writes the four key columns and no
rows; an inline (all-noop) plate writes no ``objects.parquet``.
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
    "write_objects",
    "write_plate_results",
    "write_well_result",
]

Row = dict[str, Any]
BASE_COLUMNS = ("well", "site", "channel", "worker", "object_count", "mean_intensity", "timepoint")
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


_ARTIFACT_KEY = b"hcs_batch.artifact_id"


def _objects_table(tables: Sequence[Mapping[str, Any]]) -> Any:
    """One pyarrow table of the image sets' object columns (key columns first; missing columns become null)."""
    import pyarrow as pa

    keys = {"well": pa.string(), "site": pa.int64(), "channel": pa.int64(), "timepoint": pa.int64()}
    parts = [
        pa.Table.from_pydict({name: pa.array(values, type=keys.get(name)) for name, values in table.items()})
        for table in tables
    ]
    if not parts:
        return pa.schema(list(keys.items())).empty_table()
    return pa.concat_tables(parts, promote_options="default")


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_well_result(
    plate_dir: Path, well: str, artifact_id: str, rows: list[Row], objects: Sequence[Mapping[str, Any]] = ()
) -> None:
    """Record one finished well: its object file (the object columns of each image set in ``objects``), then its
    json; each atomically, both naming ``artifact_id`` (see the module docstring). Creates the folders it needs."""
    path = well_result_path(plate_dir, well)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _objects_table(objects)
    table = table.replace_schema_metadata({_ARTIFACT_KEY: artifact_id.encode()})
    _write_parquet(table, path.with_suffix(".parquet"))
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
        if found.artifact_id == artifact_id and _objects_artifact(folder / f"{well}.parquet") == artifact_id:
            done[well] = found.rows
    return done


def _objects_artifact(path: Path) -> str | None:
    """The artifact id an object file was written for; None when it is missing or unreadable."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):  # missing, or not a whole parquet file (pyarrow's errors are one of these)
        return None
    value = metadata.get(_ARTIFACT_KEY)
    return value.decode(errors="replace") if value is not None else None


def _csv_text(rows: Sequence[Row]) -> str:
    extra = sorted({key for row in rows for key in row} - set(BASE_COLUMNS))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*BASE_COLUMNS, *extra], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_objects(plate_dir: Path, wells: Iterable[str]) -> None:
    """Combine the object files of ``wells`` (in that order) into ``objects.parquet``, atomically.

    Raises:
        OSError: a well's object file is missing or unreadable (the message names it), or the write failed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for well in wells:
        path = plate_dir / "wells" / f"{well}.parquet"
        try:
            parts.append(pq.read_table(path))
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on a damaged file
            raise OSError(f"cannot read the object file {path}: {exc}") from None
    table = pa.concat_tables(parts, promote_options="default") if parts else _objects_table(())
    _write_parquet(table.replace_schema_metadata(None), plate_dir / "objects.parquet")


def write_plate_results(
    plate_dir: Path, rows: Sequence[Row], manifest: Mapping[str, Any], *, objects: bool = False
) -> None:
    """Write ``wells.csv`` (``BASE_COLUMNS`` first, then other measurements sorted), with ``objects`` the
    combined ``objects.parquet`` of the rows' wells, and last ``manifest.json``."""
    plate_dir.mkdir(parents=True, exist_ok=True)
    if objects:
        write_objects(plate_dir, dict.fromkeys(str(row["well"]) for row in rows))
    atomic_write(plate_dir / "wells.csv", _csv_text(rows).encode())
    atomic_write(plate_dir / "manifest.json", msgspec.json.format(_json_encoder.encode(dict(manifest))) + b"\n")
