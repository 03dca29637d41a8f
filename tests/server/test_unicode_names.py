"""Plate names: any Unicode folder name is a plate name (``Platte_Müller``), except ones holding a path separator,
``..`` or a control character. On real processes: ``hcs-batch run`` and a raw request to ``hcs-batch serve``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.errors import PlateError
from hcs_batch.model import safe_plate_name
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import env, running_server
from .helpers import read_csv, wait_terminal

NAMES = ["Platte_Müller", "プレート 1", "Ωmega-plate", "plate (copy)"]


def test_cli_runs_a_plate_named_platte_mueller(tmp_path: Path) -> None:
    made = make_plates(tmp_path / "plates", plates=1, wells=2, sites=1, channels=1, size=32, seed=1)[0]
    plate = made.rename(made.with_name("Platte_Müller"))
    result = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "run", str(plate), "--output", str(tmp_path / "out"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)["plates"][0]
    assert (outcome["plate"], outcome["state"]) == ("Platte_Müller", "completed")
    _, rows = read_csv(tmp_path / "out" / "Platte_Müller" / "wells.csv")
    assert [row["well"] for row in rows] == ["A01", "A02"]


async def test_a_server_accepts_unicode_names_and_refuses_unsafe_ones(tmp_path: Path) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=1, sites=1, channels=1, size=16, seed=1)[0]
    with running_server(workers=1) as server:
        with trio.fail_after(60):
            async with open_connection(server.url) as conn:
                ids = []
                for name in NAMES:
                    compiled = await conn.compile(plate_path=str(plate), plate_name=name, pipeline=noop_pipeline_text())
                    ids.append(await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out")))
                records = await wait_terminal(conn, ids)
                for bad in ["a/b", "..", "x\x1by", "line\nbreak", "a\u2028b", ".hidden", "tab\there"]:
                    with pytest.raises(PlateError, match="cannot be used as an output folder name"):
                        await conn.compile(plate_path=str(plate), plate_name=bad, pipeline=noop_pipeline_text())
    assert all(record.state == "completed" for record in records.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(NAMES)


def test_names_with_separators_dotdot_or_control_characters_are_refused() -> None:
    for name in NAMES:
        assert safe_plate_name(name) == name
    for bad in ["a/b", "a\\b", "..", "a..b", "\x00", "a\x7fb", ".lead", "\udcff", "é" * 200]:
        with pytest.raises(PlateError):
            safe_plate_name(bad)
