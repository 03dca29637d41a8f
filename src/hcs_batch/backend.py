"""The seam between workflow policy and a server: what the service needs, nothing about sockets.

``ServerConnection`` implements it over ZeroMQ; ``hcs_batch.testing.InMemoryBackend`` implements it in memory for
policy tests. One contract test runs against both.
"""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import trio

from .errors import TransportError
from .protocol import CancelReply, CompileReply, Event, ExecutionRecord, PauseReply, ServerInfoReply

__all__ = ["ConnectionLost", "EventFanout", "EventGap", "ExecutionBackend", "StreamItem"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventGap:
    """Events were missed (a jump in ``seq``): whoever follows executions should poll their status now."""

    expected: int
    received: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLost:
    """The server is gone (``ServerLostError``) or was replaced (``ServerRestartedError``); the stream ends."""

    error: TransportError


StreamItem = Event | EventGap | ConnectionLost


class EventFanout:
    """The subscribers of one backend's events: each gets every item published while it is open, unbounded
    (a slow reader never makes the backend block or drop), and a final ``ConnectionLost`` when the backend ends."""

    def __init__(self) -> None:
        self._streams: set[trio.MemorySendChannel[StreamItem]] = set()

    @asynccontextmanager
    async def open(self, lost: TransportError | None) -> AsyncIterator[trio.MemoryReceiveChannel[StreamItem]]:
        """A new subscription; when the backend is already ``lost`` it holds just that ``ConnectionLost``."""
        send, receive = trio.open_memory_channel[StreamItem](math.inf)
        if lost is not None:
            send.send_nowait(ConnectionLost(error=lost))
            send.close()
        else:
            self._streams.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._streams.discard(send)
            send.close()

    def publish(self, item: StreamItem) -> None:
        """Give ``item`` to every open subscription (closed ones are forgotten)."""
        for stream in list(self._streams):
            try:
                stream.send_nowait(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._streams.discard(stream)

    def end(self, lost: TransportError | None = None) -> None:
        """End every subscription, after a final ``ConnectionLost(lost)`` when a reason is given."""
        if lost is not None:
            self.publish(ConnectionLost(error=lost))
        for stream in self._streams:
            stream.close()
        self._streams.clear()


class ExecutionBackend(abc.ABC):
    """An execution server as workflow policy sees it. All methods run in the caller's Trio task.

    Every request method raises ``RemoteError`` subclasses for error replies (``PipelineError``/``PlateError``
    for compile failures, ``ArtifactNotFoundError``) and ``TransportError`` subclasses when the server is gone.
    Cancelling a request abandons its reply; the server may still act on it.
    """

    _instance: str = ""
    _lost: TransportError | None = None

    @property
    def instance(self) -> str:
        """The server instance id from the handshake (an implementation sets ``_instance``)."""
        return self._instance

    @property
    def lost(self) -> TransportError | None:
        """Why the connection is no longer usable, or None while it is (an implementation sets ``_lost``)."""
        return self._lost

    @abc.abstractmethod
    async def compile(
        self, *, plate_path: str, plate_name: str, pipeline: str, config: dict[str, str] | None = None
    ) -> CompileReply:
        """Compile one plate on the server; returns the artifact id and the discovered layout."""

    @abc.abstractmethod
    async def execute(self, artifact_id: str, *, output_dir: str, force: bool = False) -> str:
        """Submit an execution of a compiled artifact; returns its execution id at once (it runs on)."""

    @abc.abstractmethod
    async def status(self, execution_ids: Sequence[str]) -> tuple[list[ExecutionRecord], list[str]]:
        """Records of many executions in one request, and the ids the server does not know."""

    @abc.abstractmethod
    async def cancel(self, execution_ids: Sequence[str]) -> CancelReply:
        """Cancel exactly these executions."""

    @abc.abstractmethod
    async def pause(self, execution_ids: Sequence[str], *, paused: bool = True) -> PauseReply:
        """Pause (``paused=False``: resume) exactly these executions, or every live one when none are named.
        A paused execution finishes its running wells, starts no new one, and reports state ``paused``."""

    @abc.abstractmethod
    async def server_info(self, *, records: bool = False) -> ServerInfoReply:
        """A snapshot of the server: queued, running, workers, uptime (and execution records if asked)."""

    @abc.abstractmethod
    def open_event_stream(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[StreamItem]]:
        """Subscribe to the server's events from now on: ``Event``s, ``EventGap`` markers, and a final
        ``ConnectionLost`` when the server is lost. Closing the context unsubscribes."""
