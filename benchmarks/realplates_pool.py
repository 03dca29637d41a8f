"""What a lab writes instead of hcs-batch: a ``multiprocessing.Pool`` over the wells, the same step functions.

``python -m benchmarks.realplates_pool PLATE OUT.csv --workers N`` reads every well of the flat plate folder
PLATE in N worker processes (one well a task, as hcs-batch hands out work), runs the benchmark's pipeline
(:mod:`benchmarks._realsteps`) on every image set and writes one CSV of rows (and OUT's ``.parquet`` sibling with
every object, as hcs-batch writes ``objects.parquet``). The last stdout line is a JSON object with the
wall time of the pool part and the number of wells.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from ._realsteps import Step, compile_steps, group_wells, pipeline_text, process_well

_steps: list[Step] = []


def _init(text: str) -> None:
    _steps[:] = compile_steps(text)


def _well(job: tuple[str, str, list[tuple[int, int, str]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    plate, well, images = job
    return process_well(Path(plate), well, images, _steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realplates_pool")
    parser.add_argument("plate")
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from ._realsteps import write_objects, write_rows

    t0 = time.perf_counter()
    wells = group_wells(Path(args.plate))
    jobs = [(args.plate, well, images) for well, images in wells.items()]
    rows: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    with Pool(args.workers, initializer=_init, initargs=(pipeline_text(),)) as pool:
        for well_rows, well_tables in pool.imap_unordered(_well, jobs):
            rows.extend(well_rows)
            tables.extend(well_tables)
    rows.sort(key=lambda r: (r["well"], r["site"], r["channel"]))
    write_rows(Path(args.out), rows)
    write_objects(Path(args.out).with_suffix(".parquet"), tables)
    print(json.dumps({"wall_s": round(time.perf_counter() - t0, 3), "wells": len(jobs), "rows": len(rows)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
