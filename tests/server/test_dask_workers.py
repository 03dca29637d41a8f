"""How the dask executor sets up the workers it computes on: the allocator of the local executor's workers
(:class:`KeepHeap`, on a LocalCluster and on a lab's own ``dask worker`` processes, a restarted worker too) and, on
the LocalCluster it starts, no statistical profiler, a slow event-loop tick and slow resource monitors
(``dask_cluster.LOCAL_CLUSTER_CONFIG``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from hcs_batch.server.executor import dask as dask_executor
from hcs_batch.server.executor.dask import open_dask_runner
from tests.support.dask_cluster import dask_cluster

pytestmark = pytest.mark.slow


def _setup(dask_worker: Any = None) -> dict[str, Any]:
    """Run on a worker: what the executor set up there."""
    return {
        "pid": os.getpid(),
        "arrow_pool": os.environ.get("ARROW_DEFAULT_MEMORY_POOL"),
        "malloc_trim_env": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "plugin": "hcs-batch-keep-heap" in dask_worker.plugins,
        "profiler": "profile" in dask_worker.periodic_callbacks,
        "tick_s": dask_worker._tick_interval,
        "memory_monitor_ms": dask_worker.periodic_callbacks["memory_monitor"].callback_time,
        "system_monitor_ms": dask_worker.periodic_callbacks["monitor"].callback_time,
    }


async def test_a_local_clusters_workers_keep_the_heap_and_run_no_profiler() -> None:
    with trio.fail_after(120):
        async with open_dask_runner(workers=2) as runner:
            found = await trio.to_thread.run_sync(runner.client.run, _setup)
            # The server's client reaches the scheduler in-process; workers and manifests name its TCP address.
            assert str(runner.client.scheduler.address).startswith("inproc://")
            assert runner.scheduler.startswith("tcp://127.0.0.1:")
            assert {str(w).rsplit(":", 1)[0] for w in found} == {"tcp://127.0.0.1"}
    assert len(found) == 2
    for setup in found.values():
        assert setup["pid"] != os.getpid()  # worker processes, not threads of this one
        assert setup["arrow_pool"] == "system" and setup["plugin"]
        assert setup["malloc_trim_env"] is None  # the nanny's MALLOC_TRIM_THRESHOLD_ is not set
        assert not setup["profiler"] and setup["tick_s"] == 1.0
        assert setup["memory_monitor_ms"] == 1000 and setup["system_monitor_ms"] == 5000


async def test_a_labs_workers_get_the_allocator_plugin_a_restarted_one_too(tmp_path: Path) -> None:
    with dask_cluster(tmp_path / "dask", workers=2) as cluster, trio.fail_after(120):
        async with open_dask_runner(scheduler=cluster.scheduler.address) as runner:
            client = runner.client
            before = await trio.to_thread.run_sync(client.run, _setup)
            assert set(before) == cluster.worker_addresses
            assert all(s["arrow_pool"] == "system" and s["plugin"] for s in before.values())
            victim = sorted(before)[0]
            processes = await trio.to_thread.run_sync(dask_executor._worker_processes, client, [victim])
            await trio.to_thread.run_sync(dask_executor._end_worker_processes, client, [victim])
            assert await trio.to_thread.run_sync(dask_executor._wait_replaced, client, processes, 60.0) == []
            await trio.to_thread.run_sync(client.wait_for_workers, 2, 60.0)  # the nanny's fresh worker
            after = await trio.to_thread.run_sync(client.run, _setup)
    [fresh] = [s for s in after.values() if s["pid"] not in {b["pid"] for b in before.values()}]
    assert fresh["arrow_pool"] == "system" and fresh["plugin"]
