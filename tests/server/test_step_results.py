"""What a step may return as measurements: never an identity column, only one number or string each. A mistake
fails the well with a message naming the step, the measurement and the well, never a codec error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs_batch.server.results import load_done_wells
from hcs_batch.server.worker import StepFailure, run_well


def _plate(folder: Path) -> list[tuple[int, int, str]]:
    folder.mkdir()
    tifffile.imwrite(folder / "B02_s1_w1.tif", np.arange(64, dtype=np.uint16).reshape(8, 8))
    return [(1, 1, "B02_s1_w1.tif")]


@pytest.mark.parametrize("column", ["plate", "well", "site", "channel", "timepoint"])
def test_a_measurement_named_like_an_identity_column_is_a_step_error(tmp_path: Path, column: str) -> None:
    images = _plate(tmp_path / "plate")
    steps = (("tests.support.user_steps:measure_well", {"name": column}, False),)
    with pytest.raises(StepFailure) as caught:
        run_well(str(tmp_path / "plate"), "B02", images, steps, str(tmp_path / "out"), "k")
    message = str(caught.value)
    assert "tests.support.user_steps:measure_well" in message and f"{column!r}" in message and "well B02" in message
    assert load_done_wells(tmp_path / "out", {"B02": "k"}) == {}, "nothing recorded for the failed well"


def test_an_array_measurement_names_the_step_the_measurement_and_the_well(tmp_path: Path) -> None:
    images = _plate(tmp_path / "plate")
    steps = (("tests.support.user_steps:measure_array", {}, False),)
    with pytest.raises(StepFailure, match=r"well B02 .*step tests.support.user_steps:measure_array .*'profile'"):
        run_well(str(tmp_path / "plate"), "B02", images, steps, str(tmp_path / "out"), "k")


def test_numpy_scalars_are_plain_numbers_and_rows_name_their_file(tmp_path: Path) -> None:
    images = _plate(tmp_path / "plate")
    steps = (("tests.support.user_steps:measure_numpy_scalar", {}, False),)
    rows = run_well(str(tmp_path / "plate"), "B02", images, steps, str(tmp_path / "out"), "k")
    assert [row.pop("worker") for row in rows] == [f"local:{os.getpid()}"]  # run here, not in a worker process
    assert rows == [{"well": "B02", "site": 1, "channel": 1, "timepoint": 1, "file": "B02_s1_w1.tif", "peak": 63.0}]
    assert type(rows[0]["peak"]) is float
