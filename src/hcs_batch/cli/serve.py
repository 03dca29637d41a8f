"""``hcs-batch serve``: run a server in the foreground until Ctrl-C, SIGTERM or a ``Shutdown`` request."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from .._util import collapse_single_exception_group
from ..errors import InputError, SecurityError
from ..security import ServerKeys, load_server_keys
from ..server.control import ServerAddress
from ..server.serve import parse_bind, serve

__all__ = ["main_serve"]

log = logging.getLogger("hcs_batch.server")


async def _serve_until_signalled(
    bind: str,
    workers: int | None,
    keys: ServerKeys | None,
    executor: str,
    scheduler: str | None,
    scheduler_file: str | None,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_server(*, task_status: trio.TaskStatus[ServerAddress]) -> None:
                await serve(
                    bind,
                    workers=workers,
                    keys=keys,
                    executor=executor,
                    scheduler=scheduler,
                    scheduler_file=scheduler_file,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()  # a Shutdown request: stop waiting for signals

            address: ServerAddress = await nursery.start(run_server)
            print(f"hcs-batch server listening on {address.control_url} (events on {address.events_port})", flush=True)
            async for signum in signals:
                log.info("%s received: stopping", signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()


def main_serve(args: argparse.Namespace) -> int:
    """Run ``hcs-batch serve``; returns 0 after a clean stop, 2 for a refused or unusable address or key folder.

    ``--keys DIR`` (``hcs-batch keys generate``) makes the server accept only the CurveZMQ clients listed in
    ``DIR/clients``; it is what allows a bind beyond loopback. ``--executor dask`` runs wells on the Dask scheduler
    at ``--scheduler URL`` (or in ``--scheduler-file PATH``), or on a LocalCluster started here (exit 2 when the
    scheduler is refused or does not answer).
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
            trio.run(
                _serve_until_signalled,
                args.bind,
                args.workers,
                keys,
                args.executor,
                args.scheduler,
                args.scheduler_file,
            )
    except (SecurityError, InputError) as exc:
        print(f"hcs-batch serve: {exc}", file=sys.stderr)
        return 2
    return 0
