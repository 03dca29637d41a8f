"""``hcs-batch run`` with the embedded server and the local executor (the default): the worker processes first.

Each worker process takes ~0.5-0.7 s of CPU to start (an interpreter, then numpy, SciPy, scikit-image, OpenCV
and pyarrow: :func:`hcs_batch.server.worker.warm_up`), and this process as long again to import the CLI and the
server and to check the pipeline and the plates. Started by the embedded server, the workers began only once all
that was done; here the worker pool (:mod:`hcs_batch.server.worker_pool`, which costs only ``trio_parallel`` to
import) is opened and started first, and the rest of the start-up runs on a thread beside it
(:func:`.batch.prepare`), so the two overlap; the embedded server then runs its wells on that pool. Anything else
(``--server``, ``--executor dask``) is :func:`.batch.main_batch` as it is.

Errors are those of :func:`.batch.main_batch` (exit 2 before any plate runs); the workers already started are then
killed, not waited for.
"""

from __future__ import annotations

import argparse
from importlib import import_module
from typing import Any

import trio

__all__ = ["main_run"]


def main_run(args: argparse.Namespace) -> int:
    """``hcs-batch run PLATE...``: the batch's exit code (0 all succeeded, 1 some failed); raises as
    :func:`.batch.main_batch` does."""
    if args.server is not None or getattr(args, "executor", "local") != "local":
        return int(import_module(f"{__package__}.batch").main_batch(args))
    summary, batch = trio.run(_run, args)
    return int(batch.report(summary, as_json=args.json))


async def _run(args: argparse.Namespace) -> tuple[Any, Any]:
    from ..server.worker_pool import open_worker_pool

    async with open_worker_pool(args.workers, args.max_wells_per_worker) as pool:
        pool.start()
        # Blocking imports, folder reads and the pipeline's compile, beside the workers' start.
        batch = await trio.to_thread.run_sync(import_module, f"{__package__}.batch")
        prepared = await trio.to_thread.run_sync(batch.prepare, args)
        summary = await prepared.run(worker_pool=pool)
    return summary, batch
