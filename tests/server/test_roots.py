"""Data and output roots against a real ``hcs-batch serve`` process: plates are read only below ``--data-root``,
results written only below ``--output-root`` (real paths: ``..`` and symlinks resolved), and a refusal reads the
same whether or not the path exists, so it reveals nothing about the file system outside the roots.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from hcs_batch.client import ServerConnection, open_connection
from hcs_batch.connect import open_backend
from hcs_batch.errors import PlateError
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import Server, env, reap, start_server
from .helpers import wait_terminal

DATA_REFUSED = "is outside the server's data roots"
OUTPUT_REFUSED = "is outside the server's output roots"


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """data/ (a root, with a plate), out/ (a root), and outside/ (a plate, a file, a folder) next to them."""
    data, out, outside = tmp_path / "data", tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    make_plates(data, plates=1, wells=1, sites=1, channels=1, size=16, seed=1)
    make_plates(outside, plates=1, wells=1, sites=1, channels=1, size=16, seed=1)
    (outside / "file.txt").write_text("secret")
    (data / "escape").symlink_to(outside / "plate_001")  # a link inside the root pointing out of it
    (out / "escape").symlink_to(outside)
    return {"data": data, "out": out, "outside": outside, "plate": data / "plate_001"}


@pytest.fixture
async def rooted(layout: dict[str, Path]) -> AsyncIterator[ServerConnection]:
    extra = ("--data-root", str(layout["data"]), "--output-root", str(layout["out"]))
    server: Server = await trio.to_thread.run_sync(functools.partial(start_server, workers=1, extra=extra))
    try:
        async with open_connection(server.url) as conn:
            yield conn
    finally:
        await trio.to_thread.run_sync(reap, server)


async def _refusal(coro: object) -> str:
    with pytest.raises(PlateError) as caught:
        await coro  # type: ignore[misc]
    return str(caught.value)


async def test_plate_folders_outside_the_data_roots_are_refused_alike(
    rooted: ServerConnection, layout: dict[str, Path]
) -> None:
    outside = layout["outside"]
    paths = {
        "a plate": outside / "plate_001",
        "a file": outside / "file.txt",
        "a missing path": outside / "no_such_folder",
        "a missing root": Path("/no/such/root/plate"),
        "a dotdot escape": layout["data"] / ".." / "outside" / "plate_001",
        "a symlink out": layout["data"] / "escape",
        "the filesystem root": Path("/"),
    }
    with trio.fail_after(60):
        messages = {}
        for what, path in paths.items():
            message = await _refusal(
                rooted.compile(plate_path=str(path), plate_name="p", pipeline=noop_pipeline_text())
            )
            assert DATA_REFUSED in message, (what, message)
            messages[what] = message.replace(repr(str(path)), "PATH")
        compiled = await rooted.compile(plate_path=str(layout["plate"]), plate_name="p", pipeline=noop_pipeline_text())
    assert len(set(messages.values())) == 1, messages  # no existence oracle: one message for all
    assert compiled.wells == ["A01"]


async def test_a_link_in_a_plate_folder_cannot_reach_outside_the_data_roots(
    rooted: ServerConnection, layout: dict[str, Path]
) -> None:
    plate = layout["plate"]
    (plate / "A02_s1_w1.tif").symlink_to(plate / "A01_s1_w1.tif")  # a link inside the roots: fine
    with trio.fail_after(60):
        compiled = await rooted.compile(plate_path=str(plate), plate_name="p", pipeline=noop_pipeline_text())
        assert compiled.wells == ["A01", "A02"]
        for target in [layout["outside"] / "plate_001" / "A01_s1_w1.tif", layout["outside"] / "missing.tif"]:
            link = plate / "A03_s1_w1.tif"
            link.unlink(missing_ok=True)
            link.symlink_to(target)
            message = await _refusal(
                rooted.compile(plate_path=str(plate), plate_name="p", pipeline=noop_pipeline_text())
            )
            assert "'A03_s1_w1.tif', a link to a file outside the server's data roots" in message


async def test_output_folders_outside_the_output_roots_are_refused_alike(
    rooted: ServerConnection, layout: dict[str, Path]
) -> None:
    outside = layout["outside"]
    with trio.fail_after(60):
        compiled = await rooted.compile(plate_path=str(layout["plate"]), plate_name="p", pipeline=noop_pipeline_text())
        messages = {}
        for path in [outside, outside / "missing", layout["out"] / ".." / "outside", layout["out"] / "escape", "/"]:
            message = await _refusal(rooted.execute(compiled.artifact_id, output_dir=str(path)))
            assert OUTPUT_REFUSED in message, message
            messages[str(path)] = message.replace(repr(str(path)), "PATH")
        assert len(set(messages.values())) == 1, messages
        # A relative output folder lands below the first output root, not the server's working directory.
        execution_id = await rooted.execute(compiled.artifact_id, output_dir="run1")
        record = (await wait_terminal(rooted, [execution_id]))[execution_id]
    assert record.state == "completed", record.error
    assert (layout["out"] / "run1" / "p" / "wells.csv").is_file()
    assert not (outside / "p").exists() and not list(outside.glob("**/wells.csv"))


async def test_a_symlinked_plate_output_folder_cannot_redirect_results(
    rooted: ServerConnection, layout: dict[str, Path]
) -> None:
    (layout["out"] / "batch").mkdir()
    (layout["out"] / "batch" / "p").symlink_to(layout["outside"])
    with trio.fail_after(60):
        compiled = await rooted.compile(plate_path=str(layout["plate"]), plate_name="p", pipeline=noop_pipeline_text())
        message = await _refusal(rooted.execute(compiled.artifact_id, output_dir=str(layout["out"] / "batch")))
    assert OUTPUT_REFUSED in message


async def test_an_embedded_server_reads_and_writes_only_what_its_command_names(layout: dict[str, Path]) -> None:
    async with open_backend(None, workers=1, data_roots=[layout["plate"]], output_roots=[layout["out"]]) as conn:
        with trio.fail_after(60):
            other = layout["outside"] / "plate_001"
            message = await _refusal(conn.compile(plate_path=str(other), plate_name="p", pipeline=noop_pipeline_text()))
            assert DATA_REFUSED in message
            compiled = await conn.compile(
                plate_path=str(layout["plate"]), plate_name="p", pipeline=noop_pipeline_text()
            )
            message = await _refusal(conn.execute(compiled.artifact_id, output_dir=str(layout["outside"])))
            assert OUTPUT_REFUSED in message


def test_cli_run_gives_its_embedded_server_the_named_plates_and_output(layout: dict[str, Path], tmp_path: Path) -> None:
    # Run from a working directory that holds neither the plate nor the output: the command's own names count.
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "run", str(layout["plate"]), "--pipeline", str(_noop(tmp_path)),
         "--output", str(out), "--json"],
        capture_output=True, text=True, timeout=120, env=env(), cwd=layout["out"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["plates"][0]["state"] == "completed"
    assert (out / "plate_001" / "wells.csv").is_file()


def _noop(tmp_path: Path) -> Path:
    path = tmp_path / "noop.toml"
    path.write_text(noop_pipeline_text())
    return path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--data-root", "/no/such/folder"], "--data-root /no/such/folder is not an existing folder"),
        (["--allow-steps", "not a module"], "is not a module name"),
    ],
)
def test_serve_refuses_a_bad_root_or_prefix_with_one_line_and_exit_2(args: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
