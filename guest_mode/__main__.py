"""``python -m guest_mode``: the plate manager window, with scripting flags for automation and tests.

    python -m guest_mode [PLATE...] [--pipeline FILE] [--server URL] [--compile | --run] [--exit-when-done]
                         [--screenshot FILE [--screenshot-well WELL]] [--allow-steps PREFIX]...
                         [--data-root DIR]...

The embedded server (no ``--server``) reads plates only below the plate folders named here and the
``--data-root`` folders (none named: the working directory), writes only below ``--output``, and runs steps only
from ``hcs_batch.steps``, registered step packages and the ``--allow-steps`` prefixes.

Exit codes as ``hcs-batch run``: 0 every plate succeeded (or no batch was asked for); 1 some plates failed;
2 bad usage or input (missing plate folder, unreadable pipeline); 3 server unreachable; 130 the batch was
cancelled (Stop, the window closed before the batch ended, or Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from hcs_batch.cli import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from hcs_batch.cli.parser import add_allow_steps
from hcs_batch.errors import InputError, TransportError
from hcs_batch.workflow.service import BatchKind

from .session import ConnectionState
from .window import PlateManagerWindow

__all__ = ["EXIT_CANCELLED", "EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "build_parser", "main"]

# The same exit codes as `hcs-batch run`, from the one place that defines them.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m guest_mode",
        description="The hcs-batch plate manager: a PyQt6 window hosting the batch service through Trio guest mode.",
    )
    parser.add_argument("plates", nargs="*", metavar="PLATE", help="plate folders to list at start")
    parser.add_argument("--pipeline", default=None, help="pipeline TOML (default: the built-in nucleus counter)")
    parser.add_argument("--server", default=None, help="server URL (default: an embedded local server)")
    parser.add_argument("--output", default="./hcs-results", help="results folder (default: ./hcs-results)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes of the embedded server")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to wait for the server")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--compile", action="store_true", help="compile the plates at once")
    action.add_argument("--run", action="store_true", help="run the plates at once")
    parser.add_argument("--exit-when-done", action="store_true", help="close the window when the batch ends")
    parser.add_argument("--screenshot", default=None, metavar="FILE", help="save a PNG of the window when it ends")
    parser.add_argument(
        "--screenshot-well",
        default=None,
        metavar="WELL",
        help="the well the screenshot shows (default: the one counting the most objects)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    add_allow_steps(parser, embedded=True)
    parser.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="DIR",
        help="let the embedded server read plates below DIR too (repeatable)",
    )
    return parser


async def app_main(window: PlateManagerWindow, args: argparse.Namespace) -> int:
    """Serve ``window``, start the scripted batch if asked, and return the exit code once the window closed."""
    window.show()
    kind = BatchKind.COMPILE if args.compile else BatchKind.RUN if args.run else None
    # A scripted batch that never reported (window closed first) counts as cancelled.
    code = EXIT_OK if kind is None else EXIT_CANCELLED

    async def script(kind: BatchKind) -> None:
        nonlocal code
        state = await window.session.wait_connection()
        if state is not ConnectionState.CONNECTED:
            print(f"guest_mode: {window.server_status_text}", file=sys.stderr)
            code = EXIT_UNREACHABLE
        else:
            try:
                summary = await window.run_batch(kind)
            except InputError as exc:
                print(f"guest_mode: {exc}", file=sys.stderr)
                code = EXIT_USAGE
            except TransportError as exc:
                print(f"guest_mode: {exc}", file=sys.stderr)
                code = EXIT_UNREACHABLE
            else:
                code = int(summary.exit_code())
        if args.screenshot:
            # The server line lags the batch by up to one snapshot poll: let it catch up (bounded) for the picture.
            with trio.move_on_after(1.5):
                await window.session.wait_server_status()
            shown = None
            with trio.move_on_after(20):  # the plate map and a well's image, loaded off the Trio thread
                shown = await window.data_views.show_for_screenshot(args.screenshot_well)
            path = window.save_screenshot(args.screenshot)
            plate = window.data_views.plate
            where = f" (plate {plate.name}, well {shown})" if plate and shown else ""
            print(f"guest_mode: screenshot saved to {path}{where}", file=sys.stderr)
        if args.exit_when_done:
            window.request_close()

    async with trio.open_nursery() as nursery:
        await nursery.start(window.serve)
        logging.getLogger("guest_mode").info("plate manager ready")
        if kind is not None:
            nursery.start_soon(script, kind)
        await window.wait_closed()
        nursery.cancel_scope.cancel()  # a script still waiting for a connection has nothing left to wait for
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the plate manager; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.exit_when_done and not (args.compile or args.run):
        parser.error("--exit-when-done needs --compile or --run")
    if (args.compile or args.run) and not args.plates:
        parser.error("--compile and --run need at least one PLATE")
    if args.screenshot and not Path(args.screenshot).absolute().parent.is_dir():
        parser.error(f"--screenshot: folder {str(Path(args.screenshot).absolute().parent)!r} does not exist")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )

    from functools import partial

    # The well view and results tables read parquet off the Trio thread; a C extension's import there holds the
    # GIL (a cold first import froze the Qt loop for ~340 ms, issue 12). Load it before the loop.
    import pyarrow.parquet  # noqa: F401
    from PyQt6.QtWidgets import QApplication

    from hcs_batch.connect import open_backend

    from .runner import GuestRunner, collect_and_freeze

    data_roots = [*args.data_root, *args.plates]
    # The embedded server runs in a process of its own: its work never lengthens a guest tick (issue 15).
    opener = partial(
        open_backend,
        allow_steps=args.allow_steps,
        data_roots=data_roots,
        output_roots=[args.output],
        embedded="process",
    )
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "guest_mode"])
    # Build the window before the Qt loop runs: its construction is one-time work, not a GUI freeze.
    try:
        window = PlateManagerWindow(
            server=args.server,
            pipeline_file=args.pipeline,
            output_dir=args.output,
            workers=args.workers,
            connect_timeout=args.connect_timeout,
            # Each batch's plates and records live as long as it: keep the cyclic GC from scanning them mid-batch.
            on_batch_start=collect_and_freeze,
            open_backend=opener,
            remember_state=not args.screenshot,  # pictures never depend on the last session's layout
        )
        window.add_plates(args.plates)
    except InputError as exc:
        print(f"guest_mode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    runner = GuestRunner(app)
    code = runner.run(app_main, window, args)
    stats = runner.monitor.statistics()
    logging.getLogger("guest_mode").info(
        "guest ticks: %d, mean %.2f ms, longest %.1f ms, %d over %.0f ms",
        stats.ticks,
        stats.mean * 1e3,
        stats.longest * 1e3,
        stats.slow_ticks,
        stats.threshold * 1e3,
    )
    if runner.interrupted or code is None:
        return EXIT_CANCELLED
    return code


if __name__ == "__main__":
    sys.exit(main())
