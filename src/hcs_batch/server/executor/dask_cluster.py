"""Where the ``dask`` executor's cluster is, and how the server becomes its client (see :mod:`.dask`).

``--scheduler tcp://127.0.0.1:PORT`` (a scheduler on this machine) or ``tls://HOST:PORT`` (TLS set up in the
Dask configuration, ``distributed.comm.tls``), or ``--scheduler-file`` as ``dask scheduler --scheduler-file`` and
dask-jobqueue write it. A ``tcp://`` scheduler on another host is refused: a Dask scheduler runs whatever its
clients send, so it must not listen where others can reach it. With neither, a LocalCluster is started here: one
single-threaded worker process per ``workers`` (default: CPU count), each under a nanny, scheduler and workers on
127.0.0.1, no dashboard.

The server registers :class:`KeepHeap` on every cluster it uses, and starts a LocalCluster with
``LOCAL_CLUSTER_CONFIG``.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dask
import distributed as _distributed
from distributed.diagnostics.plugin import WorkerPlugin

from ...errors import InputError
from ..allocator import keep_heap
from .local import default_workers

distributed: Any = _distributed  # its functions carry no annotations mypy --strict accepts

__all__ = [
    "CONNECT_TIMEOUT",
    "LOCAL_CLUSTER_CONFIG",
    "KeepHeap",
    "check_scheduler_address",
    "close",
    "connect",
    "scheduler_from_file",
]

CONNECT_TIMEOUT = 10.0
"""Seconds the client waits for a scheduler to answer (also its reconnect window after losing one)."""
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    # Dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers, which turns off glibc's adaptive mmap threshold:
    # every image-sized array becomes a fresh mmap, and a well cost 40% more CPU (1024-pixel images: 90 ms
    # against 64 ms). :class:`KeepHeap` sets both thresholds in the worker instead.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # The worker's statistical profiler samples the task thread's stack every 10 ms on the worker's event loop:
    # ~50 ms of CPU per well of four 2,048-pixel images (~10%), for a dashboard page we do not serve.
    "distributed.worker.profile.enabled": False,
    # Every server (the scheduler, the nannies, each worker) checks its event loop's health every 20 ms: ~10 ms of
    # a worker's CPU per such well. Once a second still tells a blocked loop (warned about after 3 s).
    "distributed.admin.tick.interval": "1s",
    # Each nanny (in the server's process) checks its worker's memory every 100 ms, and each worker its own: at
    # idle ~9 ms/s of the server's CPU and ~7 ms/s of the workers'. Once a second still ends a worker that outgrows
    # its memory limit, and pauses one that nears it.
    "distributed.worker.memory.monitor-interval": "1s",
    # Every server records CPU, memory, network and disk counters twice a second, for dashboards we do not serve:
    # ~5 ms/s of the server's CPU and ~4 ms/s of the workers' (the disk counters are half of it).
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
}
"""The Dask configuration of a LocalCluster started here (docs/cluster.md gives the same for a lab's cluster)."""


class KeepHeap(WorkerPlugin):
    """Registered on every worker of the cluster (those that join later too): the worker's malloc and Arrow pool
    are tuned as the local executor's worker processes are (:func:`..allocator.keep_heap`). Without it a worker
    faulted in ~6,000 pages per well of four 2,048-pixel images against ~1,000 with it (as the local workers)."""

    idempotent = True  # a second server on the same cluster finds it in place

    def setup(self, worker: Any) -> None:
        keep_heap()


def check_scheduler_address(address: str) -> str:
    """``address`` if the server may be a client of a scheduler there: ``tcp://`` on loopback, or ``tls://``.

    Raises:
        InputError: another scheme, no port, or ``tcp://`` to a host that is not loopback.
    """
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
        parts = urlsplit("")
    if parts.scheme not in ("tcp", "tls") or not host or port is None:
        raise InputError(f"Dask scheduler address {address!r} must look like tcp://127.0.0.1:PORT or tls://HOST:PORT")
    if parts.scheme == "tcp" and host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InputError(
                f"refusing the Dask scheduler {address}: a scheduler runs what its clients send, so beyond this "
                "machine use tls:// (TLS certificates in the Dask configuration, distributed.comm.tls)"
            )
    return address


def scheduler_from_file(path: str) -> str:
    """The ``address`` a scheduler file (``dask scheduler --scheduler-file``, dask-jobqueue) names.

    Raises:
        InputError: the file cannot be read, is not JSON or names no string address.
    """
    try:
        address = json.loads(Path(path).read_text(encoding="utf-8"))["address"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read a Dask scheduler address from {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(address, str):
        raise InputError(f"the scheduler file {path} has no string 'address'")
    return address


def connect(scheduler: str | None, scheduler_file: str | None, workers: int | None) -> tuple[Any, Any, str]:
    """In a thread: a client of the scheduler at ``scheduler``, named in ``scheduler_file`` or, with neither, of a
    LocalCluster of ``workers`` (default: CPU count) processes started here; returns (client, that cluster or
    None, the scheduler's address as workers and manifests name it). :class:`KeepHeap` is registered on the
    cluster's workers.

    The client of a LocalCluster started here talks to its scheduler through an in-process listener (queues
    between the client's and the cluster's event-loop threads: no socket, no serialization), ~0.5 ms less of the
    server's CPU per well; the workers use its loopback TCP listener.

    Raises:
        InputError: both given, a refused address (:func:`check_scheduler_address`), an unreadable scheduler file,
            or no scheduler answering within ``CONNECT_TIMEOUT`` seconds.
    """
    if scheduler is not None and scheduler_file is not None:
        raise InputError("give --scheduler or --scheduler-file, not both")
    if scheduler_file is not None:
        scheduler = scheduler_from_file(scheduler_file)
    cluster = None
    if scheduler is None:
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            cluster = distributed.LocalCluster(
                n_workers=workers or default_workers(),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                scheduler_port=0,
                dashboard_address=None,
                scheduler_kwargs={
                    # The scheduler serves /health on HTTP even without a dashboard, by default on port 8787
                    # (taken by any other cluster on this machine): a free loopback port instead.
                    "dashboard_address": "127.0.0.1:0",
                    # Loopback TCP first (its address is the scheduler's, which the workers get), then one only
                    # this process can reach, for the server's client.
                    "protocol": ["tcp://", "inproc://"],
                    "host": ["127.0.0.1", None],
                    "port": [0, None],
                },
            )
        scheduler = str(cluster.scheduler_address)
    check_scheduler_address(scheduler)
    address = _in_process_address(cluster) or scheduler
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        client.register_plugin(KeepHeap(), name="hcs-batch-keep-heap")
    except Exception:
        close(client, cluster)
        raise
    return client, cluster, scheduler


def _in_process_address(cluster: Any) -> str | None:
    """The in-process listener of the scheduler of ``cluster`` (a LocalCluster started here), if it has one."""
    listeners = cluster.scheduler.listeners if cluster is not None else []
    return next((str(x.contact_address) for x in listeners if str(x.contact_address).startswith("inproc://")), None)


def close(client: Any, cluster: Any) -> None:
    """Close ``client``, then ``cluster`` when there is one (its worker processes end)."""
    client.close()
    if cluster is not None:
        cluster.close()
