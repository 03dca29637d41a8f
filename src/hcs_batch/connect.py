"""Where a host gets its backend: a connection to a named server, or an embedded server in the same Trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from ._util import check_server_url
from .client.connection import DEFAULT_LIVENESS_TIMEOUT, ServerConnection, open_connection
from .security import load_client_keys

__all__ = ["open_backend"]


@asynccontextmanager
async def open_backend(
    server: str | None,
    *,
    workers: int | None = None,
    max_wells_per_worker: int | None = None,
    connect_timeout: float = 5.0,
    liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
    keys: str | Path | None = None,
    allow_steps: Sequence[str] = (),
    data_roots: Sequence[str | Path] = (),
    output_roots: Sequence[str | Path] = (),
    executor: str = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
) -> AsyncIterator[ServerConnection]:
    """Connect to ``server`` (``tcp://host:port``), or, when it is None, start an execution server on a free
    loopback port inside this Trio run and connect to that; it stops (cancelling its executions and killing its
    workers) when the context exits.

    ``keys`` is a CurveZMQ key folder (``hcs-batch keys generate``) for a server that requires them.
    ``allow_steps``, ``data_roots`` and ``output_roots`` configure an embedded server (see
    :func:`hcs_batch.server.serve`; roots default to the working directory); the connection to an embedded
    server may shut it down (it holds the server's shutdown token).
    ``workers`` and ``max_wells_per_worker`` configure the embedded server only.
    ``executor``, ``scheduler`` and ``scheduler_file`` too: e.g. ``executor="dask"`` runs its wells on a Dask
    cluster.

    Raises:
        InputError: ``server`` is not of the form ``tcp://HOST:PORT`` (before any connection attempt).
        ServerUnreachableError: nothing answered at ``server`` within ``connect_timeout`` (also what a server
            that does not accept our keys looks like: it completes no handshake).
        SecurityError: the key folder is missing or unreadable.
        InputError: the embedded server's executor options are refused (e.g. an unreachable Dask scheduler).
    """
    if server is not None:
        check_server_url(server)
        options = load_client_keys(keys).socket_options() if keys is not None else {}
        async with open_connection(
            server, connect_timeout=connect_timeout, liveness_timeout=liveness_timeout, socket_options=options
        ) as connection:
            yield connection
        return
    from .server import open_embedded_server  # the server layer only when a host embeds one

    async with (
        open_embedded_server(
            workers=workers,
            max_wells_per_worker=max_wells_per_worker,
            allow_steps=allow_steps,
            data_roots=data_roots,
            output_roots=output_roots,
            executor=executor,
            scheduler=scheduler,
            scheduler_file=scheduler_file,
        ) as address,
        open_connection(
            address.control_url, connect_timeout=connect_timeout, liveness_timeout=liveness_timeout
        ) as connection,
    ):
        connection.shutdown_token = address.shutdown_token
        yield connection
