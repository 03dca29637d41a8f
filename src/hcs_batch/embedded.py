"""Where a host gets its backend: a connection to a named server, or an embedded server in the same Trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .client.connection import DEFAULT_LIVENESS_TIMEOUT, ServerConnection, open_connection

__all__ = ["open_backend"]


@asynccontextmanager
async def open_backend(
    server: str | None,
    *,
    workers: int | None = None,
    connect_timeout: float = 5.0,
    liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
) -> AsyncIterator[ServerConnection]:
    """Connect to ``server`` (``tcp://host:port``), or, when it is None, start an execution server on a free
    loopback port inside this Trio run and connect to that; it stops (cancelling its executions and killing its
    workers) when the context exits.

    Raises:
        ServerUnreachableError: nothing answered at ``server`` within ``connect_timeout``.
    """
    if server is not None:
        async with open_connection(
            server, connect_timeout=connect_timeout, liveness_timeout=liveness_timeout
        ) as connection:
            yield connection
        return
    from .server import open_embedded_server  # the server layer only when a host embeds one

    async with (
        open_embedded_server(workers=workers) as address,
        open_connection(
            address.control_url, connect_timeout=connect_timeout, liveness_timeout=liveness_timeout
        ) as connection,
    ):
        yield connection
