"""``hcs-batch serve``: run a server in the foreground until Ctrl-C, SIGTERM or a ``Shutdown`` request."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import cast

import trio

from .._util import collapse_single_exception_group
from ..errors import InputError, SecurityError
from ..security import ServerKeys, load_server_keys
from ..server.control import ServerAddress
from ..server.executor import default_workers
from ..server.registry import ServerEntry, registered
from ..server.serve import ServeOptions, parse_bind, serve

__all__ = ["main_serve"]

log = logging.getLogger("hcs_batch.server")


_OPTIONS = ServeOptions.__optional_keys__ - {"keys", "warm_workers", "worker_pool"}
"""The options of :func:`serve` that ``hcs-batch serve`` takes from its command line as they are."""


def _serve_options(args: argparse.Namespace, keys: ServerKeys | None) -> ServeOptions:
    """The server's options: ``keys`` and the command line's (the parser names each one's ``dest`` after the
    keyword of :func:`serve` it sets: ``--data-root`` is ``data_roots``)."""
    options = cast(ServeOptions, {name: getattr(args, name) for name in _OPTIONS})
    options["keys"] = keys
    return options


async def _serve_until_signalled(args: argparse.Namespace, keys: ServerKeys | None) -> None:
    """Serve until a signal or an allowed ``Shutdown``. The first SIGINT/SIGTERM stops the server the same way
    as a shutdown request (the ``shutdown`` event goes out first); a second one cancels at once."""
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_server(*, task_status: trio.TaskStatus[ServerAddress]) -> None:
                await serve(args.bind, stop=stop, task_status=task_status, **_serve_options(args, keys))
                nursery.cancel_scope.cancel()  # stopped: stop waiting for signals

            address: ServerAddress = await nursery.start(run_server)
            with _registered(address, args, keys):
                print(
                    f"hcs-batch server listening on {address.control_url} (events on {address.events_port})",
                    flush=True,
                )
                async for signum in signals:
                    if stop.is_set():
                        log.info("%s received again: stopping at once", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        break
                    log.info("%s received: stopping", signal.Signals(signum).name)
                    stop.set()


@contextlib.contextmanager
def _registered(address: ServerAddress, args: argparse.Namespace, keys: ServerKeys | None) -> Iterator[None]:
    """List this server in the user's registry (``hcs-batch servers``) while it runs, with its executor (``local``
    or ``dask``) and, for the local one, its worker processes; a registry that cannot be written is a warning, not
    a reason to refuse to serve."""
    local = args.executor == "local"
    entry = ServerEntry(
        url=address.control_url,
        pid=os.getpid(),
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        executor=args.executor,
        workers=(args.workers or default_workers()) if local else 0,  # a cluster's workers are the scheduler's
        events_port=address.events_port,
        curve=keys is not None,
    )
    try:
        registration = registered(entry)
        registration.__enter__()
    except OSError as exc:
        log.warning("cannot register this server for 'hcs-batch servers': %s", exc)
        yield
        return
    try:
        yield
    finally:
        registration.__exit__(None, None, None)


def main_serve(args: argparse.Namespace) -> int:
    """Run ``hcs-batch serve``; returns 0 after a clean stop, 2 for a refused or unusable address or key folder.

    ``--keys DIR`` (``hcs-batch keys generate``) makes the server accept only the CurveZMQ clients listed in
    ``DIR/clients``; it is what allows a bind beyond loopback. ``--allow-steps``, ``--data-root``,
    ``--output-root`` and ``--allow-remote-shutdown``: see :func:`hcs_batch.server.serve`.
    ``--executor dask`` runs wells on the Dask scheduler at ``--scheduler URL`` (or in ``--scheduler-file PATH``),
    or on a LocalCluster started here (exit 2 when the scheduler is refused or does not answer).
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        keys = load_server_keys(args.keys) if args.keys is not None else None
        parse_bind(args.bind, keys)
    except (SecurityError, InputError) as exc:
        print(f"hcs-batch serve: {exc}", file=sys.stderr)
        return 2
    try:
        with collapse_single_exception_group():
            trio.run(_serve_until_signalled, args, keys)
    except (SecurityError, InputError) as exc:
        print(f"hcs-batch serve: {exc}", file=sys.stderr)
        return 2
    return 0
