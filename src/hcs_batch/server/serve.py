"""The execution server: compile plates against pipelines, execute them on an executor (worker processes or a
Dask cluster), publish events.

Entry point: :func:`serve` (a long-running task for ``nursery.start``) and :func:`open_embedded_server` (a server
inside the caller's Trio run).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import urlsplit

import trio

from .._util import collapse_single_exception_group
from .._zmq import AsyncSocket, Frames, new_socket
from ..errors import InputError
from ..protocol import MAX_FRAME_BYTES
from ..runtime.thread_lane import ThreadLane
from ..security import ServerKeys, authorized_sockets, check_bind
from .allowlist import StepAllowlist
from .control import ControlApp, ServerAddress
from .events import EVENT_SNDHWM, EventPublisher
from .executor import Executor, open_well_runner
from .roots import Roots

if TYPE_CHECKING:
    from .worker_pool import WorkerPool

__all__ = ["EmbeddedOptions", "ServeOptions", "ServerAddress", "open_embedded_server", "parse_bind", "serve"]

log = logging.getLogger("hcs_batch.server")

_LOOPBACK_NAMES = {"localhost": "127.0.0.1"}
_REPLY_FLUSH = 0.05
"""Seconds the sockets stay open after ``Shutdown`` so the reply and final state events leave (LINGER is 0)."""
_ROUTER_HWM = 1_000_000
"""A ROUTER drops replies beyond its send high-water mark: far above any number of requests in flight."""
_MAX_RECEIVE = 8 * MAX_FRAME_BYTES
"""libzmq drops the connection of a peer that sends a bigger frame, before buffering it: nobody can make the
server allocate gigabytes. Frames between MAX_FRAME_BYTES and this still get an error reply."""
_LANE_BATCH = 64
"""Calls per thread hop on each of the server's file-system lanes. Every caller of a batch wakes in the same Trio
tick (in guest mode, one GUI tick): 64 no-op plates finishing at once stay well under a 16 ms tick."""


def parse_bind(bind: str, keys: ServerKeys | None = None) -> tuple[str, int]:
    """Split ``tcp://HOST:PORT`` into a host to bind and a port (0: any free port).

    Without ``keys`` only loopback (127.x.x.x, localhost, ::1) is allowed; with CurveZMQ keys any host or
    interface ZeroMQ accepts (the any-address, an address, an interface name).

    Raises:
        InputError: not a ``tcp://host:port`` URL.
        SecurityError: a non-loopback host without ``keys``.
    """
    try:
        parts = urlsplit(bind)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise InputError(f"cannot parse bind address {bind!r}; use tcp://127.0.0.1:PORT") from None
    if parts.scheme != "tcp" or host is None or port is None:
        raise InputError(f"bind address {bind!r} must look like tcp://127.0.0.1:PORT")
    check_bind(bind, keys)
    return _LOOPBACK_NAMES.get(host, host), port


def _ignore(frames: Frames) -> None:
    """A PUB socket receives nothing."""


async def serve(
    bind: str = "tcp://127.0.0.1:0",
    *,
    workers: int | None = None,
    warm_workers: bool = True,
    keys: ServerKeys | None = None,
    allow_steps: Sequence[str] = (),
    data_roots: Sequence[str | Path] = (),
    output_roots: Sequence[str | Path] = (),
    allow_remote_shutdown: bool = False,
    shutdown_token: str = "",
    stop: trio.Event | None = None,
    max_wells_per_worker: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    worker_pool: WorkerPool | None = None,
    task_status: trio.TaskStatus[ServerAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an execution server until cancelled, ``stop`` is set, or a client is allowed to shut it down.

    Trust (see ``docs/reliability.md``, "Trust model"): steps run only from ``hcs_batch.steps``, the registered
    step packages and the ``allow_steps`` module prefixes; plates are read only below ``data_roots`` and results
    written only below ``output_roots`` (each default: the working directory). A ``Shutdown`` request is obeyed
    only with ``allow_remote_shutdown`` or when it carries ``shutdown_token`` (when one is set).

    With ``keys`` (:func:`hcs_batch.security.load_server_keys`) both sockets are CurveZMQ servers: only the
    clients ``keys`` authorizes complete a handshake; any other peer gets nothing, and ``bind`` may be any host.

    Binds the control ROUTER at ``bind`` (port 0: a free port) and the event PUB at PORT+1 (a free port when
    ``bind`` asks for port 0), then reports ``task_status.started(ServerAddress(...))``.

    Wells run on the ``executor``: ``local`` (default), ``workers`` (default: CPU count) worker processes started
    in the background right away (``warm_workers=False``: on first use); or ``dask``, a client of the Dask
    scheduler at ``scheduler`` (``tcp://127.0.0.1:PORT`` or ``tls://HOST:PORT``) or named in ``scheduler_file``,
    or with neither a LocalCluster of ``workers`` processes on 127.0.0.1 (see :mod:`.executor.dask`). With
    ``max_wells_per_worker`` each local worker retires after that many wells and a fresh one takes its place
    (:func:`hcs_batch.server.executor.open_worker_context`). ``worker_pool`` (local only, instead of ``workers``
    and ``max_wells_per_worker``) is a :class:`.worker_pool.WorkerPool` its host opened, and perhaps started,
    before the server (``hcs-batch run`` does, so that the workers start while the rest imports): the wells run
    there and the pool stays open when the server stops.

    Raises:
        InputError: a malformed ``bind``, or the address cannot be bound (e.g. in use); a bad ``allow_steps``
            prefix or a data root that is not a folder; ``workers`` or ``max_wells_per_worker`` below 1; an
            unknown executor, or a Dask scheduler that is refused or unreachable; a ``worker_pool`` with
            ``workers``, ``max_wells_per_worker`` or ``dask``.
        SecurityError: a non-loopback ``bind`` without ``keys``; another ZAP handler owns this process.

    On ``stop`` or an allowed ``Shutdown``: a ``shutdown`` event is published first, then every execution is
    cancelled (its workers killed), idle workers are stopped, and both sockets are closed before this returns.
    On cancellation the same, the event best effort (the sockets close at once).
    """
    host, port = parse_bind(bind, keys)
    allowlist = StepAllowlist.build(allow_steps)
    roots = await trio.to_thread.run_sync(Roots.build, data_roots, output_roots)
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if max_wells_per_worker is not None and max_wells_per_worker < 1:
        raise InputError(f"max-wells-per-worker must be at least 1, got {max_wells_per_worker}")
    ipv6 = {"ipv6": 1} if ":" in host else {}
    url_host = f"[{host}]" if ipv6 else host
    # The authentication handler is live before the sockets exist and stays so until they are closed:
    # a CURVE socket with nobody answering authentication lets every client in.
    zap = contextlib.ExitStack()
    curve = zap.enter_context(authorized_sockets(keys)) if keys is not None else {}
    router = new_socket("ROUTER", sndhwm=_ROUTER_HWM, rcvhwm=_ROUTER_HWM, maxmsgsize=_MAX_RECEIVE, **ipv6, **curve)
    pub = new_socket("PUB", sndhwm=EVENT_SNDHWM, **ipv6, **curve)
    control = AsyncSocket(router)
    events = AsyncSocket(pub)
    try:
        try:
            if port == 0:
                port = router.bind_to_random_port(f"tcp://{url_host}")
                events_port = pub.bind_to_random_port(f"tcp://{url_host}")
            else:
                router.bind(f"tcp://{url_host}:{port}")
                events_port = port + 1
                pub.bind(f"tcp://{url_host}:{events_port}")
        except Exception as exc:  # zmq.ZMQError; only _zmq may name zmq
            raise InputError(f"cannot bind {bind} (events on the next port): {exc}") from None
        address = ServerAddress(
            control_url=f"tcp://{url_host}:{port}", events_port=events_port, shutdown_token=shutdown_token
        )
        publisher = EventPublisher(events, uuid.uuid4().hex)
        # Worker threads for the server's small blocking file-system calls: many plates share one thread hop,
        # and nothing touches the disk on the Trio thread. Separate lanes, so that a plate folder on a hung network
        # share (input) cannot hold up the result files of other plates (output), nor the other way round, and an
        # execute request's output-folder check (check) never waits behind queued result files and plate maps.
        input_lane = ThreadLane(max_batch=_LANE_BATCH)
        output_lane = ThreadLane(max_batch=_LANE_BATCH)
        check_lane = ThreadLane(max_batch=_LANE_BATCH)
        runner_cm = open_well_runner(
            executor,
            workers=workers,
            scheduler=scheduler,
            scheduler_file=scheduler_file,
            max_wells_per_worker=max_wells_per_worker,
            worker_pool=worker_pool,
        )
        async with runner_cm as runner:
            async with trio.open_nursery() as io_nursery:
                await io_nursery.start(events.run, _ignore)
                # In io_nursery: it outlives every execution and compile (the work nursery ends first).
                await io_nursery.start(input_lane.serve)
                await io_nursery.start(output_lane.serve)
                await io_nursery.start(check_lane.serve)
                shutdown = stop if stop is not None else trio.Event()
                async with trio.open_nursery() as work:
                    lifecycle = Executor(nursery=work, runner=runner, publisher=publisher, lane=output_lane)
                    records = lifecycle.records
                    app = ControlApp(
                        router=control,
                        nursery=work,
                        executor=lifecycle,
                        publisher=publisher,
                        address=address,
                        shutdown=shutdown,
                        lane=input_lane,
                        allowlist=allowlist,
                        roots=roots,
                        check_lane=check_lane,
                        allow_remote_shutdown=allow_remote_shutdown,
                    )
                    await io_nursery.start(control.run, app.on_frames)
                    io_nursery.start_soon(publisher.run_heartbeat, lambda: (records.queued, records.running))
                    if warm_workers:
                        work.start_soon(lifecycle.warm_up)
                    log.info(
                        "serving on %s (events on %d), %s executor, %d workers",
                        address.control_url,
                        events_port,
                        runner.executor,
                        runner.workers,
                    )
                    log.info(
                        "steps allowed from %s; data roots %s; output roots %s",
                        ", ".join(allowlist.prefixes),
                        ", ".join(map(str, roots.data)),
                        ", ".join(map(str, roots.output)),
                    )
                    task_status.started(address)
                    try:
                        await shutdown.wait()
                    finally:
                        # First of all (also when cancelled): clients fail their live plates at once.
                        publisher.shutdown("server shut down")
                    log.info("shutdown requested: cancelling every execution")
                    app.stopping = True
                    work.cancel_scope.cancel()
                # Every execution has published its final state by now; let it and the reply leave.
                await trio.sleep(_REPLY_FLUSH)
                io_nursery.cancel_scope.cancel()
    finally:
        control.close()
        events.close()
        zap.close()


class EmbeddedOptions(TypedDict, total=False):
    """What :func:`open_embedded_server` passes on to :func:`serve` (each as documented there)."""

    workers: int | None
    warm_workers: bool
    keys: ServerKeys | None
    allow_steps: Sequence[str]
    data_roots: Sequence[str | Path]
    output_roots: Sequence[str | Path]
    max_wells_per_worker: int | None
    executor: str
    scheduler: str | None
    scheduler_file: str | None
    worker_pool: WorkerPool | None


class ServeOptions(EmbeddedOptions, total=False):
    """What ``hcs-batch serve`` passes on to :func:`serve`: an embedded server's options and remote shutdown."""

    allow_remote_shutdown: bool


@asynccontextmanager
async def open_embedded_server(**options: Unpack[EmbeddedOptions]) -> AsyncIterator[ServerAddress]:
    """Run a server on a free loopback port inside the caller's Trio run, for as long as the block lasts
    (under CurveZMQ ``keys`` when given; ``allow_steps``, ``data_roots``, ``output_roots``,
    ``max_wells_per_worker``, ``worker_pool`` and the ``executor`` options as in :func:`serve`).

    The address carries a fresh ``shutdown_token``: the embedding host (and only it) may shut the server down.
    Leaving the block cancels every execution, stops the workers and closes the sockets. Worker processes use
    the ``spawn`` start method: a script that embeds a server must guard its entry point with
    ``if __name__ == "__main__":``.
    """
    with collapse_single_exception_group():
        async with trio.open_nursery() as nursery:
            address: Any = await nursery.start(partial(serve, shutdown_token=secrets.token_urlsafe(24), **options))
            try:
                yield address
            finally:
                nursery.cancel_scope.cancel()
