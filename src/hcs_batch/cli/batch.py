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
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .._util import check_server_url, is_loopback
from ..backend import ExecutionBackend
from ..connect import open_backend
from ..errors import HcsBatchError, InputError, PipelineError, PlateError
from ..model import PlateRef, PlateState
from ..pipeline import default_pipeline_text, load_pipeline_file
from ..workflow.service import BatchKind, BatchState, BatchSummary, BatchWorkflowService
from .exits import error
from .terminal import TerminalHost

if TYPE_CHECKING:
    from ..server.worker_pool import WorkerPool

__all__ = ["PreparedBatch", "embedded_options", "main_batch", "main_demo", "prepare", "report"]


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


def main_batch(args: argparse.Namespace) -> int:
    """``hcs-batch compile|run PLATE...``: the batch's exit code (0 all succeeded, 1 some failed).

    Raises InputError (exit 2) before any work: see :func:`prepare`. (``hcs-batch run`` with the embedded server
    and the local executor comes in through :mod:`.run`, which starts the worker processes first.)
    """
    batch = prepare(args)
    return report(trio.run(batch.run), as_json=args.json)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedBatch:
    """A batch whose input has been checked (:func:`prepare`), ready to :meth:`run`."""

    kind: BatchKind
    plates: list[PlateRef]
    pipeline_text: str
    server: str | None
    output: str
    fail_fast: bool = False
    force: bool = False
    keys: str | None = None
    config: dict[str, str] = field(default_factory=dict)
    allow_steps: tuple[str, ...] = ()
    embedded: dict[str, Any] = field(default_factory=dict)

    async def run(self, worker_pool: WorkerPool | None = None) -> BatchSummary:
        """Run the batch with a terminal host. An embedded server (no ``server``) gets the roots this batch names:
        the plates' folders as data roots, ``output`` as the output root, and the ``allow_steps`` prefixes; it runs
        its wells on ``worker_pool`` when given (whose own ``--workers`` and ``--max-wells-per-worker`` then
        hold)."""
        embedded = self.embedded
        if worker_pool is not None:
            embedded = {k: v for k, v in embedded.items() if k not in ("workers", "max_wells_per_worker")}
            embedded["worker_pool"] = worker_pool
        async with open_backend(
            self.server,
            keys=self.keys,
            allow_steps=self.allow_steps,
            data_roots=[plate.path for plate in self.plates],
            output_roots=[self.output],
            **embedded,
        ) as backend:
            if self.server is not None and self.plates:
                await _check_pipeline_on(backend, self.plates[0], self.pipeline_text, self.config)
            service = BatchWorkflowService(
                TerminalHost(),
                backend,
                pipeline_text=self.pipeline_text,
                output_dir=self.output,
                fail_fast=self.fail_fast,
                force=self.force,
                compile_config=self.config,
            )
            start = service.run_plates if self.kind is BatchKind.RUN else service.compile_plates
            return await _with_ctrl_c(service, lambda: start(self.plates))


def prepare(args: argparse.Namespace) -> PreparedBatch:
    """Check the input of ``hcs-batch compile|run PLATE...`` (blocking: it reads the plate folders and compiles the
    pipeline; it imports the embedded server's modules too, when one will run).

    Raises InputError (exit 2) before any work: a server address not ``tcp://HOST:PORT``, an ``--output`` that is
    a file, a pipeline that does not compile here (with a local server), a missing plate folder.
    """
    if args.server is not None:
        check_server_url(args.server)
        if args.allow_steps:
            raise InputError(
                "--allow-steps configures the embedded server only; start the remote server with "
                "'hcs-batch serve --allow-steps PREFIX'"
            )
    output = getattr(args, "output", None)
    if output is not None and Path(output).exists() and not Path(output).is_dir():
        raise InputError(f"--output {output} is a file; name a folder (it is created when missing)")
    pipeline_text = load_pipeline_file(args.pipeline) if args.pipeline else default_pipeline_text()
    if args.server is None:
        # The embedded server runs in this process: check the pipeline once here, before any plate (exit 2).
        from ..server.allowlist import StepAllowlist
        from ..server.compiler import compile_pipeline

        compile_pipeline(pipeline_text, args.pipeline or "<pipeline>", StepAllowlist.build(args.allow_steps))
        import_module("hcs_batch.server.serve")  # here, not on the Trio thread when the server starts
    embedded = embedded_options(args)
    plates = _plates(args.plates, check_local=_is_local(args.server), layout=args.layout)
    config = {key: value for key in ("layout", "projection") if (value := getattr(args, key, None))}
    if args.pipeline:
        config["pipeline_file"] = str(args.pipeline)  # names the file in the server's compile errors
    return PreparedBatch(
        kind=BatchKind(args.command),
        plates=plates,
        pipeline_text=pipeline_text,
        server=args.server,
        output=getattr(args, "output", "./hcs-results"),
        fail_fast=getattr(args, "fail_fast", False),
        force=getattr(args, "force", False),
        keys=args.keys,
        config=config,
        allow_steps=tuple(args.allow_steps),
        embedded=embedded,
    )


def embedded_options(args: argparse.Namespace) -> dict[str, Any]:
    """The embedded server's options from the command line (``--workers``, ``--max-wells-per-worker``,
    ``--executor``, ``--scheduler``, ``--scheduler-file``).

    Raises:
        InputError: one is given together with ``--server`` (they configure only an embedded server).
    """
    keys = ("workers", "max_wells_per_worker", "scheduler", "scheduler_file")
    options = {k: v for k in keys if (v := getattr(args, k, None)) is not None}
    if getattr(args, "executor", "local") != "local":
        options["executor"] = args.executor
    if options and args.server is not None:
        named = ", ".join("--" + k.replace("_", "-") for k in options)
        raise InputError(f"{named}: for the embedded server only; give it to 'hcs-batch serve' instead")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    return options


def report(summary: BatchSummary, *, as_json: bool) -> int:
    """Print the batch's outcome (one line on stderr, the ``--json`` summary on stdout); returns its exit code."""
    completed = [o for o in summary.plates if o.state is PlateState.COMPLETED]
    if completed:
        total = sum(o.wells_total for o in completed)
        reused = sum(o.wells_reused for o in completed)
        print(
            f"{total - reused} well(s) computed, {reused} reused from an earlier run of the same images and pipeline"
            + (" (--force computes them again)" if reused else ""),
            file=sys.stderr,
            flush=True,
        )
    if as_json:
        print(json.dumps(summary.to_json(), indent=2), flush=True)
    return summary.exit_code()


async def _check_pipeline_on(
    backend: ExecutionBackend, plate: PlateRef, pipeline_text: str, config: dict[str, str]
) -> None:
    """Compile the first plate once on a named server, so a pipeline mistake is one error (exit 2) before any plate
    runs, not one failure per plate. Raises PipelineError; a problem of that plate alone is left to the batch."""
    try:
        await backend.compile(plate_path=str(plate.path), plate_name=plate.name, pipeline=pipeline_text, config=config)
    except PipelineError:
        raise
    except HcsBatchError:
        pass


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
    """``hcs-batch demo``: synthetic plates in a temporary folder, run, compared with their ground truth; the
    results go to ``--output`` (``./hcs-demo-results``), never to ``run``'s default folder."""
    from ..testing.plates import make_plates

    with tempfile.TemporaryDirectory(prefix="hcs-batch-demo-") as tmp:
        root = Path(tmp)
        print(f"making {args.plates} synthetic plates in {root}", file=sys.stderr)
        paths = make_plates(root / "plates", plates=args.plates, wells=8, sites=2, channels=1, size=256, seed=7)
        plates = [PlateRef.from_path(p) for p in paths]
        output = Path(args.output).absolute()
        demo = PreparedBatch(
            kind=BatchKind.RUN, plates=plates, pipeline_text=default_pipeline_text(), server=None, output=str(output)
        )
        summary = trio.run(demo.run)
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
