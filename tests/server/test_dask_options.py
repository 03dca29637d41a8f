"""The executor options as a user meets them: refused combinations and addresses, one line and exit 2, no Dask
client made to a scheduler the server must not trust; the local executor's provenance."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.errors import InputError
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.server import ServerAddress, open_embedded_server
from hcs_batch.server.executor.dask_cluster import check_scheduler_address
from tests.support.procs import descendants, survivors
from tests.support.serverproc import env, free_port_pair, wait_for_pids

from .helpers import read_csv, wait_terminal


@pytest.mark.parametrize(
    "address",
    [
        "tcp://10.0.0.5:8786",  # beyond loopback without TLS: anyone there could run code through the scheduler
        "tcp://0.0.0.0:8786",
        "tcp://example.org:8786",
        "inproc://x",
        "ws://127.0.0.1:8786",
        "tcp://127.0.0.1",  # no port
        "127.0.0.1:8786",
        "tcp://[::1:8786",
    ],
)
def test_refused_scheduler_addresses(address: str) -> None:
    with pytest.raises(InputError, match="scheduler"):
        check_scheduler_address(address)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "tcp://localhost:1", "tcp://[::1]:8786", "tls://hpc:8786"])
def test_accepted_scheduler_addresses(address: str) -> None:
    assert check_scheduler_address(address) == address


def _hcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], env=env(), capture_output=True, text=True, timeout=60
    )


def test_cli_refuses_bad_executor_options(plates: list[Path], tmp_path: Path) -> None:
    plate = str(plates[0])
    cases = [
        (["run", plate, "--executor", "dask", "--scheduler", "tcp://10.0.0.5:8786"], "tls://"),
        (["run", plate, "--scheduler", "tcp://127.0.0.1:8786"], "--executor dask"),
        (["compile", plate, "--executor", "dask", "--scheduler-file", str(tmp_path / "missing.json")], "missing.json"),
        (["run", plate, "--server", "tcp://127.0.0.1:7700", "--executor", "dask"], "embedded server"),
        (["serve", "--bind", f"tcp://127.0.0.1:{free_port_pair()}", "--executor", "dask", "--scheduler",
          "tcp://192.168.1.20:8786"], "tls://"),
    ]  # fmt: skip
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps({"address": "tcp://10.1.1.1:8786"}))
    cases.append((["run", plate, "--executor", "dask", "--scheduler-file", str(bad_file)], "tls://"))
    for args, says in cases:
        proc = _hcs(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (args, proc.stderr)
    assert not (tmp_path / "hcs-results").exists()


async def test_the_local_executor_records_its_worker_pids(plates: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with trio.fail_after(60):
        async with open_embedded_server(workers=2) as address:
            assert isinstance(address, ServerAddress)
            async with open_connection(address.control_url) as conn:
                compiled = await conn.compile(
                    plate_path=str(plates[0]), plate_name="p", pipeline=default_pipeline_text()
                )
                run = await conn.execute(compiled.artifact_id, output_dir=str(out))
                assert (await wait_terminal(conn, [run]))[run].state == "completed"
    header, rows = read_csv(out / "p" / "wells.csv")
    assert header[7:9] == ["file", "worker"]  # docs/output.md: worker follows file
    pids = {int(r["worker"].removeprefix("local:")) for r in rows if r["worker"].startswith("local:")}
    assert len(pids) == len({r["worker"] for r in rows}) >= 1  # every row names a local worker pid
    assert os.getpid() not in pids  # computed in worker processes, not in the (embedding) server's
    assert all(pid > 1 for pid in pids)
    manifest = json.loads((out / "p" / "manifest.json").read_text())
    assert manifest["executor"] == "local" and manifest["scheduler"] is None


async def test_ctrl_c_on_run_with_a_local_cluster_exits_130_and_leaves_no_process(
    plates: list[Path], tmp_path: Path
) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    pipeline = tmp_path / "hold.toml"
    pipeline.write_text(f"[[steps]]\nfunc = 'tests.support.slow_steps:hold'\npid_dir = '{pid_dir}'\n")
    cmd = [sys.executable, "-m", "hcs_batch", "run", *map(str, plates), "--pipeline", str(pipeline), "--json"]
    cmd += ["--output", str(tmp_path / "out"), "--executor", "dask", "--workers", "2"]
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with trio.fail_after(120), stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        async with trio.open_nursery() as nursery:
            run = functools.partial(trio.run_process, cmd, env=env(), stdout=stdout, stderr=stderr, check=False)
            proc = await nursery.start(run)
            held = await wait_for_pids(pid_dir, 2)  # a well of each plate blocked in its step, one per worker
            tree = descendants(proc.pid)  # the LocalCluster's nannies and workers
            assert held <= tree
            proc.send_signal(signal.SIGINT)
    assert proc.returncode == 130, stderr_path.read_text()[-3000:]
    summary = json.loads(stdout_path.read_text())
    assert summary["counts"] == {"cancelled": 2}
    assert survivors(tree) == {}
