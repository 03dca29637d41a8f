"""Results on disk, every file written atomically (a temporary file in the same folder, then ``os.replace``).

Layout below the execution's output folder::

    <output>/<plate>/wells/<well>.parquet  one per finished well: its objects (written before the json)
    <output>/<plate>/wells/<well>.json     one per finished well: {"well_key": ..., "rows": [...]}
    <output>/<plate>/wells.csv             one row per well, site, channel and timepoint (at plate completion)
    <output>/<plate>/objects.parquet       one row per object, the wells' object files in well order (ditto)
    <output>/<plate>/manifest.json         what ran (``execution_id``), when, how many wells were computed, reused
                                           or failed (``failed_wells``), and the sha256 of the files above

``wells.csv``, ``objects.parquet`` and ``manifest.json`` are one set describing one execution: all are written in
full to temporary files first (a full disk fails there, leaving the previous set untouched), then the old manifest
is removed and the files are renamed into place, manifest last (it holds ``wells_csv_sha256`` and
``objects_parquet_sha256``). So a reader never sees a partial file, nor a table with another execution's manifest;
files without a ``manifest.json`` (only if the process died between two renames) are an unfinished write. A plate
without objects (an inline plan) removes an ``objects.parquet`` an earlier run left, so no stale one stays.

A well counts as done when its json and its object file both carry the well's key (``Plan.well_key``: the hash
of the pipeline, the config and the well's images with their sizes and modification times; the object file holds
it in its parquet metadata, key ``hcs_batch.well_key``): a re-run reuses it unless forced. Another pipeline, or a
changed image of that well, recomputes it. The object file is written before the json, so a crash between the
two leaves a pair that disagrees (or agrees and holds that key's result): never a done well with foreign
objects.

``objects.parquet`` (pyarrow) columns: ``well, site, channel, timepoint`` (``channel`` is the segmentation
channel), then :mod:`hcs_batch.measure`'s columns. For every image (row of ``wells.csv``) the objects of its well,
site and timepoint number ``object_count``. A pipeline that makes no objects writes the four key columns and no
rows; an inline (all-noop) plate writes no ``objects.parquet``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    "objects_table",
    "plate_output_dir",
    "read_well_rows",
    "well_result_path",
    "write_plate_results",
    "write_well_result",
]

Row = dict[str, Any]
BASE_COLUMNS = ("plate", "well", "site", "channel", "object_count", "mean_intensity", "timepoint", "file", "worker")
"""The first columns of ``wells.csv``; docs/output.md defines every column (``worker``: who computed the row,
``local:<pid>`` for the local executor, the Dask worker's address for dask)."""

_json_encoder = msgspec.json.Encoder()


class _WellFile(msgspec.Struct, frozen=True):
    well_key: str
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


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def _temp_beside(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` on a fresh temporary file name beside ``path``; returns that file. A full disk fails here
    (ext4 and XFS reserve the space at ``write``), before anything final is touched; a failed write leaves no
    temporary file. Not fsynced: the files are whole for every reader, but durability across a power cut is not
    promised (it cost ~1 ms a plate)."""
    tmp = _temp_name(path)
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _put_in_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path`` (readers see the old file or the whole new one); on failure ``tmp`` is removed."""
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` in full to a fresh temporary file beside ``path`` (see :func:`_temp_beside`); returns it."""
    return _temp_beside(path, lambda tmp: tmp.write_bytes(data))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    _put_in_place(_write_temp(path, data), path)


def well_result_path(plate_dir: Path, well: str) -> Path:
    return plate_dir / "wells" / f"{well}.json"


_KEY = b"hcs_batch.well_key"


def objects_table(tables: Sequence[Mapping[str, Any]]) -> Any:
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


def _write_parquet_temp(table: Any, path: Path) -> Path:
    """Write ``table`` in full to a fresh temporary file beside ``path`` (see :func:`_temp_beside`); returns it."""
    import pyarrow.parquet as pq

    return _temp_beside(path, lambda tmp: pq.write_table(table, tmp))


def _write_parquet(table: Any, path: Path) -> None:
    _put_in_place(_write_parquet_temp(table, path), path)


def write_well_result(
    plate_dir: Path, well: str, well_key: str, rows: list[Row], objects: Sequence[Mapping[str, Any]] = ()
) -> None:
    """Record one finished well: its object file (the object columns of each image set in ``objects``), then its
    json; each atomically, both naming ``well_key`` (see the module docstring). Creates the folders it needs."""
    path = well_result_path(plate_dir, well)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = objects_table(objects)
    table = table.replace_schema_metadata({_KEY: well_key.encode()})
    _write_parquet(table, path.with_suffix(".parquet"))
    atomic_write(path, _json_encoder.encode(_WellFile(well_key=well_key, rows=rows)))


def load_done_wells(plate_dir: Path, keys: Mapping[str, str]) -> dict[str, list[Row]]:
    """The rows of every well of ``keys`` (well -> its key) already finished with that key; unreadable files,
    files of another key (changed images, another pipeline) or of an older format count as not done."""
    done: dict[str, list[Row]] = {}
    folder = plate_dir / "wells"
    if not folder.is_dir():
        return done
    for well, key in keys.items():
        rows = read_well_rows(plate_dir, well, key)
        if rows is not None and _objects_key(folder / f"{well}.parquet") == key:
            done[well] = rows
    return done


def read_well_rows(plate_dir: Path, well: str, well_key: str) -> list[Row] | None:
    """The rows in ``well``'s json when it names ``well_key``; None when it is missing, unreadable or of another
    key. Its object file is not looked at (:func:`load_done_wells` checks both): for a reader that has just been
    told the well was written, e.g. by a Dask task that finished."""
    try:
        found = _well_decoder.decode(well_result_path(plate_dir, well).read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    return found.rows if found.well_key == well_key else None


def _objects_key(path: Path) -> str | None:
    """The well key an object file was written for; None when it is missing or unreadable."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):  # missing, or not a whole parquet file (pyarrow's errors are one of these)
        return None
    value = metadata.get(_KEY)
    return value.decode(errors="replace") if value is not None else None


def _csv_text(plate: str, rows: Sequence[Row]) -> str:
    extra = sorted({key for row in rows for key in row} - set(BASE_COLUMNS))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*BASE_COLUMNS, *extra], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "plate": plate} for row in rows)
    return out.getvalue()


def _objects_temp(plate_dir: Path, wells: Iterable[str]) -> Path:
    """Combine the object files of ``wells`` (in that order) into a temporary file beside ``objects.parquet``;
    returns its path.

    Raises:
        OSError: a well's object file is missing or unreadable (the message names it), or the write failed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for well in wells:
        path = plate_dir / "wells" / f"{well}.parquet"
        try:
            # ParquetFile.read, one thread: ~0.9 ms a well file against ~1.7 ms for read_table (the dataset
            # machinery and a thread pool per small file); on the plate's critical path, after its last well.
            parts.append(pq.ParquetFile(path).read(use_threads=False))
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on a damaged file
            raise OSError(f"cannot read the object file {path}: {exc}") from None
    table = pa.concat_tables(parts, promote_options="default") if parts else objects_table(())
    return _write_parquet_temp(table.replace_schema_metadata(None), plate_dir / "objects.parquet")


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_plate_results(
    plate_dir: Path,
    rows: Sequence[Row],
    manifest: Mapping[str, Any],
    *,
    objects: bool = False,
    objects_file: tuple[Path, str] | None = None,
) -> None:
    """Write ``wells.csv`` (``BASE_COLUMNS`` first, ``plate`` from ``manifest["plate"]``, then other measurements
    sorted), with ``objects`` the combined ``objects.parquet`` of the rows' wells, and ``manifest.json`` as one set
    (see the module docstring); the manifest gains ``wells_csv_sha256`` (and ``objects_parquet_sha256``).

    ``objects_file`` is that combination already made (a temporary file in ``plate_dir`` and its SHA-256, from
    :class:`.plate_objects.ObjectsFile`): it is renamed into place instead of combining the well files now, or
    removed when the set cannot be written.

    Raises:
        OSError: e.g. a full disk, or an unreadable object file; then the previous set (if any) is left as it was
            and no temporary file stays.
    """
    objects_path, manifest_path = plate_dir / "objects.parquet", plate_dir / "manifest.json"
    temps: list[tuple[Path, Path]] = []  # (temporary file, final name), in renaming order
    if objects_file is not None:
        temps.append((objects_file[0], objects_path))
    try:
        plate_dir.mkdir(parents=True, exist_ok=True)
        table = _csv_text(str(manifest.get("plate", plate_dir.name)), rows).encode()
        document = {**manifest, "wells_csv_sha256": hashlib.sha256(table).hexdigest()}
        temps.insert(0, (_write_temp(plate_dir / "wells.csv", table), plate_dir / "wells.csv"))
        if objects_file is not None:
            document["objects_parquet_sha256"] = objects_file[1]
        elif objects:
            objects_tmp = _objects_temp(plate_dir, dict.fromkeys(str(row["well"]) for row in rows))
            temps.append((objects_tmp, objects_path))
            document["objects_parquet_sha256"] = _sha256(objects_tmp)
        text = msgspec.json.format(_json_encoder.encode(document)) + b"\n"
        temps.append((_write_temp(manifest_path, text), manifest_path))
        manifest_path.unlink(missing_ok=True)  # from here on the old set is gone, and no mixed set can exist
        if not objects and objects_file is None:
            objects_path.unlink(missing_ok=True)
        for tmp, final in temps:
            os.replace(tmp, final)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
