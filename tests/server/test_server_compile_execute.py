"""The server on real loopback sockets: handshake, compile errors, execute, results, many requests in flight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from hcs_batch import protocol as p
from hcs_batch.client import open_connection
from hcs_batch.errors import ArtifactNotFoundError, PipelineError, PlateError
from hcs_batch.pipeline import default_pipeline_text, noop_pipeline_text
from hcs_batch.server import ServerAddress
from hcs_batch.server.results import BASE_COLUMNS

from .helpers import read_csv, wait_terminal


async def test_hello_reports_instance_events_port_and_seq(control_server: ServerAddress) -> None:
    async with open_connection(control_server.control_url) as conn:
        hello = conn.hello
        assert hello is not None
        assert hello.version == p.PROTOCOL_VERSION
        assert len(hello.instance) == 32 and hello.events_port == control_server.events_port
        assert hello.workers == 1 and "compile" in hello.capabilities
        # Every event seen after the handshake continues the numbering the handshake reported.
        async with conn.open_event_stream() as events:
            with trio.fail_after(5):
                event = await events.receive()
        assert isinstance(event, p.HeartbeatEvent)
        assert event.seq > hello.seq and event.instance == hello.instance


STEP_ERRORS = [
    ("[[steps]]\nfunc = 'no_such_module_xyz:f'", PipelineError, ["step 1", "no_such_module_xyz"]),
    ("[[steps]]\nfunc = 'hcs_batch.steps:no_such_step'", PipelineError, ["step 1", "no_such_step"]),
    (
        "[[steps]]\nfunc = 'hcs_batch.steps:noop'\n[[steps]]\nfunc = 'hcs_batch.steps:gaussian_blur'\nsigmaa = 2",
        PipelineError,
        ["step 2", "gaussian_blur", "sigmaa"],
    ),
    ("[[steps]]\nfunc = 'tests.support.slow_steps:typed'\ncount = 'three'", PipelineError, ["count", "int", "three"]),
    ("[[steps]]\nfunc = 'tests.support.slow_steps:typed'\nscale = true", PipelineError, ["scale", "float"]),
    ("[[steps]]\nfunc = 'hcs_batch.steps:mean_intensity'\nraw = 1", PipelineError, ["raw", "reserved"]),
    ("[[steps\nfunc = 'x:y'", PipelineError, ["not valid TOML"]),
]


@pytest.mark.parametrize(("pipeline", "error", "needles"), STEP_ERRORS)
async def test_compile_errors_name_the_thing(
    control_server: ServerAddress, plates: list[Path], pipeline: str, error: type[Exception], needles: list[str]
) -> None:
    async with open_connection(control_server.control_url) as conn:
        with pytest.raises(error) as info:
            await conn.compile(plate_path=str(plates[0]), plate_name="p", pipeline=pipeline)
    for needle in needles:
        assert needle in str(info.value)


async def test_compile_errors_for_plate_folders(control_server: ServerAddress, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    async with open_connection(control_server.control_url) as conn:
        with pytest.raises(PlateError, match="does not exist") as info:
            await conn.compile(plate_path=str(tmp_path / "gone"), plate_name="gone", pipeline=noop_pipeline_text())
        assert str(tmp_path / "gone") in str(info.value)
        with pytest.raises(PlateError, match="no images") as info:
            await conn.compile(plate_path=str(empty), plate_name="empty", pipeline=noop_pipeline_text())
        assert str(empty) in str(info.value)
        with pytest.raises(PlateError, match="cannot be used"):
            await conn.compile(plate_path=str(empty), plate_name="../escape", pipeline=noop_pipeline_text())
        # The server still answers after every refusal.
        info_reply = await conn.server_info()
        assert info_reply.queued == 0 and info_reply.running == 0


async def test_unknown_artifact_is_a_clear_error(control_server: ServerAddress, tmp_path: Path) -> None:
    async with open_connection(control_server.control_url) as conn:
        with pytest.raises(ArtifactNotFoundError, match=r"deadbeef.*compile the plate again"):
            await conn.execute("deadbeef", output_dir=str(tmp_path))


async def test_nucleus_counter_matches_ground_truth_and_results_shape(
    server: ServerAddress, plates: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    async with open_connection(server.control_url) as conn:
        compiled = [
            await conn.compile(plate_path=str(f), plate_name=f.name, pipeline=default_pipeline_text()) for f in plates
        ]
        assert compiled[0].wells == ["A01", "A02", "A03"] and compiled[0].sites == 2 and compiled[0].channels == 2
        assert compiled[0].artifact_id != compiled[1].artifact_id
        ids = [await conn.execute(c.artifact_id, output_dir=str(out)) for c in compiled]
        with trio.fail_after(60):
            records = await wait_terminal(conn, ids)
    assert {r.state for r in records.values()} == {"completed"}, records
    assert all(r.wells_done == r.wells_total == 3 for r in records.values())

    _, truth_rows = read_csv(plates[0].parent / "ground_truth.csv")
    truth = {(r["plate"], r["well"], r["site"], r["channel"]): r["object_count"] for r in truth_rows}
    counted = {}
    for folder in plates:
        header, rows = read_csv(out / folder.name / "wells.csv")
        assert tuple(header[: len(BASE_COLUMNS)]) == BASE_COLUMNS
        assert len(rows) == 3 * 2 * 2
        for row in rows:
            counted[(folder.name, row["well"], row["site"], row["channel"])] = row["object_count"]
            assert float(row["mean_intensity"]) > 0
        manifest = json.loads((out / folder.name / "manifest.json").read_text())
        assert manifest["plate"] == folder.name and manifest["result_rows"] == 12 and manifest["wells_computed"] == 3
        assert manifest["pipeline"] == "nucleus_counter" and len(manifest["steps"]) == 4
    assert counted == truth
    assert not list(out.rglob("*.tmp")), "no temporary files left behind"


async def test_artifact_executes_twice_and_skips_done_wells(
    control_server: ServerAddress, plates: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    async with open_connection(control_server.control_url) as conn:
        compiled = await conn.compile(plate_path=str(plates[0]), plate_name="plate", pipeline=default_pipeline_text())
        first = await conn.execute(compiled.artifact_id, output_dir=str(out))
        with trio.fail_after(60):
            r1 = (await wait_terminal(conn, [first]))[first]
        csv_first = (out / "plate" / "wells.csv").read_text()
        second = await conn.execute(compiled.artifact_id, output_dir=str(out))
        with trio.fail_after(60):
            r2 = (await wait_terminal(conn, [second]))[second]
        forced = await conn.execute(compiled.artifact_id, output_dir=str(out), force=True)
        with trio.fail_after(60):
            r3 = (await wait_terminal(conn, [forced]))[forced]
    assert second != first
    assert (r1.state, r1.wells_skipped) == ("completed", 0)
    assert (r2.state, r2.wells_skipped, r2.wells_done) == ("completed", 3, 3)
    assert (r3.state, r3.wells_skipped) == ("completed", 0)
    assert (out / "plate" / "wells.csv").read_text() == csv_first


async def test_noop_pipeline_runs_inline_with_progress_per_well_and_step(
    control_server: ServerAddress, plates: list[Path], tmp_path: Path
) -> None:
    async with open_connection(control_server.control_url) as conn:
        compiled = await conn.compile(plate_path=str(plates[0]), plate_name="plate", pipeline=noop_pipeline_text())
        async with conn.open_event_stream() as events:
            execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path))
            progress: list[p.ProgressEvent] = []
            states: list[str] = []
            with trio.fail_after(10):
                async for event in events:
                    if isinstance(event, p.ProgressEvent) and event.execution_id == execution_id:
                        progress.append(event)
                    if isinstance(event, p.StateEvent) and event.execution_id == execution_id:
                        states.append(event.state)
                        if event.state == "completed":
                            break
        info = await conn.server_info()
    assert states[-2:] == ["running", "completed"]
    assert [(e.well, e.step, e.done, e.total) for e in progress] == [
        ("A01", "noop", 1, 3),
        ("A02", "noop", 2, 3),
        ("A03", "noop", 3, 3),
    ]
    assert info.busy_workers == 0
    _, rows = read_csv(tmp_path / "plate" / "wells.csv")
    assert len(rows) == 12 and rows[0]["object_count"] == ""


async def test_failing_step_fails_the_execution_naming_it(
    control_server: ServerAddress, plates: list[Path], tmp_path: Path
) -> None:
    pipeline = "[[steps]]\nfunc = 'tests.support.slow_steps:explode'\nmessage = 'kaboom'"
    async with open_connection(control_server.control_url) as conn:
        compiled = await conn.compile(plate_path=str(plates[0]), plate_name="plate", pipeline=pipeline)
        execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path))
        with trio.fail_after(60):
            record = (await wait_terminal(conn, [execution_id]))[execution_id]
    assert record.state == "failed"
    assert "tests.support.slow_steps:explode" in record.error and "kaboom" in record.error and "well A0" in record.error
    assert not (tmp_path / "plate" / "wells.csv").exists()


async def test_many_requests_in_flight_from_several_clients(control_server: ServerAddress) -> None:
    clients, per_client = 4, 250
    answered: dict[int, set[str]] = {c: set() for c in range(clients)}

    async def one(conn: object, client: int, i: int) -> None:
        tag = f"c{client}-r{i}"
        records, unknown = await conn.status([tag])  # type: ignore[attr-defined]
        assert records == [] and unknown == [tag]  # each reply is the answer to this very request
        answered[client].add(tag)

    async def client_task(client: int) -> None:
        async with open_connection(control_server.control_url) as conn:
            async with trio.open_nursery() as nursery:
                for i in range(per_client):
                    nursery.start_soon(one, conn, client, i)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for c in range(clients):
                nursery.start_soon(client_task, c)
    assert all(len(answered[c]) == per_client for c in range(clients))
