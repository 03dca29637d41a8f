"""The ``hcs-batch`` argument parser: every command and flag."""

from __future__ import annotations

import argparse

__all__ = ["build_parser"]

LAYOUTS = ("flat", "imagexpress", "phenix", "omezarr")
"""Plate layout names (``hcs_batch.server.layouts``; not imported here, to keep ``--help`` fast)."""
PROJECTIONS = ("max", "mean", "min", "sum")


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run an execution server")
    serve.add_argument("--bind", default="tcp://127.0.0.1:7700", help="control endpoint (events on PORT+1)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    serve.add_argument("--keys", default=None, help="CurveZMQ key folder (required for a non-loopback bind)")
    executor_options(serve)

    plates = sub.add_parser("make-plates", help="write synthetic plates with a ground_truth.csv")
    plates.add_argument("dir")
    plates.add_argument("--plates", type=int, default=2)
    plates.add_argument("--wells", type=int, default=4)
    plates.add_argument("--sites", type=int, default=1)
    plates.add_argument("--channels", type=int, default=1)
    plates.add_argument("--size", type=int, default=128)
    plates.add_argument("--seed", type=int, default=0)

    def batch_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("plates", nargs="+", metavar="PLATE", help="plate folders")
        p.add_argument("--pipeline", default=None, help="pipeline TOML (default: the built-in nucleus counter)")
        p.add_argument("--server", default=None, help="server URL (default: an embedded local server)")
        p.add_argument("--keys", default=None, help="CurveZMQ key folder for a remote server")
        p.add_argument("--json", action="store_true", help="print one summary object on stdout at the end")
        layout_option(p)
        p.add_argument("--workers", type=int, default=None, help="embedded server: worker processes (default: CPUs)")
        executor_options(p)
        p.add_argument(
            "--projection",
            choices=PROJECTIONS,
            default=None,
            help="how several z-planes become one image (default: max)",
        )

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
    status.add_argument("--server", default=None)
    status.add_argument("--keys", default=None)
    status.add_argument("--json", action="store_true")

    attach = sub.add_parser("attach", help="follow executions still running on a server to their end")
    attach.add_argument("--server", required=True)
    attach.add_argument("--keys", default=None)
    attach.add_argument("--json", action="store_true")

    demo = sub.add_parser(
        "demo", help="make synthetic plates in a temporary folder and run them (results in ./hcs-results)"
    )
    demo.add_argument("--plates", type=int, default=4)

    keys = sub.add_parser("keys", help="CurveZMQ keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = keys_sub.add_parser("generate", help="write a server and a client key pair into DIR")
    gen.add_argument("dir")
    return parser
