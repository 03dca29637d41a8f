"""The event publisher: every event numbered (``seq``, from 1) per server instance, plus a heartbeat.

Events go out on a PUB socket. Its send high-water mark is :data:`EVENT_SNDHWM` per subscriber: a PUB drops
messages beyond it, so it is far above any burst an execution makes (one progress event per well and step), and
a terminal state event after a burst is not lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from .. import protocol as p
from .._zmq import AsyncSocket
from ..errors import ConnectionClosedError

__all__ = ["EVENT_SNDHWM", "EventPublisher"]

EVENT_SNDHWM = 2_000_000


class EventPublisher:
    """Numbers and sends events on ``sock`` (a PUB :class:`AsyncSocket` whose ``run`` someone owns).

    Publishing never blocks; events published after the socket closed are dropped (the server is stopping).
    """

    __slots__ = ("_sock", "instance", "seq")

    def __init__(self, sock: AsyncSocket, instance: str) -> None:
        self._sock = sock
        self.instance = instance
        self.seq = 0
        """The number of the last event published (0: none yet)."""

    def _publish(self, kind: Callable[..., p.Event], **fields: Any) -> None:
        """Number one event made by ``kind`` (an event class or builder taking ``seq`` and ``instance``), send it."""
        self._send(kind(seq=self._next(), instance=self.instance, **fields))

    def _next(self) -> int:
        """Number the next event."""
        self.seq += 1
        return self.seq

    def _send(self, event: p.Event) -> None:
        try:
            self._sock.send_nowait([p.encode(event)])
        except ConnectionClosedError:
            pass

    def progress(self, execution: p.ExecutionFacts, *, well: str, step: str, done: int, total: int) -> None:
        """``done`` of ``total`` (well, step) units of ``execution`` finished (``step`` empty: ``well`` started)."""
        self._publish(partial(p.progress_event, execution), well=well, step=step, done=done, total=total)

    def state(self, record: p.ExecutionRecord) -> None:
        """An execution's state as its status ``record`` says it (its error already clipped there)."""
        self._send(p.state_event(record, seq=self._next(), instance=self.instance))

    def heartbeat(self, *, queued: int, running: int) -> None:
        self._publish(p.HeartbeatEvent, time=time.time(), queued=queued, running=running)

    def shutdown(self, reason: str) -> None:
        """Announce that the server is stopping (before anything is cancelled)."""
        self._publish(p.ShutdownEvent, reason=reason[:256])

    async def run_heartbeat(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Publish a heartbeat with ``counts()`` = (queued, running) every ``HEARTBEAT_INTERVAL``, first at once.

        Runs until cancelled.
        """
        next_at = trio.current_time()
        while True:
            queued, running = counts()
            self.heartbeat(queued=queued, running=running)
            next_at += p.HEARTBEAT_INTERVAL
            await trio.sleep_until(next_at)
