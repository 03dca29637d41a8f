"""The bodies of ``hcs-batch compile | run | status | attach | demo``: the terminal as a host of the service.

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

import msgspec
import trio

from .cli import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from .embedded import open_backend
from .errors import InputError, PlateError, SecurityError, ServerUnreachableError, TransportError
from .model import PlateRef
from .pipeline import default_pipeline_text, load_pipeline_file
from .protocol import StateEvent
from .service import BatchSummary, BatchWorkflowService
from .terminal import TerminalHost

__all__ = ["run_command"]


def _error(message: str) -> None:
    print(f"hcs-batch: {message}", file=sys.stderr, flush=True)


def run_command(args: argparse.Namespace) -> int:
    """Dispatch one parsed command; returns its exit code."""
    try:
        if args.command in ("compile", "run"):
            return _batch(args)
        if args.command == "status":
            return trio.run(_status, args)
        if args.command == "attach":
            return trio.run(_attach, args)
        if args.command == "demo":
            return _demo(args)
    except ServerUnreachableError as exc:
        _error(str(exc))
        return EXIT_UNREACHABLE
    except TransportError as exc:  # lost or restarted while status/attach was talking to it: one line, exit 1
        _error(str(exc))
        return EXIT_FAILED
    except (InputError, SecurityError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_CANCELLED
    raise AssertionError(f"unknown command {args.command}")


def _plates(paths: list[str], *, check_local: bool) -> list[PlateRef]:
    """The plates as named; with ``check_local`` their folders must exist here. Raises PlateError."""
    plates = [PlateRef.from_path(p) for p in paths]
    if check_local:
        for plate in plates:
            if not plate.path.is_dir():
                raise PlateError(f"plate folder {plate.path} does not exist or is not a folder")
    return plates


def _is_local(server: str | None) -> bool:
    return server is None or any(h in server for h in ("//127.", "//localhost", "//[::1]"))


def _embedded_options(args: argparse.Namespace) -> dict[str, Any]:
    """The embedded server's executor options; refused (InputError) with ``--server``, which has its own."""
    options = {
        "workers": args.workers,
        "executor": args.executor,
        "scheduler": args.scheduler,
        "scheduler_file": args.scheduler_file,
    }
    if args.server is not None and (args.executor != "local" or any(options[k] for k in options if k != "executor")):
        raise InputError("--executor, --scheduler, --scheduler-file and --workers are for the embedded server; "
                         "a server named by --server was started with its own (hcs-batch serve --executor ...)")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    return options


def _batch(args: argparse.Namespace) -> int:
    pipeline_text = load_pipeline_file(args.pipeline) if args.pipeline else default_pipeline_text()
    plates = _plates(args.plates, check_local=_is_local(args.server))
    summary = trio.run(
        partial(
            _run_batch,
            args.command,
            plates,
            pipeline_text,
            args.server,
            getattr(args, "output", "./hcs-results"),
            getattr(args, "fail_fast", False),
            getattr(args, "force", False),
            args.keys,
            embedded=_embedded_options(args),
        )
    )
    return _report(summary, as_json=args.json)


def _report(summary: BatchSummary, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(summary.to_json(), indent=2), flush=True)
    return summary.exit_code()


async def _run_batch(
    kind: str,
    plates: list[PlateRef],
    pipeline_text: str,
    server: str | None,
    output: str,
    fail_fast: bool,
    force: bool,
    keys: str | None = None,
    host: TerminalHost | None = None,
    embedded: dict[str, Any] | None = None,
) -> BatchSummary:
    host = host or TerminalHost()
    async with open_backend(server, keys=keys, **(embedded or {})) as backend:
        service = BatchWorkflowService(
            host, backend, pipeline_text=pipeline_text, output_dir=output, fail_fast=fail_fast, force=force
        )
        start = service.run_plates if kind == "run" else service.compile_plates
        return await _with_ctrl_c(service, lambda: start(plates))


async def _with_ctrl_c(service: BatchWorkflowService, batch: Callable[[], Awaitable[BatchSummary]]) -> BatchSummary:
    """Run ``batch``; the first SIGINT (or SIGTERM) stops it cleanly, a second abandons the clean-up."""
    result: list[BatchSummary] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    if service.active and service.batch_state.value != "stopping":
                        _error("stopping: cancelling the batch's executions on the server (Ctrl-C again to abandon)")
                        service.stop()
                    else:
                        raise KeyboardInterrupt

            nursery.start_soon(watch)
            result.append(await batch())
            nursery.cancel_scope.cancel()
    return result[0]


# ---------------------------------------------------------------------------------------------- status


async def _status(args: argparse.Namespace) -> int:
    async with open_backend(args.server, keys=args.keys) as backend:
        info = await backend.server_info(records=True)
    if args.json:
        print(json.dumps(msgspec.to_builtins(info), indent=2))
        return EXIT_OK
    print(
        f"server {info.instance} up {info.uptime:.0f} s: {info.workers} workers ({info.busy_workers} busy), "
        f"{info.queued} queued, {info.running} running"
    )
    for record in info.executions:
        line = (
            f"  {record.execution_id}  {record.plate_name:<20} {record.state:<10} "
            f"{record.wells_done}/{record.wells_total} wells"
        )
        print(line + (f"  {record.error}" if record.error else ""))
    if info.executions_omitted:
        print(f"  ({info.executions_omitted} older finished executions not shown)")
    return EXIT_OK


async def _attach(args: argparse.Namespace) -> int:
    """Follow the executions still live on a server until each is terminal, then print their outcomes.

    Executions whose client died keep running on the server: this is how a restarted client finds them.
    Returns 0 when every followed execution completed, 1 when one failed or was cancelled; a server lost or
    restarted meanwhile raises its ``TransportError`` (one line on stderr, exit 1).
    """
    async with open_backend(args.server, keys=args.keys) as backend:
        info = await backend.server_info(records=True)
        live = [r.execution_id for r in info.executions if r.state in ("queued", "running")]
        # On stderr even with --json (stdout stays one JSON object): tells a watcher that attach is following.
        print(f"following {len(live)} live executions on {args.server}", file=sys.stderr, flush=True)
        final: dict[str, Any] = {}
        async with backend.open_event_stream() as events:
            pending = set(live)
            while pending:
                records, unknown = await backend.status(sorted(pending))
                for record in records:
                    if record.state not in ("queued", "running"):
                        final[record.execution_id] = msgspec.to_builtins(record)
                        pending.discard(record.execution_id)
                pending -= set(unknown)
                if pending:
                    # Wake on the first state event of a followed execution; poll again at least every second.
                    with trio.move_on_after(1.0):
                        async for item in events:
                            if isinstance(item, StateEvent) and item.execution_id in pending:
                                break
                if backend.lost is not None:
                    raise backend.lost
        records_out = list(final.values())
    if args.json:
        print(json.dumps({"executions": records_out}, indent=2))
    else:
        for record in records_out:
            print(f"{record['execution_id']}  {record['plate_name']}  {record['state']}  {record['error']}")
    failed = any(r["state"] != "completed" for r in records_out)
    return 1 if failed else EXIT_OK


# ---------------------------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    from .synth import make_plates

    with tempfile.TemporaryDirectory(prefix="hcs-batch-demo-") as tmp:
        root = Path(tmp)
        print(f"making {args.plates} synthetic plates in {root}", file=sys.stderr)
        paths = make_plates(root / "plates", plates=args.plates, wells=8, sites=2, channels=1, size=256, seed=7)
        plates = [PlateRef.from_path(p) for p in paths]
        output = Path("hcs-results").absolute()
        summary = trio.run(_run_batch, "run", plates, default_pipeline_text(), None, str(output), False, False)
        _print_demo_summary(summary, root / "plates" / "ground_truth.csv", output)
        return summary.exit_code()


def _print_demo_summary(summary: BatchSummary, truth_csv: Path, output: Path) -> None:
    import csv

    truth = {
        (row["plate"], row["well"], row["site"], row["channel"]): int(row["object_count"])
        for row in csv.DictReader(truth_csv.open())
    }
    matched = total = 0
    for outcome in summary.plates:
        wells_csv = output / outcome.plate.name / "wells.csv"
        if not wells_csv.exists():
            continue
        for row in csv.DictReader(wells_csv.open()):
            key = (outcome.plate.name, row["well"], row["site"], row["channel"])
            total += 1
            matched += int(key in truth and truth[key] == int(row["object_count"]))
    print(f"\nnuclei counted in {total} images; {matched} match the ground truth exactly", file=sys.stderr)
    print(f"results (wells.csv, manifest.json per plate) are in {output}", file=sys.stderr)
    for outcome in summary.plates:
        print(f"  {outcome.plate.name:<12} {outcome.state.value:<10} {outcome.output}", file=sys.stderr)
