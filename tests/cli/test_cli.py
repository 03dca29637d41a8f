"""The hcs-batch command end to end, as a user drives it: real processes, real server, real worker processes."""

from __future__ import annotations

import csv
import datetime
import functools
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import hcs_batch
from hcs_batch.testing.plates import make_plates

from ..support.procs import descendants, survivors
from ..support.serverproc import env

SLOW_PIPELINE = """
name = "slow"
[[steps]]
func = "tests.support.slow_steps:hold"
pid_dir = "{pid_dir}"
"""


def _hcs(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, env=env(), timeout=timeout
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def plates(tmp_path: Path) -> list[Path]:
    return make_plates(tmp_path / "plates", plates=2, wells=3, sites=2, channels=1, size=96, seed=3)


def test_run_counts_match_ground_truth_and_json_has_the_promised_shape(plates: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = _hcs("run", *map(str, plates), "--output", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["batch"] == "run"
    assert summary["counts"] == {"completed": 2}
    assert [p["plate"] for p in summary["plates"]] == ["plate_001", "plate_002"]
    for plate in summary["plates"]:
        assert set(plate) == {
            "plate",
            "path",
            "state",
            "error",
            "artifact_id",
            "execution_id",
            "output",
            "warnings",
            "wells_total",
            "wells_reused",
            "pipeline",
        }
        assert plate["state"] == "completed" and plate["artifact_id"] and plate["execution_id"]
        assert plate["pipeline"] == "nucleus_counter"  # the batch's (built-in) pipeline: no hcs_batch.toml here
        assert Path(plate["output"]) == out / plate["plate"]
    truth_rows = csv.DictReader((tmp_path / "plates" / "ground_truth.csv").read_text().splitlines())
    truth = {(r["plate"], r["well"], r["site"], r["channel"]): int(r["object_count"]) for r in truth_rows}
    seen = 0
    for plate in plates:
        for row in csv.DictReader((out / plate.name / "wells.csv").read_text().splitlines()):
            assert int(row["object_count"]) == truth[(plate.name, row["well"], row["site"], row["channel"])]
            assert (row["plate"], row["file"]) == (plate.name, f"{row['well']}_s{row['site']}_w1.tif")
            assert 0 < float(row["threshold"]) < 1  # the Otsu threshold used, on the normalised image
            seen += 1
    assert seen == len(truth) == 2 * 3 * 2
    # manifest.json (issue 12): ISO 8601 times in UTC, the software's version, rows named as results, the execution.
    manifest = json.loads((out / "plate_001" / "manifest.json").read_text())
    started = datetime.datetime.fromisoformat(manifest["started_at"])
    finished = datetime.datetime.fromisoformat(manifest["finished_at"])
    assert started.utcoffset() == finished.utcoffset() == datetime.timedelta(0) and started <= finished
    assert manifest["software_version"] == hcs_batch.__version__ and "rows" not in manifest
    assert manifest["result_rows"] == 6 and manifest["failed_wells"] == []
    assert manifest["execution_id"] == summary["plates"][0]["execution_id"]


def test_compile_only_keeps_artifacts_and_reports_compiled(plates: list[Path]) -> None:
    result = _hcs("compile", *map(str, plates), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["batch"] == "compile"
    assert summary["counts"] == {"compiled": 2}
    assert all(p["artifact_id"] and not p["execution_id"] for p in summary["plates"])


def test_missing_plate_folder_is_exit_2_with_one_line(tmp_path: Path) -> None:
    result = _hcs("run", str(tmp_path / "no-such-plate"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-plate" in lines[0] and "Traceback" not in result.stderr


def test_unreadable_pipeline_is_exit_2(plates: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[steps]\nfunc = ")
    result = _hcs("run", str(plates[0]), "--pipeline", str(bad))
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "Traceback" not in result.stderr


def test_the_command_process_runs_its_exit_handlers_and_keeps_its_exit_code(plates: list[Path], tmp_path: Path) -> None:
    # console_main ends the process without the interpreter's teardown: the atexit handlers must still run.
    code = "import atexit; atexit.register(print, 'atexit ran'); from hcs_batch.cli import console_main; console_main()"

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", code, *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=120)

    ok = command("inspect", str(plates[0]))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.endswith("atexit ran\n") and plates[0].name in ok.stdout
    bad = command("run", str(tmp_path / "no-such-plate"))
    assert bad.returncode == 2 and bad.stdout == "atexit ran\n" and "no-such-plate" in bad.stderr


def test_unreachable_server_is_exit_3_with_one_line(plates: list[Path]) -> None:
    url = f"tcp://127.0.0.1:{_free_port()}"
    result = _hcs("run", str(plates[0]), "--server", url)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "Traceback" not in result.stderr


async def test_ctrl_c_mid_run_exits_130_with_every_plate_cancelled_and_no_worker_left(
    plates: list[Path], tmp_path: Path
) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    pipeline = tmp_path / "slow.toml"
    pipeline.write_text(SLOW_PIPELINE.format(pid_dir=pid_dir))
    cmd = [sys.executable, "-m", "hcs_batch", "run", *map(str, plates), "--pipeline", str(pipeline), "--json"]
    cmd += ["--output", str(tmp_path / "out")]
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with trio.fail_after(90), stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        async with trio.open_nursery() as nursery:
            run = functools.partial(trio.run_process, cmd, env=env(), stdout=stdout, stderr=stderr, check=False)
            proc = await nursery.start(run)
            # Another process writes these files; there is no event to wait on, so poll (bounded by fail_after).
            while not any(pid_dir.iterdir()):  # noqa: ASYNC110
                await trio.sleep(0.05)
            tree = descendants(proc.pid)
            assert {int(p.stem) for p in pid_dir.iterdir()} <= tree
            proc.send_signal(signal.SIGINT)
    assert proc.returncode == 130, stderr_path.read_text()
    summary = json.loads(stdout_path.read_text())
    assert summary["counts"] == {"cancelled": 2}
    assert all(p["state"] == "cancelled" for p in summary["plates"])
    assert survivors(tree) == {}


def test_a_reader_that_stops_reading_ends_inspect_quietly(plates: list[Path]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: every write meets a closed pipe
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hcs_batch", "inspect", str(plates[0])],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            timeout=60,
        )
    finally:
        os.close(write)
    assert result.returncode == 1 and result.stderr == ""
