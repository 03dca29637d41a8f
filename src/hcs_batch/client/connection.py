"""``ServerConnection``: one DEALER for control requests (many in flight), one SUB for events, and a watchdog
that turns a silent server into ``ServerLostError`` instead of a hang.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from .. import protocol as p
from .._util import check_server_url, collapse_single_exception_group
from .._zmq import AsyncSocket, new_socket
from ..backend import EventFanout, EventGap, ExecutionBackend, StreamItem
from ..errors import (
    ConnectionClosedError,
    InputError,
    ProtocolError,
    ServerLostError,
    ServerRestartedError,
    ServerUnreachableError,
    TransportError,
    error_from_code,
)

__all__ = ["DEFAULT_LIVENESS_TIMEOUT", "ServerConnection", "open_connection"]

DEFAULT_LIVENESS_TIMEOUT = 5.0
"""Seconds without a heartbeat or reply after which the server counts as lost."""

STATUS_CHUNK = 32
"""Ids per ``Status`` request. A record is at most about 22 kB (ids, plate name, a 4 kB output path, an error
capped at 8,192 characters of UTF-8), so 32 of them always fit in one reply frame (1 MiB); typical records are
~400 bytes."""

R = TypeVar("R", bound=p.Reply)


class _Pending:
    __slots__ = ("done", "error", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: p.Reply | None = None
        self.error: BaseException | None = None


class ServerConnection(ExecutionBackend):
    """A live connection to one server instance. Make it with :func:`open_connection`."""

    def __init__(self, url: str, *, liveness_timeout: float, socket_options: dict[str, Any]) -> None:
        self.url = url
        self._host = urlsplit(url).hostname or "127.0.0.1"
        self._liveness_timeout = liveness_timeout
        self._socket_options = socket_options
        self._control = AsyncSocket(new_socket("DEALER", **socket_options))
        self._control.zmq_socket.connect(url)
        self._events: AsyncSocket | None = None
        self._rids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._fanout = EventFanout()
        self._instance = ""
        self._last_seq = 0
        self._last_seen = trio.current_time()
        self._lost: TransportError | None = None
        self._closed = False
        self._seen = trio.Event()
        self._events_port = 0
        self.hello: p.HelloReply | None = None

    # ------------------------------------------------------------------ ExecutionBackend

    async def compile(
        self, *, plate_path: str, plate_name: str, pipeline: str, config: dict[str, str] | None = None
    ) -> p.CompileReply:
        rid = next(self._rids)
        msg = p.Compile(rid=rid, plate_path=plate_path, plate_name=plate_name, pipeline=pipeline, config=config or {})
        return await self._request(msg, p.CompileReply)

    async def execute(self, artifact_id: str, *, output_dir: str, force: bool = False) -> str:
        msg = p.Execute(rid=next(self._rids), artifact_id=artifact_id, output_dir=output_dir, force=force)
        return (await self._request(msg, p.ExecuteReply)).execution_id

    async def status(self, execution_ids: Sequence[str]) -> tuple[list[p.ExecutionRecord], list[str]]:
        """Records of many executions, asked :data:`STATUS_CHUNK` ids per request so that no reply can outgrow
        the frame limit; the requests are all in flight at once, so this costs about one round trip."""
        ids = list(execution_ids)
        messages = [
            p.Status(rid=next(self._rids), execution_ids=ids[start : start + STATUS_CHUNK])
            for start in range(0, max(len(ids), 1), STATUS_CHUNK)
        ]
        executions: list[p.ExecutionRecord] = []
        unknown: list[str] = []
        for reply in await self._requests(messages, p.StatusReply):
            executions.extend(reply.executions)
            unknown.extend(reply.unknown)
        return executions, unknown

    async def cancel(self, execution_ids: Sequence[str]) -> p.CancelReply:
        return await self._request(p.Cancel(rid=next(self._rids), execution_ids=list(execution_ids)), p.CancelReply)

    async def pause(self, execution_ids: Sequence[str], *, paused: bool = True) -> p.PauseReply:
        kind = p.Pause if paused else p.Resume
        return await self._request(kind(rid=next(self._rids), execution_ids=list(execution_ids)), p.PauseReply)

    async def server_info(self, *, records: bool = False) -> p.ServerInfoReply:
        return await self._request(p.ServerInfo(rid=next(self._rids), records=records), p.ServerInfoReply)

    async def shutdown(self) -> None:
        """Ask the server to cancel everything and exit."""
        await self._request(p.Shutdown(rid=next(self._rids)), p.OkReply)

    def open_event_stream(self) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[StreamItem]]:
        return self._fanout.open(self._lost)

    # ------------------------------------------------------------------ requests

    async def _request(self, message: p.Request, expect: type[R]) -> R:
        """Send one request and wait for its reply; see :meth:`_requests`."""
        return (await self._requests([message], expect))[0]

    async def _requests(self, messages: Sequence[p.Request], expect: type[R]) -> list[R]:
        """Send requests back to back (all in flight at once), wait for every reply, return them in order;
        map error replies to exceptions.

        Raises: InputError for a request over ``MAX_FRAME_BYTES`` (nothing sent); the ``HcsBatchError`` an error
        reply names (the first, in order); ``ServerLostError``/``ServerRestartedError`` when the server goes
        away meanwhile; ``ConnectionClosedError`` after :meth:`close`. On cancellation the replies, if they ever
        come, are dropped.
        """
        if self._lost is not None:
            raise self._lost
        if self._closed:
            raise ConnectionClosedError(f"the connection to {self.url} is closed")
        frames = [self._frame(message) for message in messages]
        pendings = [_Pending() for _ in messages]
        for message, pending in zip(messages, pendings, strict=True):
            self._pending[message.rid] = pending
        try:
            for frame in frames:
                await self._control.send([frame])
            for pending in pendings:
                await pending.done.wait()
        finally:
            for message in messages:
                self._pending.pop(message.rid, None)
        return [self._reply_of(m, pending, expect) for m, pending in zip(messages, pendings, strict=True)]

    @staticmethod
    def _frame(message: p.Request) -> bytes:
        frame = p.encode(message)
        if len(frame) > p.MAX_FRAME_BYTES:
            # The server would refuse it with an error reply it cannot address to us (no request id readable).
            raise InputError(
                f"the {message.__struct_config__.tag} request is {len(frame)} bytes, over the protocol's "
                f"{p.MAX_FRAME_BYTES}-byte limit; send less at once (a smaller pipeline, fewer ids per request)"
            )
        return frame

    @staticmethod
    def _reply_of(message: p.Request, pending: _Pending, expect: type[R]) -> R:
        if pending.error is not None:
            raise pending.error
        reply = pending.reply
        if isinstance(reply, p.ErrorReply):
            raise error_from_code(reply.code, reply.message)
        if not isinstance(reply, expect):
            raise ProtocolError(f"expected {expect.__name__} for request {message.rid}, got {type(reply).__name__}")
        return reply

    def _on_control(self, frames: list[bytes]) -> None:
        try:
            reply = p.decode_reply(frames[-1])
        except ProtocolError:
            return  # garbage from the peer: nothing to match it to
        self._last_seen = trio.current_time()
        pending = self._pending.get(reply.rid)
        if pending is not None and not pending.done.is_set():
            pending.reply = reply
            pending.done.set()

    # ------------------------------------------------------------------ events and liveness

    def _on_event(self, frames: list[bytes]) -> None:
        try:
            event = p.decode_event(frames[-1])
        except ProtocolError:
            return
        if event.instance != self._instance:
            self._lose(
                ServerRestartedError(
                    f"server restarted: the server at {self.url} is a new instance ({event.instance}, was "
                    f"{self._instance}); the executions it was running were lost, run their plates again"
                )
            )
            return
        self._last_seen = trio.current_time()
        if event.seq > self._last_seq + 1:
            self._fanout.publish(EventGap(expected=self._last_seq + 1, received=event.seq))
        self._last_seq = max(self._last_seq, event.seq)
        self._seen.set()
        self._fanout.publish(event)

    def _lose(self, error: TransportError) -> None:
        if self._lost is not None or self._closed:
            return
        self._lost = error
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = error
                pending.done.set()
        self._fanout.end(error)

    async def _watch_liveness(self) -> None:
        while self._lost is None:
            deadline = self._last_seen + self._liveness_timeout
            if trio.current_time() >= deadline:
                self._lose(
                    ServerLostError(
                        f"server lost: no heartbeat from {self.url} for {self._liveness_timeout:g} s "
                        "(killed, frozen or unreachable)"
                    )
                )
                return
            await trio.sleep_until(deadline)

    # ------------------------------------------------------------------ life cycle

    async def _handshake(self, nursery: trio.Nursery, connect_timeout: float) -> None:
        await nursery.start(self._control.run, self._on_control)
        hello: p.HelloReply | None = None
        with trio.move_on_after(connect_timeout):
            hello = await self._request(p.Hello(rid=next(self._rids), client="hcs-batch"), p.HelloReply)
        if hello is None:
            raise ServerUnreachableError(
                f"no execution server answered at {self.url} within {connect_timeout:g} s; "
                "start one with 'hcs-batch serve' or check the address"
            )
        if hello.version != p.PROTOCOL_VERSION:
            raise ProtocolError(f"server speaks protocol {hello.version}, this client {p.PROTOCOL_VERSION}")
        self.hello = hello
        self._instance = hello.instance
        self._last_seq = hello.seq
        self._last_seen = trio.current_time()
        sub = new_socket("SUB", rcvhwm=0, subscribe=b"", **self._socket_options)
        self._events_port = hello.events_port
        sub.connect(f"tcp://{self._host}:{hello.events_port}")
        self._events = AsyncSocket(sub)
        await nursery.start(self._events.run, self._on_event)
        await self._wait_subscribed(connect_timeout)
        nursery.start_soon(self._watch_liveness)

    async def _wait_subscribed(self, limit: float) -> None:
        """Ping until an event arrives: a SUB misses what is published before its subscription lands, so
        without this the first execution's events could be lost to a fresh connection."""
        wait = 0.01
        with trio.move_on_after(limit):
            while not self._seen.is_set():
                await self._request(p.Ping(rid=next(self._rids)), p.OkReply)
                with trio.move_on_after(wait):
                    await self._seen.wait()
                wait = min(wait * 2, 0.5)
        if not self._seen.is_set():
            raise ServerUnreachableError(
                f"the server at {self.url} answers but its events (port {self._events_port}) never arrived; "
                "check that the events port is reachable"
            )

    def close(self) -> None:
        """Close both sockets; pending and later requests fail with ConnectionClosedError."""
        if self._closed:
            return
        self._closed = True
        error = ConnectionClosedError(f"the connection to {self.url} was closed")
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = error
                pending.done.set()
        self._fanout.end()
        self._control.close()
        if self._events is not None:
            self._events.close()


@asynccontextmanager
async def open_connection(
    url: str,
    *,
    connect_timeout: float = 5.0,
    liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
    socket_options: dict[str, Any] | None = None,
) -> AsyncIterator[ServerConnection]:
    """Connect to the server at ``url`` (``tcp://host:port``) and handshake.

    Raises:
        InputError: ``url`` is not of the form ``tcp://HOST:PORT``.
        ServerUnreachableError: nothing answered the handshake within ``connect_timeout``.
        ProtocolError: the server speaks another protocol version.

    The connection's tasks run in a nursery scoped to this context; leaving it closes the sockets. Once no
    heartbeat or reply arrives for ``liveness_timeout`` seconds, pending and later requests raise
    ``ServerLostError`` and event streams end with ``ConnectionLost``.
    """
    check_server_url(url)
    conn = ServerConnection(url, liveness_timeout=liveness_timeout, socket_options=socket_options or {})
    try:
        with collapse_single_exception_group():
            async with trio.open_nursery() as nursery:
                await conn._handshake(nursery, connect_timeout)
                try:
                    yield conn
                finally:
                    conn.close()
                    nursery.cancel_scope.cancel()
    finally:
        conn.close()
