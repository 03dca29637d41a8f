"""Trio-native ZeroMQ sockets over pyzmq: the one module that imports ``zmq``.

pyzmq has no Trio integration. :class:`AsyncSocket` gives each pyzmq socket one owning task (:meth:`run`) that
waits on ``zmq.FD`` with ``trio.lowlevel.wait_readable``. That FD is edge-triggered: it only signals a *change*,
so after every send or recv the owner re-reads ``zmq.EVENTS`` and waits only when nothing is ready. Sends from
other tasks go straight to the socket when they can (no task switch) and otherwise queue for the owner; a send
that leaves input pending wakes the owner, which would otherwise sleep on an edge that already passed.
Sockets are made with LINGER 0, so closing never blocks on unsent messages.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import trio
import zmq

from .errors import ConnectionClosedError

__all__ = [
    "AsyncSocket",
    "Frames",
    "context",
    "curve_keypair",
    "has_curve",
    "load_certificate",
    "new_socket",
    "z85_encode",
]

Frames = list[bytes]

_RECV_BATCH = 256
"""Messages handled per wake-up before the owner yields, so a flood cannot starve other tasks."""
_RECV_SLICE_S = 0.002
"""Nor longer than this per wake-up: in guest mode one step of this task is part of a GUI tick (a burst of 256
events of a 10,000-plate screen took ~12 ms)."""


def context() -> zmq.Context[Any]:
    """The process-wide ZeroMQ context (never terminated: every socket closes with LINGER 0)."""
    return zmq.Context.instance()


def has_curve() -> bool:
    """True when this libzmq supports CurveZMQ encryption."""
    return bool(zmq.has("curve"))


def curve_keypair() -> tuple[bytes, bytes]:
    """A new CurveZMQ (public, secret) key pair, Z85-encoded."""
    public, secret = zmq.curve_keypair()
    return public, secret


def load_certificate(path: str) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a ZeroMQ certificate file (``hcs-batch keys generate``).

    Raises ValueError or OSError for a missing or malformed file.
    """
    import zmq.auth

    public, secret = zmq.auth.load_certificate(path)
    return public, secret


def z85_encode(raw: bytes) -> bytes:
    """The Z85 text form of a raw 32-byte CurveZMQ key (as ZAP requests carry them)."""
    from zmq.utils.z85 import encode

    return encode(raw)


def new_socket(kind: str, **options: Any) -> zmq.Socket[Any]:
    """A new pyzmq socket of ``kind`` (``"DEALER"``, ``"ROUTER"``, ``"PUB"``, ``"SUB"``) with LINGER 0.

    ``options`` are socket options by pyzmq name in lower case, e.g. ``sndhwm=100_000``.
    """
    sock: zmq.Socket[Any] = context().socket(getattr(zmq, kind))
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name.upper()), value)
    return sock


class AsyncSocket:
    """A pyzmq socket driven by one Trio task.

    Start :meth:`run` in a nursery (``await nursery.start(sock.run, on_message)``); it delivers every incoming
    multipart message to ``on_message`` (a plain function that must not block) and sends what is queued.
    :meth:`send` may be called from any task of the same Trio run.
    """

    def __init__(self, sock: zmq.Socket[Any], *, max_queued: int = 100_000) -> None:
        self._sock = sock
        self._fd: int = cast(int, sock.getsockopt(zmq.FD))
        self._outbox: collections.deque[Sequence[bytes]] = collections.deque()
        self._max_queued = max_queued
        self._room = trio.Event()
        self._room.set()
        self._wake_scope: trio.CancelScope | None = None
        self._running = False
        self._closed = False

    @property
    def zmq_socket(self) -> zmq.Socket[Any]:
        """The underlying socket, for binding, connecting and options before :meth:`run` starts."""
        return self._sock

    @property
    def closed(self) -> bool:
        return self._closed

    def send_nowait(self, frames: Sequence[bytes]) -> None:
        """Send a multipart message now, or queue it for the owner if the socket cannot take it yet.

        Raises:
            ConnectionClosedError: the socket was closed.
        """
        if self._closed:
            raise ConnectionClosedError("the socket is closed")
        if not self._outbox:
            try:
                self._sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._outbox.append(frames)
        else:
            self._outbox.append(frames)
        if len(self._outbox) >= self._max_queued:
            self._room = trio.Event()
        self._wake_if_needed()

    async def send(self, frames: Sequence[bytes]) -> None:
        """Like :meth:`send_nowait`, but first waits while the queue is full. Cancellation: nothing sent."""
        while len(self._outbox) >= self._max_queued:
            await self._room.wait()
        await trio.lowlevel.checkpoint_if_cancelled()
        self.send_nowait(frames)

    def _events(self) -> int:
        return cast(int, self._sock.getsockopt(zmq.EVENTS))

    def _wake_if_needed(self) -> None:
        # Our own send may have consumed the FD's edge while input or room is pending: wake the owner to look.
        scope = self._wake_scope
        if scope is not None and (self._outbox or self._events() & zmq.POLLIN):
            scope.cancel()

    def _flush(self) -> None:
        sock, outbox = self._sock, self._outbox
        while outbox:
            try:
                sock.send_multipart(outbox[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            outbox.popleft()
        if len(outbox) < self._max_queued:
            self._room.set()

    async def run(
        self,
        on_message: Callable[[Frames], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the socket until :meth:`close` or cancellation, then close it (LINGER 0).

        Exceptions raised by ``on_message`` propagate and close the socket. Returns normally after
        :meth:`close`; on cancellation the socket is closed and ``Cancelled`` propagates.
        """
        if self._running:
            raise trio.BusyResourceError("AsyncSocket.run is already running")
        self._running = True
        sock = self._sock
        task_status.started()
        try:
            while not self._closed:
                events = self._events()
                if self._outbox and events & zmq.POLLOUT:
                    self._flush()
                    events = self._events()
                if events & zmq.POLLIN:
                    until = time.perf_counter() + _RECV_SLICE_S
                    for _ in range(_RECV_BATCH):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        on_message(frames)
                        if self._closed:
                            return
                        if time.perf_counter() > until:
                            break
                    await trio.lowlevel.checkpoint()
                    continue
                with trio.CancelScope() as self._wake_scope:
                    try:
                        await trio.lowlevel.wait_readable(self._fd)
                    except trio.ClosedResourceError:
                        return
                self._wake_scope = None
        finally:
            self._wake_scope = None
            self._close_now()

    def close(self) -> None:
        """Close the socket: the owner returns, later sends raise ConnectionClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._wake_scope is not None:
            self._wake_scope.cancel()
        if not self._running:
            self._close_now()

    def _close_now(self) -> None:
        self._closed = True
        self._room.set()
        if not self._sock.closed:
            try:
                trio.lowlevel.notify_closing(self._fd)
            except RuntimeError:  # pragma: no cover - outside a Trio run
                pass
            self._sock.close(linger=0)
