"""``objects.parquet`` built while a plate's wells finish, so that the end of a plate does not read every well's
object file again after its last well.

Combining them at the end (read 96 well files, concatenate, write, hash) held a 96-well plate of 2,048-pixel
images 0.3-1.0 s after its last well, with the workers idle (``benchmarks/results/HOTSPOTS.md``, "Start-up and
tail of hcs-batch run"). :class:`ObjectsFile` instead appends each finished well's object file
(``wells/<well>.parquet``) to a temporary file beside ``objects.parquet`` while the plate's other wells run, in
plate order: a well that finishes before an earlier one waits (by name only) until every earlier well has finished
or failed. Tables are written in row groups of at least ``ROW_GROUP_ROWS`` rows (the rest at :meth:`finish`), so
the file keeps the size of one written at once. :meth:`ObjectsFile.finish` closes the file and returns it with its
SHA-256 for :func:`.results.write_plate_results`, which renames it into place with the rest of the set.

The content is what :func:`.results.write_plate_results` would combine at the end: the same rows, in the same
order, with the same schema. Whenever that cannot be promised — a well whose columns differ from the first well's
(another pipeline's measurements), a well file that cannot be read, an error writing — streaming stops, the
temporary file goes, and :meth:`finish` returns None: the end of the plate then combines the well files as before
(and reports an unreadable one as before).

Every method is blocking (run it on the server's output lane), thread-safe, and never raises; none but
:meth:`finish` leaves a file behind, and :meth:`discard` (a cancelled or failed execution) removes that one too.
Only a server killed mid-plate leaves its temporary file: the next execution of the plate into that folder, which
holds the plate lock (:mod:`.plate_lock`), removes it when it begins its own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ROW_GROUP_ROWS", "ObjectsFile", "warm_up"]

log = logging.getLogger("hcs_batch.server")

ROW_GROUP_ROWS = 65536
"""Rows gathered before a row group is written: few enough that the rest written at :meth:`ObjectsFile.finish`
is quick and that an execution holds at most ~13 MiB of object tables, many enough that the file is as small as
one written at once (row groups of one well's objects made it up to 2.5 times bigger)."""


_TEMP_PATTERN = ".objects.parquet.*.tmp"
"""The temporary file's name (``*``: a random part), as :mod:`.results` names its temporary files."""


class _HashingFile:
    """A binary file that hashes what is written to it (Parquet only appends): the SHA-256 without reading the file
    again."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "xb")
        self.sha256 = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        return self._fh.write(view)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self.closed = True
        self._fh.close()


def warm_up() -> None:
    """Import pyarrow's Parquet writer (blocking, ~0.1-0.2 s of CPU the first time in a process)."""
    import pyarrow.parquet  # noqa: F401


class ObjectsFile:
    """The ``objects.parquet`` of one execution of the plate in ``plate_dir``, whose wells are ``wells`` (plate
    order), while it runs. Call :meth:`add` once for every well (reused, finished or failed), then :meth:`finish`;
    :meth:`discard` when the execution ends otherwise."""

    def __init__(self, plate_dir: Path, wells: Sequence[str]) -> None:
        self._plate_dir = plate_dir
        self._wells = list(wells)
        self._next = 0
        self._ended: dict[str, bool] = {}  # well -> its objects belong in the file
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._sink: _HashingFile | None = None
        self._writer: Any = None
        self._schema: Any = None
        self._schemas: list[Any] = []  # every well's schema, for the check at the end
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._broken = False

    def add(self, *wells: tuple[str, bool]) -> None:
        """These (well, include) have ended: finished with rows (``include``: its objects belong in the file), or
        failed; write what is now in plate order."""
        with self._lock:
            if self._broken:
                return
            self._ended.update(wells)
            try:
                self._advance()
            except Exception as exc:  # an unreadable well file, a full disk: the end combines (and reports) instead
                log.info("objects.parquet of %s is combined at the end instead: %s", self._plate_dir, exc)
                self._give_up()

    def finish(self) -> tuple[Path, str] | None:
        """Every well has been added: close the file and return (its temporary path, its SHA-256), or None when
        streaming stopped (combine the well files instead)."""
        with self._lock:
            if self._broken or self._next < len(self._wells) or self._writer is None:
                self._give_up()
                return None
            try:
                import pyarrow as pa

                self._flush()
                self._writer.close()
                assert self._sink is not None and self._path is not None
                self._sink.close()
                # The schema a concatenation of every well's table would have (empty wells included).
                if not pa.unify_schemas(self._schemas, promote_options="default").equals(self._schema):
                    raise ValueError("the wells' object tables have different columns")
            except Exception as exc:
                log.info("objects.parquet of %s is combined at the end instead: %s", self._plate_dir, exc)
                self._give_up()
                return None
            path, digest = self._path, self._sink.sha256.hexdigest()
            self._path = self._sink = self._writer = None
            return path, digest

    def discard(self) -> None:
        """Remove the temporary file (the execution ends without using it)."""
        with self._lock:
            self._give_up()

    # ------------------------------------------------------------------ lane thread, under the lock

    def _advance(self) -> None:
        import pyarrow.parquet as pq

        while self._next < len(self._wells) and self._wells[self._next] in self._ended:
            well = self._wells[self._next]
            self._next += 1
            if not self._ended.pop(well):
                continue
            path = self._plate_dir / "wells" / f"{well}.parquet"
            table = pq.ParquetFile(path).read(use_threads=False).replace_schema_metadata(None)
            self._schemas.append(table.schema)
            if table.num_rows == 0:
                continue  # adds no rows; its schema counts in the check at the end
            if self._writer is None:
                self._open(table.schema)
            elif not table.schema.equals(self._schema):
                raise ValueError(f"well {well}'s object table has other columns than the first well's")
            self._pending.append(table)
            self._pending_rows += table.num_rows
            if self._pending_rows >= ROW_GROUP_ROWS:
                self._flush()

    def _open(self, schema: Any) -> None:
        import pyarrow.parquet as pq

        # One execution at a time writes a plate folder (the plate lock): any other such file is a killed one's.
        for stale in self._plate_dir.glob(_TEMP_PATTERN):
            stale.unlink(missing_ok=True)
        self._path = self._plate_dir / _TEMP_PATTERN.replace("*", uuid.uuid4().hex[:12])
        self._sink = _HashingFile(self._path)
        self._schema = schema
        self._writer = pq.ParquetWriter(self._sink, schema)

    def _flush(self) -> None:
        if self._pending:
            import pyarrow as pa

            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=max(self._pending_rows, 1))
            self._pending, self._pending_rows = [], 0

    def _give_up(self) -> None:
        self._broken = True
        self._pending, self._ended = [], {}
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:  # the file is removed next: its writer's state no longer matters
            pass
        if self._sink is not None:
            self._sink.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self._writer = self._sink = self._path = None
