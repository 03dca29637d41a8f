"""``hcs-batch compile | run | demo``: the terminal as a host of the service.

Input is checked before any work (exit 2); an unreachable server is one line on stderr (exit 3); the first
Ctrl-C stops the batch cleanly (targeted cancel on the server, exit 130), a second one abandons the clean-up.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from .._util import is_loopback
from ..connect import open_backend
from ..errors import InputError, PlateError
from ..model import PlateRef
from ..pipeline import default_pipeline_text, load_pipeline_file
from ..workflow.service import BatchKind, BatchState, BatchSummary, BatchWorkflowService
from .exits import error
from .terminal import TerminalHost

__all__ = ["main_batch", "main_demo"]


def _plates(paths: list[str], *, check_local: bool, layout: str | None = None) -> list[PlateRef]:
    """The plates as named; with ``check_local`` their folders must exist here and each plate is named by its
    layout (HTD file, Index XML PlateID, Zarr plate name), else by its folder. A MetaXpress ``TimePoint_<t>``
    folder stands for the plate above it. Raises PlateError."""
    from ..server.layouts import plate_ref, plate_root

    plates = [PlateRef.from_path(plate_root(p)) for p in paths]
    if not check_local:
        return plates
    for plate in plates:
        if not plate.path.is_dir():
            raise PlateError(f"plate folder {plate.path} does not exist or is not a folder")
    named = [plate_ref(plate.path, layout) for plate in plates]
    names = [plate.name for plate in named]
    # Two exports of plates that carry one name (e.g. two "Plate1.HTD") keep their folders' names instead.
    return [p if names.count(p.name) == 1 else PlateRef.from_path(p.path) for p in named]


def _is_local(server: str | None) -> bool:
    return server is None or is_loopback(server)


def _embedded_options(args: argparse.Namespace) -> dict[str, Any]:
    """The embedded server's executor options; refused (InputError) with ``--server``, which has its own."""
    options = {
        "workers": args.workers,
        "executor": args.executor,
        "scheduler": args.scheduler,
        "scheduler_file": args.scheduler_file,
    }
    if args.server is not None and (args.executor != "local" or any(options[k] for k in options if k != "executor")):
        raise InputError(
            "--executor, --scheduler, --scheduler-file and --workers are for the embedded server; "
            "a server named by --server was started with its own (hcs-batch serve --executor ...)"
        )
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    return options


def main_batch(args: argparse.Namespace) -> int:
    """``hcs-batch compile|run PLATE...``: the batch's exit code (0 all succeeded, 1 some failed)."""
    pipeline_text = load_pipeline_file(args.pipeline) if args.pipeline else default_pipeline_text()
    plates = _plates(args.plates, check_local=_is_local(args.server), layout=args.layout)
    config = {key: value for key in ("layout", "projection") if (value := getattr(args, key, None))}
    summary = trio.run(
        partial(
            _run_batch,
            BatchKind(args.command),
            plates,
            pipeline_text,
            args.server,
            getattr(args, "output", "./hcs-results"),
            getattr(args, "fail_fast", False),
            getattr(args, "force", False),
            args.keys,
            None,
            config,
            embedded=_embedded_options(args),
        )
    )
    return _report(summary, as_json=args.json)


def _report(summary: BatchSummary, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(summary.to_json(), indent=2), flush=True)
    return summary.exit_code()


async def _run_batch(
    kind: BatchKind,
    plates: list[PlateRef],
    pipeline_text: str,
    server: str | None,
    output: str,
    fail_fast: bool,
    force: bool,
    keys: str | None = None,
    host: TerminalHost | None = None,
    config: dict[str, str] | None = None,
    embedded: dict[str, Any] | None = None,
) -> BatchSummary:
    host = host or TerminalHost()
    async with open_backend(server, keys=keys, **(embedded or {})) as backend:
        service = BatchWorkflowService(
            host,
            backend,
            pipeline_text=pipeline_text,
            output_dir=output,
            fail_fast=fail_fast,
            force=force,
            compile_config=config,
        )
        start = service.run_plates if kind is BatchKind.RUN else service.compile_plates
        return await _with_ctrl_c(service, lambda: start(plates))


async def _with_ctrl_c(service: BatchWorkflowService, batch: Callable[[], Awaitable[BatchSummary]]) -> BatchSummary:
    """Run ``batch``; the first SIGINT (or SIGTERM) stops it cleanly, a second abandons the clean-up."""
    result: list[BatchSummary] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    if service.active and service.batch_state.value is not BatchState.STOPPING:
                        error("stopping: cancelling the batch's executions on the server (Ctrl-C again to abandon)")
                        service.stop()
                    else:
                        raise KeyboardInterrupt

            nursery.start_soon(watch)
            result.append(await batch())
            nursery.cancel_scope.cancel()
    return result[0]


# ---------------------------------------------------------------------------------------------- demo


def main_demo(args: argparse.Namespace) -> int:
    """``hcs-batch demo``: synthetic plates in a temporary folder, run, compared with their ground truth."""
    from ..testing.plates import make_plates

    with tempfile.TemporaryDirectory(prefix="hcs-batch-demo-") as tmp:
        root = Path(tmp)
        print(f"making {args.plates} synthetic plates in {root}", file=sys.stderr)
        paths = make_plates(root / "plates", plates=args.plates, wells=8, sites=2, channels=1, size=256, seed=7)
        plates = [PlateRef.from_path(p) for p in paths]
        output = Path("hcs-results").absolute()
        summary = trio.run(_run_batch, BatchKind.RUN, plates, default_pipeline_text(), None, str(output), False, False)
        _print_demo_summary(summary, root / "plates" / "ground_truth.csv", output)
        return summary.exit_code()


def _print_demo_summary(summary: BatchSummary, truth_csv: Path, output: Path) -> None:
    import csv

    truth = {
        (row["plate"], row["well"], row["site"], row["channel"]): int(row["object_count"])
        for row in csv.DictReader(truth_csv.open())
    }
    import pyarrow.parquet as pq

    matched = total = counted = objects = 0
    for outcome in summary.plates:
        wells_csv = output / outcome.plate.name / "wells.csv"
        if not wells_csv.exists():
            continue
        for row in csv.DictReader(wells_csv.open()):
            key = (outcome.plate.name, row["well"], row["site"], row["channel"])
            total += 1
            matched += int(key in truth and truth[key] == int(row["object_count"]))
            counted += int(row["object_count"])
        objects += pq.read_metadata(output / outcome.plate.name / "objects.parquet").num_rows
    print(f"\nnuclei counted in {total} images; {matched} match the ground truth exactly", file=sys.stderr)
    print(f"{objects} objects measured (objects.parquet), {counted} counted (wells.csv)", file=sys.stderr)
    print(f"results (wells.csv, objects.parquet, manifest.json per plate) are in {output}", file=sys.stderr)
    for outcome in summary.plates:
        print(f"  {outcome.plate.name:<12} {outcome.state.value:<10} {outcome.output}", file=sys.stderr)
