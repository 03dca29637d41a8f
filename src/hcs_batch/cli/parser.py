"""The ``hcs-batch`` argument parser: every command and flag."""

from __future__ import annotations

import argparse
from typing import Final

__all__ = ["add_allow_steps", "build_parser"]

LAYOUTS = ("flat", "imagexpress", "phenix", "omezarr")
"""Plate layout names (``hcs_batch.server.layouts``; not imported here, to keep ``--help`` fast)."""
PROJECTIONS = ("max", "mean", "min", "sum")
PLATE_OPTIONS: Final = {"plates": 2, "wells": 4, "sites": 1, "channels": 1, "size": 128, "seed": 0}
"""``make-plates``' whole-number options and their defaults: each goes to ``make_plates`` under its own name."""


def _version() -> str:
    from .. import __version__

    return __version__


def add_allow_steps(parser: argparse.ArgumentParser, *, embedded: bool = False) -> None:
    """``--allow-steps PREFIX`` (repeatable): step modules the (embedded) server may import besides
    ``hcs_batch.steps`` and the registered step packages."""
    where = "the embedded server " if embedded else ""
    parser.add_argument(
        "--allow-steps",
        action="append",
        default=[],
        metavar="PREFIX",
        help=f"let {where}run steps from modules below PREFIX (repeatable; see docs/steps.md)",
    )


_RECYCLE_HELP = "end a worker process after N wells and start a fresh one (default: never)"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def executor_options(p: argparse.ArgumentParser) -> None:
    """``--executor``, ``--scheduler``, ``--scheduler-file``: where a server (or an embedded one) runs wells."""
    p.add_argument(
        "--executor", choices=("local", "dask"), default="local", help="where wells run (default: local processes)"
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="URL",
        help="Dask scheduler, tcp://127.0.0.1:PORT or tls://HOST:PORT (default with --executor dask: a LocalCluster)",
    )
    p.add_argument(
        "--scheduler-file", default=None, metavar="PATH", help="Dask scheduler file (dask scheduler, jobqueue)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``hcs-batch``; one sub-command per command."""
    parser = argparse.ArgumentParser(
        prog="hcs-batch", description="Batch compile and run high-content-screening plates on an execution server."
    )
    parser.add_argument("--version", action="version", version=f"hcs-batch {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run an execution server")
    # Each option's dest is the keyword of hcs_batch.server.serve it sets: cli/serve.py passes them on by name.
    serve.add_argument("--bind", default="tcp://127.0.0.1:7700", help="control endpoint (events on PORT+1)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    serve.add_argument("--keys", default=None, help="CurveZMQ key folder (required for a non-loopback bind)")
    add_allow_steps(serve)
    serve.add_argument(
        "--data-root",
        dest="data_roots",
        action="append",
        default=[],
        metavar="DIR",
        help="read plates only below DIR (repeatable; default: the working directory)",
    )
    serve.add_argument(
        "--output-root",
        dest="output_roots",
        action="append",
        default=[],
        metavar="DIR",
        help="write results only below DIR (repeatable; default: the working directory; relative output "
        "folders go below the first)",
    )
    serve.add_argument("--allow-remote-shutdown", action="store_true", help="obey shutdown requests from clients")
    serve.add_argument("--max-wells-per-worker", type=_positive, default=None, metavar="N", help=_RECYCLE_HELP)
    executor_options(serve)

    plates = sub.add_parser("make-plates", help="write synthetic plates with a ground_truth.csv")
    plates.add_argument("dir")
    for name, default in PLATE_OPTIONS.items():
        plates.add_argument(f"--{name}", type=int, default=default)
    plates.add_argument(
        "--overwrite", action="store_true", help="replace the plate folders and ground_truth.csv already in DIR"
    )

    def batch_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("plates", nargs="+", metavar="PLATE", help="plate folders")
        p.add_argument("--pipeline", default=None, help="pipeline TOML (default: the built-in nucleus counter)")
        p.add_argument("--server", default=None, help="server URL (default: an embedded local server)")
        p.add_argument("--keys", default=None, help="CurveZMQ key folder for a remote server")
        p.add_argument("--json", action="store_true", help="print one summary object on stdout at the end")
        add_allow_steps(p, embedded=True)
        layout_option(p)
        executor_options(p)
        p.add_argument(
            "--projection",
            choices=PROJECTIONS,
            default=None,
            help="how several z-planes become one image (default: max)",
        )
        p.add_argument("--workers", type=_positive, default=None, help="embedded server's worker processes")
        p.add_argument("--max-wells-per-worker", type=_positive, default=None, metavar="N", help=_RECYCLE_HELP)

    def layout_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--layout", choices=LAYOUTS, default=None, help="plate layout (default: detected from the folder)"
        )

    compile_ = sub.add_parser("compile", help="validate and plan plates, keep the artifacts")
    batch_options(compile_)
    run = sub.add_parser("run", help="compile all plates, then execute them all")
    batch_options(run)
    run.add_argument("--output", default="./hcs-results", help="results folder (default: ./hcs-results)")
    run.add_argument("--fail-fast", action="store_true", help="stop the batch at the first failed plate")
    run.add_argument("--force", action="store_true", help="recompute wells that already have results")

    inspect = sub.add_parser("inspect", help="show what a plate folder holds: layout, wells, sites, channels, ...")
    inspect.add_argument("plate", metavar="PLATE", help="plate folder")
    layout_option(inspect)
    inspect.add_argument("--json", action="store_true", help="print one JSON object")

    status = sub.add_parser("status", help="show a server's status and execution records")
    status.add_argument("--server", default=None, help="server URL (default: list this user's servers, exit 2)")
    status.add_argument("--keys", default=None, help="CurveZMQ key folder for a server that requires keys")
    status.add_argument("--json", action="store_true", help='print {"server": {...}, "executions": [...]}')

    from .control import add_control_parsers  # argparse only: zmq and the server load when a command runs

    add_control_parsers(sub)  # pause, resume, cancel, servers, shutdown

    attach = sub.add_parser("attach", help="follow executions still running on a server to their end")
    attach.add_argument("--server", required=True)
    attach.add_argument("--keys", default=None)
    attach.add_argument("--json", action="store_true")

    demo = sub.add_parser(
        "demo", help="make synthetic plates in a temporary folder and run them (results in ./hcs-demo-results)"
    )
    demo.add_argument("--plates", type=int, default=4)
    demo.add_argument("--output", default="./hcs-demo-results", help="results folder (default: ./hcs-demo-results)")

    keys = sub.add_parser("keys", help="CurveZMQ keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = keys_sub.add_parser("generate", help="write a server and a client key pair into DIR")
    gen.add_argument("dir")
    return parser
