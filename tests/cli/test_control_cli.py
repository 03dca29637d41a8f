"""The control commands against real servers (``hcs-batch serve`` subprocesses, driven through the CLI as a
user would): pause/resume, cancel one, status as data, the server browser, shutdown, per-plate settings."""

from __future__ import annotations

import csv
import datetime
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
from hcs_batch.protocol import HeartbeatEvent, StateEvent
from hcs_batch.server import open_embedded_server
from hcs_batch.testing import make_plates
from tests.support.procs import alive, descendants
from tests.support.serverproc import GATE_PIPELINE, env, gated_server, reap, start_server, wait_for_pids
from tests.support.slow_steps import release_gate


def _hcs_blocking(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, env=env(), timeout=timeout
    )


async def hcs(*args: str, limit: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``hcs-batch ARGS`` in a subprocess (in a thread, so the test's Trio loop goes on), killed after
    ``limit`` seconds (a hang guard)."""
    return await trio.to_thread.run_sync(functools.partial(_hcs_blocking, *args, timeout=limit))


def entry_files(folder: Path) -> list[str]:
    return [p.name for p in folder.glob("server-*.json")]


async def executions(url: str) -> list[dict[str, object]]:
    result = await hcs("status", "--server", url, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"server", "executions"}
    assert document["server"]["url"] == url and {"queued", "running", "workers"} <= set(document["server"])
    for record in document["executions"]:
        assert {"execution_id", "plate", "state", "wells_done", "wells_total"} <= set(record)
    shown = [document["server"], *document["executions"]]
    assert not any({"kind", "rid"} & set(part) for part in shown), "protocol fields leak into status --json"
    return list(document["executions"])


async def test_pause_holds_wells_done_and_the_run_completes_after_resume(tmp_path: Path, gate_dir: Path) -> None:
    (plate,) = make_plates(tmp_path / "plates", plates=1, wells=6, sites=1, channels=1, size=16, seed=1)
    pipeline = tmp_path / "gated.toml"
    pipeline.write_text(GATE_PIPELINE.format(gate_dir=gate_dir))
    out = tmp_path / "out"
    with trio.fail_after(180):
        async with gated_server(gate_dir, stop_cleanly=True) as srv, trio.open_nursery() as nursery:
            run: list[subprocess.CompletedProcess[str]] = []

            async def batch() -> None:
                argv = ("run", str(plate), "--server", srv.url, "--pipeline", str(pipeline), "--output", str(out))
                run.append(await hcs(*argv, "--json", limit=170))

            nursery.start_soon(batch)
            await wait_for_pids(gate_dir, 2)  # both workers hold a well at the gate; four wells wait
            async with open_connection(srv.url) as watcher, watcher.open_event_stream() as watched:
                while not isinstance(await watched.receive(), HeartbeatEvent):
                    pass  # a heartbeat: the event stream is live before the pause is sent
                paused = await hcs("pause", "--server", srv.url)
                assert paused.returncode == 0, paused.stderr
                announced = await watched.receive()
                while not isinstance(announced, StateEvent):
                    announced = await watched.receive()
            (record,) = await executions(srv.url)
            execution_id = str(record["execution_id"])
            assert paused.stdout.strip() == f"{execution_id}: paused"
            assert (announced.execution_id, announced.state) == (execution_id, "paused")  # a state event says so
            assert record["state"] == "paused" and record["wells_done"] == 0 and record["wells_total"] == 6
            assert record["plate"] == plate.name and "kind" not in record and "plate_name" not in record

            release_gate(gate_dir)  # the two running wells finish; no new one may start
            async with open_connection(srv.url) as conn, conn.open_event_stream() as events:
                while (await conn.status([execution_id]))[0][0].wells_done < 2:
                    await events.receive()
                beats = 0
                while beats < 3:  # three heartbeats (about 3 s) while paused and every gate open
                    beats += isinstance(await events.receive(), HeartbeatEvent)
                (held,), _ = await conn.status([execution_id])
            assert (held.state, held.wells_done) == ("paused", 2)

            again = await hcs("pause", "--server", srv.url, execution_id, "no-such-id")
            assert again.returncode == 1 and f"{execution_id}: already paused" in again.stdout
            assert "no-such-id" in again.stderr
            # A paused execution is live: attach follows it (it says so on stderr before it waits) to its end.
            cmd = [sys.executable, "-m", "hcs_batch", "attach", "--server", srv.url, "--json"]
            follower = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
            try:
                assert follower.stderr is not None and follower.stdout is not None
                said = b""
                while b"\n" not in said:
                    said += await follower.stderr.receive_some()
                assert said.startswith(b"following 1 live executions"), said
                resumed = await hcs("resume", "--server", srv.url, execution_id)
                assert resumed.returncode == 0 and resumed.stdout.strip() == f"{execution_id}: resumed"
                followed = b""
                while chunk := await follower.stdout.receive_some():
                    followed += chunk
                assert await follower.wait() == 0
            finally:
                if follower.returncode is None:
                    follower.kill()  # only when the test failed on the way
                await follower.wait()
                for pipe in (follower.stdout, follower.stderr):
                    if pipe is not None:
                        await pipe.aclose()
        (result,) = run
    assert [e["state"] for e in json.loads(followed)["executions"]] == ["completed"]
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(result.stdout)["plates"]
    assert outcome["state"] == "completed" and outcome["pipeline"] == "gated"
    assert "paused" in result.stderr  # the terminal host showed the plate paused, then running on
    manifest = json.loads((out / plate.name / "manifest.json").read_text())
    assert manifest["wells_computed"] == 6


async def test_cancel_one_of_two_executions(tmp_path: Path, gate_dir: Path) -> None:
    folders = make_plates(tmp_path / "plates", plates=2, wells=1, sites=1, channels=1, size=16, seed=2)
    pipeline = tmp_path / "gated.toml"
    pipeline.write_text(GATE_PIPELINE.format(gate_dir=gate_dir))
    with trio.fail_after(180):
        async with gated_server(gate_dir, stop_cleanly=True) as srv, trio.open_nursery() as nursery:
            run: list[subprocess.CompletedProcess[str]] = []

            async def batch() -> None:
                argv = ("run", *map(str, folders), "--server", srv.url, "--pipeline", str(pipeline))
                run.append(await hcs(*argv, "--output", str(tmp_path / "out"), "--json", limit=170))

            nursery.start_soon(batch)
            await wait_for_pids(gate_dir, 2)
            by_plate = {str(r["plate"]): str(r["execution_id"]) for r in await executions(srv.url)}
            first, second = by_plate[folders[0].name], by_plate[folders[1].name]
            cancelled = await hcs("cancel", "--server", srv.url, first)
            assert cancelled.returncode == 0, cancelled.stderr
            assert cancelled.stdout.strip() == f"{first}: cancelled"
            states = {str(r["execution_id"]): r["state"] for r in await executions(srv.url)}
            assert states[second] == "running"
            release_gate(gate_dir)
        (result,) = run
        again = await hcs("cancel", "--server", "tcp://127.0.0.1:1", first, limit=60)
        assert again.returncode == 3  # nobody listens there: unreachable
    assert result.returncode == 1  # one plate cancelled (by someone else): not every plate succeeded
    outcomes = {p["plate"]: p["state"] for p in json.loads(result.stdout)["plates"]}
    assert outcomes == {folders[0].name: "cancelled", folders[1].name: "completed"}


async def test_cancel_reports_terminal_and_unknown_ids(tmp_path: Path, gate_dir: Path) -> None:
    (plate,) = make_plates(tmp_path / "plates", plates=1, wells=1, sites=1, channels=1, size=16, seed=3)
    release_gate(gate_dir)
    pipeline = tmp_path / "gated.toml"
    pipeline.write_text(GATE_PIPELINE.format(gate_dir=gate_dir))
    with trio.fail_after(180):
        async with gated_server(gate_dir, stop_cleanly=True) as srv:
            argv = ("run", str(plate), "--server", srv.url, "--pipeline", str(pipeline), "--output", str(tmp_path))
            assert (await hcs(*argv)).returncode == 0
            (record,) = await executions(srv.url)
            result = await hcs("cancel", "--server", srv.url, str(record["execution_id"]), "nope")
    assert result.returncode == 1
    assert result.stdout.strip() == f"{record['execution_id']}: already completed"
    assert "nope" in result.stderr


async def test_servers_lists_a_started_server_and_drops_it_once_killed(runtime_dir: Path) -> None:
    with trio.fail_after(120):
        assert json.loads((await hcs("servers", "--json")).stdout) == []
        srv = await trio.to_thread.run_sync(functools.partial(start_server, workers=1))
        try:
            listed = await hcs("servers", "--json")
            assert listed.returncode == 0, listed.stderr
            (entry,) = json.loads(listed.stdout)
            assert entry["url"] == srv.url and entry["pid"] == srv.pid
            assert entry["executor"] == "local" and (entry["queued"], entry["running"]) == (0, 0)
            started = datetime.datetime.fromisoformat(entry["started_at"])
            assert abs((datetime.datetime.now(datetime.UTC) - started).total_seconds()) < 120
            text = await hcs("servers")
            assert srv.url in text.stdout and f"pid {srv.pid}" in text.stdout

            status = await hcs("status")  # no --server: lists the servers, starts nothing
            assert status.returncode == 2 and srv.url in status.stdout and "--server" in status.stderr
        finally:
            workers = descendants(srv.pid)
            os.kill(srv.pid, signal.SIGKILL)  # no chance to clean up its entry
            await trio.to_thread.run_sync(reap, srv)
            for pid in workers:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        assert entry_files(runtime_dir), "a killed server leaves its entry behind"
        assert json.loads((await hcs("servers", "--json")).stdout) == []
        assert not entry_files(runtime_dir), "reading drops the entry of a dead pid"
        status = await hcs("status")
        assert status.returncode == 2 and "hcs-batch serve" in status.stderr


async def test_shutdown_signals_a_registered_server_and_asks_an_unregistered_one(runtime_dir: Path) -> None:
    with trio.fail_after(120):
        srv = await trio.to_thread.run_sync(functools.partial(start_server, workers=1))
        try:
            result = await hcs("shutdown", "--server", srv.url)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == f"stopped server {srv.url} (pid {srv.pid})"
            assert await trio.to_thread.run_sync(srv.proc.wait) == 0  # SIGTERM: the server's clean stop
            assert not entry_files(runtime_dir), "the server removes its own entry on exit"
        finally:
            await trio.to_thread.run_sync(reap, srv)
        # An embedded server does not register: shutdown falls back to a Shutdown request, which it refuses (only
        # its own host may stop it: issue 10's shutdown authority), in one line, exit 2.
        async with open_embedded_server(workers=1, warm_workers=False) as address:
            result = await hcs("shutdown", "--server", address.control_url)
            assert result.returncode == 2 and result.stdout == "", result.stderr
            assert result.stderr.count("\n") == 1 and "shutdown refused" in result.stderr


async def test_shutdown_asks_a_server_found_in_no_registry_that_allows_it(
    runtime_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(120):
        extra = ("--allow-remote-shutdown",)
        srv = await trio.to_thread.run_sync(functools.partial(start_server, workers=1, extra=extra))
        try:
            # Another user's registry (or another machine's): the server is not in it, so no signal; a request.
            monkeypatch.setenv("HCS_BATCH_RUNTIME_DIR", str(tmp_path / "elsewhere"))
            result = await hcs("shutdown", "--server", srv.url)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == f"asked server {srv.url} to shut down"
            assert await trio.to_thread.run_sync(srv.proc.wait) == 0  # the server stopped itself cleanly
            assert not entry_files(runtime_dir), "the server removes its own entry on exit"
        finally:
            await trio.to_thread.run_sync(reap, srv)


async def test_a_plate_with_its_own_settings_runs_its_own_pipeline(tmp_path: Path) -> None:
    own, batch, hostile = make_plates(tmp_path / "plates", plates=3, wells=2, sites=1, channels=1, size=48, seed=4)
    (own / "mine.toml").write_text('name = "own-noop"\n[[steps]]\nfunc = "hcs_batch.steps:noop"\n')
    (own / "hcs_batch.toml").write_text('pipeline = "mine.toml"\n[config]\nobjective = "20x"\n')
    (hostile / "hcs_batch.toml").write_text(f'pipeline = "../{own.name}/mine.toml"\n')
    out = tmp_path / "out"
    with trio.fail_after(180):
        result = await hcs("run", str(own), str(batch), str(hostile), "--output", str(out), "--json")
        compiled = await hcs("compile", str(own), "--json")
        (own / "hcs_batch.toml").write_text('pipeline = "mine.toml"\n[config]\nobjective = "40x"\n')
        recompiled = await hcs("compile", str(own), "--json")
        (own / "mine.toml").write_text('name = "own-noop"\n[[steps]]\nfunc = "hcs_batch.steps:noop"\n# v2\n')
        edited = await hcs("compile", str(own), "--json")
    assert result.returncode == 1, result.stderr  # the hostile plate failed; the other two completed
    plates = {p["plate"]: p for p in json.loads(result.stdout)["plates"]}
    assert (plates[own.name]["state"], plates[own.name]["pipeline"]) == ("completed", "own-noop")
    assert (plates[batch.name]["state"], plates[batch.name]["pipeline"]) == ("completed", "nucleus_counter")
    assert plates[hostile.name]["state"] == "failed" and "inside the plate folder" in plates[hostile.name]["error"]
    assert json.loads((out / own.name / "manifest.json").read_text())["pipeline"] == "own-noop"
    assert json.loads((out / batch.name / "manifest.json").read_text())["pipeline"] == "nucleus_counter"
    own_rows = list(csv.DictReader((out / own.name / "wells.csv").read_text().splitlines()))
    batch_rows = list(csv.DictReader((out / batch.name / "wells.csv").read_text().splitlines()))
    assert own_rows and all(not row.get("object_count") for row in own_rows)  # the noop measures nothing
    assert batch_rows and all(row["object_count"] for row in batch_rows)  # the nucleus counter counts
    # The artifact keys on the plate's settings: another config override, another artifact.
    first = json.loads(compiled.stdout)["plates"][0]
    second = json.loads(recompiled.stdout)["plates"][0]
    assert first["artifact_id"] == plates[own.name]["artifact_id"]
    assert first["artifact_id"] != second["artifact_id"]
    # ... and on the plate's pipeline text: the same settings naming an edited pipeline file, another artifact.
    third = json.loads(edited.stdout)["plates"][0]
    assert (third["pipeline"], third["state"]) == ("own-noop", "compiled")
    assert third["artifact_id"] not in (first["artifact_id"], second["artifact_id"])
