"""``objects.parquet`` combined while the wells finish (:class:`hcs_batch.server.plate_objects.ObjectsFile`): the
same table as combining the well files at the end, whatever order the wells end in; the end combines instead when
streaming cannot promise that; no temporary file stays behind.

Real well files, written by :func:`hcs_batch.server.results.write_well_result` as the workers write them.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hcs_batch.server import plate_objects, results
from hcs_batch.server.plate_objects import ObjectsFile

WELLS = [f"{row}{col:02d}" for row in "AB" for col in range(1, 7)]


def _table(well: str, count: int, *, extra: bool = False) -> dict[str, Any]:
    columns: dict[str, Any] = {
        "well": [well] * count,
        "site": [1] * count,
        "channel": [1] * count,
        "timepoint": [1] * count,
        "AreaShape_Area": [float(i + len(well)) for i in range(count)],
    }
    if extra:
        columns["Other"] = [1.5] * count
    return columns


def _plate(plate_dir: Path, counts: dict[str, int], *, extra: str = "") -> None:
    for well, count in counts.items():
        results.write_well_result(plate_dir, well, "key", [{"well": well}], [_table(well, count, extra=well == extra)])


def _at_end(plate_dir: Path, wells: list[str]) -> pa.Table:
    """What the end of a plate combines from the well files (the path taken without streaming)."""
    path = results._objects_temp(plate_dir, wells)
    try:
        return pq.read_table(path)
    finally:
        path.unlink()


def _temps(plate_dir: Path) -> list[str]:
    return sorted(p.name for p in plate_dir.glob(".*.tmp"))


def test_wells_ending_in_any_order_give_the_table_combined_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plate_objects, "ROW_GROUP_ROWS", 7)  # several row groups, the rest written at finish
    counts = {well: 1 + i % 4 for i, well in enumerate(WELLS)}
    counts["A03"] = 0  # a well without objects: no rows, its (null-typed) columns still count
    _plate(tmp_path, counts)
    failed = {"B02"}
    order = WELLS[:]
    random.Random(16).shuffle(order)
    objects = ObjectsFile(tmp_path, WELLS)
    for well in order:
        objects.add((well, well not in failed))
    built = objects.finish()
    assert built is not None
    path, digest = built
    assert path.parent == tmp_path and path.name.endswith(".tmp")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    streamed, expected = pq.read_table(path), _at_end(tmp_path, [w for w in WELLS if w not in failed])
    assert streamed.equals(expected) and streamed.schema.equals(expected.schema, check_metadata=True)
    assert "B02" not in streamed.column("well").to_pylist()
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    objects.discard()  # after finish: the file is the caller's now
    assert path.exists()


def test_a_well_with_other_columns_makes_the_end_combine(tmp_path: Path) -> None:
    _plate(tmp_path, dict.fromkeys(WELLS[:4], 3), extra="A03")
    objects = ObjectsFile(tmp_path, WELLS[:4])
    objects.add(("A01", True), ("A02", True))
    assert len(_temps(tmp_path)) == 1  # streaming has begun
    objects.add(("A03", True), ("A04", True))
    assert objects.finish() is None
    assert _temps(tmp_path) == []
    combined = _at_end(tmp_path, WELLS[:4])  # what the end writes instead: the promoted table
    assert combined.num_rows == 12 and "Other" in combined.column_names


def test_an_unreadable_well_file_makes_the_end_combine_and_report_it(tmp_path: Path) -> None:
    _plate(tmp_path, dict.fromkeys(WELLS[:3], 2))
    (tmp_path / "wells" / "A02.parquet").write_bytes(b"not parquet")
    objects = ObjectsFile(tmp_path, WELLS[:3])
    objects.add(("A01", True), ("A02", True), ("A03", True))
    assert objects.finish() is None and _temps(tmp_path) == []
    with pytest.raises(OSError, match="cannot read the object file"):
        results.write_plate_results(tmp_path, [{"well": w} for w in WELLS[:3]], {"plate": "p"}, objects=True)


def test_finish_before_every_well_ended_gives_nothing(tmp_path: Path) -> None:
    _plate(tmp_path, dict.fromkeys(WELLS[:3], 2))
    objects = ObjectsFile(tmp_path, WELLS[:3])
    objects.add(("A01", True), ("A03", True))
    assert objects.finish() is None and _temps(tmp_path) == []


def test_a_killed_executions_temporary_file_goes_when_the_next_one_begins(tmp_path: Path) -> None:
    _plate(tmp_path, dict.fromkeys(WELLS[:2], 2))
    stale = tmp_path / ".objects.parquet.0123456789ab.tmp"
    stale.write_bytes(b"half a file")
    other = tmp_path / ".wells.csv.0123456789ab.tmp"
    other.write_bytes(b"not ours")
    objects = ObjectsFile(tmp_path, WELLS[:2])
    objects.add(("A01", True))
    assert not stale.exists() and other.exists() and len(_temps(tmp_path)) == 2
    objects.discard()


def test_discard_removes_the_temporary_file_and_later_adds_write_nothing(tmp_path: Path) -> None:
    _plate(tmp_path, dict.fromkeys(WELLS[:3], 2))
    objects = ObjectsFile(tmp_path, WELLS[:3])
    objects.add(("A01", True))
    assert len(_temps(tmp_path)) == 1
    objects.discard()
    objects.add(("A02", True), ("A03", True))
    assert _temps(tmp_path) == [] and objects.finish() is None


def test_the_built_file_joins_the_set_and_goes_when_the_set_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plate(tmp_path, dict.fromkeys(WELLS[:2], 2))
    rows = [{"well": w, "site": 1, "channel": 1} for w in WELLS[:2]]

    def built() -> tuple[Path, str]:
        objects = ObjectsFile(tmp_path, WELLS[:2])
        objects.add(("A01", True), ("A02", True))
        made = objects.finish()
        assert made is not None
        return made

    path, digest = built()
    results.write_plate_results(tmp_path, rows, {"plate": "p"}, objects=True, objects_file=(path, digest))
    assert not path.exists() and _temps(tmp_path) == []
    assert hashlib.sha256((tmp_path / "objects.parquet").read_bytes()).hexdigest() == digest
    before = (tmp_path / "objects.parquet").read_bytes()

    path, digest = built()
    real = results._write_temp

    def full_disk(target: Path, data: bytes) -> Path:
        if target.name == "manifest.json":
            raise OSError(28, "No space left on device")
        return real(target, data)

    monkeypatch.setattr(results, "_write_temp", full_disk)
    with pytest.raises(OSError, match="No space left"):
        results.write_plate_results(tmp_path, rows, {"plate": "p"}, objects=True, objects_file=(path, digest))
    assert not path.exists() and _temps(tmp_path) == []
    assert (tmp_path / "objects.parquet").read_bytes() == before
