"""The session's link to its server: one connection at a time, reconnecting on request, and the state the status
line shows. No Qt and no batch policy: the owner says what lives on each connection.

:meth:`ServerLink.serve` opens a backend (an embedded server by default), hands it and a nursery to the owner's
``attach`` (which starts the service and whatever else lives as long as the connection), counts as connected, and
keeps the connection until :meth:`ServerLink.reconnect`. A failure is a state (unreachable, lost, error) with its
message, never an exception out of ``serve``; the user reconnects.
"""

from __future__ import annotations

import enum
import logging
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import trio

from hcs_batch.backend import ExecutionBackend
from hcs_batch.connect import open_backend
from hcs_batch.errors import HcsBatchError, ServerUnreachableError, TransportError

__all__ = ["BackendOpener", "ConnectionState", "ServerLink", "default_open_backend"]

logger = logging.getLogger("guest_mode.connection")


class ConnectionState(enum.StrEnum):
    """The server connection as the status line shows it."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"
    LOST = "lost"
    ERROR = "error"


_OUTCOMES = (ConnectionState.CONNECTED, ConnectionState.UNREACHABLE, ConnectionState.LOST, ConnectionState.ERROR)


class BackendOpener(Protocol):
    """Opens the backend of one connection: ``hcs_batch.connect.open_backend`` or a test's in-memory server.

    Raises ``ServerUnreachableError`` when nothing answers within ``connect_timeout``.
    """

    def __call__(
        self, server: str | None, /, *, workers: int | None, connect_timeout: float
    ) -> AbstractAsyncContextManager[ExecutionBackend]: ...


def default_open_backend(
    server: str | None, /, *, workers: int | None, connect_timeout: float
) -> AbstractAsyncContextManager[ExecutionBackend]:
    """``hcs_batch.connect.open_backend`` with an embedded server in a process of its own (``server=None``): its
    compile, execution and file work then never lengthens a guest tick."""
    return open_backend(server, workers=workers, connect_timeout=connect_timeout, embedded="process")


Attach = Callable[[ExecutionBackend, trio.Nursery], Awaitable[None]]
"""Starts what lives on one connection in the given nursery and returns once it runs."""


class ServerLink:
    """One connection at a time to ``server`` (``None``: an embedded local server).

    Args:
        open_backend: opens each connection.
        on_change: called after the state, its detail or the server status changed.
        on_error: called with a one-line error for the user (an unreachable server, or a connection that broke).
        on_log: called with a multi-line report (a bug below us, with its traceback).
    """

    def __init__(
        self,
        *,
        server: str | None,
        workers: int | None,
        connect_timeout: float,
        open_backend: BackendOpener,
        on_change: Callable[[], object],
        on_error: Callable[[str], object],
        on_log: Callable[[str], object],
    ) -> None:
        self.server = server or None
        self.workers = workers
        self.connect_timeout = connect_timeout
        self.backend: ExecutionBackend | None = None
        """The backend while connected, else None."""
        self._open_backend = open_backend
        self._on_change = on_change
        self._on_error = on_error
        self._on_log = on_log
        self._state = ConnectionState.CONNECTING
        self._detail = ""
        self._server_status = ""
        self._reconnect = trio.Event()
        self._changed = trio.Event()
        self._status_changed = trio.Event()

    @property
    def state(self) -> ConnectionState:
        return self._state

    def line(self) -> str:
        """The status line: where, and the server's state (its status report once connected)."""
        where = self.server or "embedded local server"
        if self._state is ConnectionState.CONNECTED and self._server_status:
            # The service's snapshot poller text already says connected/unreachable, queued, running, workers.
            return f"{where} · {self._server_status}"
        parts = [where, f"server {self._state}"]
        if self._detail:
            parts.append(self._detail)
        return " · ".join(parts)

    def reconnect(self, server: str | None) -> None:
        """Drop the current connection (or stop waiting after a failed one) and connect to ``server``."""
        self.server = server or None
        self._reconnect.set()

    def report_status(self, text: str) -> None:
        """The server's status as the service last polled it; shown while connected."""
        self._server_status = text
        self.check_lost()
        self._on_change()
        self._status_changed.set()
        self._status_changed = trio.Event()

    def check_lost(self) -> None:
        """A backend that lost its server keeps its context open: show it lost and offer Connect again."""
        lost = self.backend.lost if self.backend is not None else None
        if lost is not None and self._state is ConnectionState.CONNECTED:
            self._set(ConnectionState.LOST, f"{lost}; press Connect to reconnect")

    async def wait(self, *states: ConnectionState) -> ConnectionState:
        """Wait until the state is one of ``states`` (default: any outcome of the attempt in progress, i.e.
        anything but connecting) and return it."""
        wanted = states or _OUTCOMES
        while self._state not in wanted:
            await self._changed.wait()
        return self._state

    async def wait_status(self) -> str:
        """Wait for the next server status report; return its text."""
        await self._status_changed.wait()
        return self._server_status

    async def serve(
        self, attach: Attach, *, detach: Callable[[], object], stop_first: Callable[[], Awaitable[None]]
    ) -> None:
        """Connect, and connect again after every :meth:`reconnect`, until cancelled.

        For each connection: ``attach(backend, nursery)``, then connected until :meth:`reconnect`; ``detach()``
        runs when it ends, however it ends. Outer cancellation does not reach the connection at once:
        ``stop_first()`` runs (shielded) with the connection still up, so what it asks of the server gets through;
        only then is the connection dropped.
        """
        while True:
            self._reconnect = trio.Event()
            await self._connect_once(attach, detach, stop_first)
            await self._reconnect.wait()

    async def _connect_once(
        self, attach: Attach, detach: Callable[[], object], stop_first: Callable[[], Awaitable[None]]
    ) -> None:
        body_scope = trio.CancelScope(shield=True)
        finished = trio.Event()

        async def body() -> None:
            try:
                with body_scope:
                    await self._connection(attach, detach)
            finally:
                finished.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(body)
            try:
                await finished.wait()
            finally:
                if not finished.is_set():
                    with trio.CancelScope(shield=True):
                        await stop_first()
                    body_scope.cancel()

    async def _connection(self, attach: Attach, detach: Callable[[], object]) -> None:
        self._set(ConnectionState.CONNECTING)
        try:
            async with (
                self._open_backend(self.server, workers=self.workers, connect_timeout=self.connect_timeout) as backend,
                trio.open_nursery() as nursery,
            ):
                await attach(backend, nursery)
                self.backend = backend
                self._set(ConnectionState.CONNECTED)
                await self._reconnect.wait()
                nursery.cancel_scope.cancel()
        except* ServerUnreachableError as group:
            self._set(ConnectionState.UNREACHABLE, _first_message(group))
            self._on_error(_first_message(group))  # the whole message in the log too (the status line may wrap)
        except* TransportError as group:
            self._set(ConnectionState.LOST, _first_message(group))
            self._on_error(_first_message(group))
        except* HcsBatchError as group:
            self._set(ConnectionState.ERROR, _first_message(group))
            self._on_error(_first_message(group))
        except* Exception as group:
            # A bug below us must not take the window down; show it and let the user reconnect.
            logger.error("the server connection failed", exc_info=group)
            self._set(ConnectionState.ERROR, _first_message(group))
            self._on_log("connection failed:\n" + "".join(traceback.format_exception(group)))
        finally:
            self.backend = None
            detach()
        if self._state is ConnectionState.CONNECTED:
            self._set(ConnectionState.CONNECTING if self._reconnect.is_set() else ConnectionState.LOST)

    def _set(self, state: ConnectionState, detail: str = "") -> None:
        self._state = state
        self._detail = detail
        if state is not ConnectionState.CONNECTED:
            self._server_status = ""
        self._on_change()
        self._changed.set()
        self._changed = trio.Event()


def _first_message(group: BaseExceptionGroup[BaseException]) -> str:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_message(exc)
        return str(exc) or type(exc).__name__
    return "unknown error"
