"""Resume without loss: results are written per well, atomically. A server killed mid-plate leaves only whole
files; running the same plate again with the same artifact skips the wells already done (unless ``--force``) and
leaves their files untouched.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import trio

from hcs_batch.client import open_connection
from hcs_batch.server.plate_lock import LOCK_NAME
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import env, kill_pids, pids_in, reap, running_server, start_server
from ..support.slow_steps import release_gate

PIPELINE = """
name = "gated"
[[steps]]
func = "tests.support.slow_steps:gate"
gate_dir = "{gate_dir}"
allow = {allow}
[[steps]]
func = "hcs_batch.steps:mean_intensity"
"""


class WellFile(msgspec.Struct, forbid_unknown_fields=True):
    well_key: str
    rows: list[dict[str, Any]]


def hcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, env=env(), timeout=90
    )


def assert_only_whole_files(out: Path) -> list[Path]:
    """Every visible file below ``out`` parses completely; returns them. Temporary files (``.*.tmp``) and a killed
    server's plate lock (taken over by the next run) are the only hidden ones allowed."""
    visible = []
    for path in sorted(out.rglob("*")):
        if path.is_dir():
            continue
        if path.name.startswith("."):
            assert path.name.endswith(".tmp") or path.name == LOCK_NAME, path
            continue
        data = path.read_bytes()
        if path.suffix == ".json" and path.parent.name == "wells":
            msgspec.json.decode(data, type=WellFile)
        elif path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".parquet":
            pq.read_table(path)  # raises on a partial file
        elif path.suffix == ".png":  # plate_map.png: a whole PNG ends with its IEND chunk
            assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), path
        else:
            assert path.suffix == ".csv" and data.endswith(b"\n"), path
        visible.append(path)
    return visible


async def test_killed_server_mid_plate_then_rerun_skips_done_wells_unless_forced(tmp_path: Path) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=6, sites=1, channels=1, size=16, seed=4)[0]
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    pipeline_text = PIPELINE.format(gate_dir=gate_dir, allow=3)
    out = tmp_path / "out"
    wells = out / plate.name / "wells"

    first = await trio.to_thread.run_sync(functools.partial(start_server, workers=2))
    try:
        with trio.fail_after(60):
            async with open_connection(first.url) as conn, conn.open_event_stream() as events:
                compiled = await conn.compile(plate_path=str(plate), plate_name=plate.name, pipeline=pipeline_text)
                run = await conn.execute(compiled.artifact_id, output_dir=str(out))
                # Three wells pass the gate and are written; the next two hold both workers; one is still queued.
                while True:
                    (record,), _ = await conn.status([run])
                    if record.wells_done == 3 and len(pids_in(gate_dir)) == 2:
                        break
                    await events.receive()
                os.kill(first.pid, signal.SIGKILL)
    finally:
        await trio.to_thread.run_sync(reap, first)
        kill_pids(pids_in(gate_dir))  # the two workers held at the gate, orphaned by the kill

    written = assert_only_whole_files(out)
    assert sorted(p.name for p in written) == sorted(p.name for p in wells.glob("*.*"))
    done = sorted(p.stem for p in wells.glob("*.json"))
    assert sorted(p.stem for p in wells.glob("*.parquet")) == done, "each finished well has its object file"
    assert len(written) == 6 and not (out / plate.name / "wells.csv").exists()
    before = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in written}

    release_gate(gate_dir)  # not part of the pipeline: the artifact stays the same
    pipeline = tmp_path / "gated.toml"
    pipeline.write_text(pipeline_text)
    with running_server(workers=2) as second:
        again = hcs(
            "run", str(plate), "--server", second.url, "--pipeline", str(pipeline), "--output", str(out), "--json"
        )
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["plates"][0]["artifact_id"] == compiled.artifact_id
        status = json.loads(hcs("status", "--server", second.url, "--json").stdout)
        (rerun,) = status["executions"]
        assert (rerun["state"], rerun["wells_skipped"], rerun["wells_done"]) == ("completed", 3, 6)
        manifest = json.loads((out / plate.name / "manifest.json").read_bytes())
        assert (manifest["wells_reused"], manifest["wells_computed"]) == (3, 3)
        after = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in wells.glob("*.*")}
        assert len(after) == 12
        for name, kept in before.items():
            assert after[name] == kept, f"{name} was rewritten on resume"

        forced = hcs(
            "run", str(plate), "--server", second.url, "--pipeline", str(pipeline), "--output", str(out), "--force"
        )
        assert forced.returncode == 0, forced.stderr
        manifest = json.loads((out / plate.name / "manifest.json").read_bytes())
        assert (manifest["wells_reused"], manifest["wells_computed"]) == (0, 6)
    recomputed = {p.name: (p.read_bytes(), p.stat().st_ino) for p in wells.glob("*.*")}
    for name, (data, inode, _) in before.items():
        # The same artifact computes the same result; only the provenance (which worker) may differ.
        if name.endswith(".json"):
            assert _measurements(recomputed[name][0]) == _measurements(data), f"{name}: not the same result"
            assert _measurements(data)["rows"], name
        else:  # the well's objects (parquet) carry no worker column
            assert recomputed[name][0] == data, f"{name}: the same artifact computes the same result"
        assert recomputed[name][1] != inode, f"{name} was not recomputed under --force"
    assert_only_whole_files(out)


def _measurements(data: bytes) -> dict[str, object]:
    """A well file without its rows' ``worker`` values."""
    found = json.loads(data)
    found["rows"] = [{k: v for k, v in row.items() if k != "worker"} for row in found["rows"]]
    return dict(found)


WRITER = """
import sys
from pathlib import Path
from hcs_batch.server.results import write_well_result

plate_dir = Path(sys.argv[1])
big = [{"well": "A01", "site": i, "channel": 1, "text": "x" * 200} for i in range(20_000)]
small = big[:10]
n = 0
while True:
    write_well_result(plate_dir, "A01", "artifact", big if n % 2 else small)
    n += 1
    if n == 2:
        print("written", flush=True)
"""


async def test_sigkill_while_writing_never_leaves_a_partial_well_file(tmp_path: Path) -> None:
    # A process rewrites one well file in a loop (4 MB and 1 kB versions); it is killed at whatever moment the
    # "written" line reaches us. Whatever it was doing, the file is one whole version, never a part.
    for attempt in range(5):
        plate_dir = tmp_path / f"plate{attempt}"
        with trio.fail_after(30):
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-c", WRITER, str(plate_dir)], stdout=subprocess.PIPE
            )
            try:
                assert proc.stdout is not None
                assert await proc.stdout.receive_some(100)
                for _ in range(attempt):  # later attempts kill later, at other points of the write cycle
                    await trio.lowlevel.checkpoint()
            finally:
                proc.kill()
                await proc.wait()
                if proc.stdout is not None:
                    await proc.stdout.aclose()
        assert proc.returncode == -signal.SIGKILL
        found = msgspec.json.decode((plate_dir / "wells" / "A01.json").read_bytes(), type=WellFile)
        assert len(found.rows) in (10, 20_000)
        assert_only_whole_files(plate_dir)
