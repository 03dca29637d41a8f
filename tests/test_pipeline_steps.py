"""Pipelines parse strictly, built-in steps behave, synthetic plates carry a ground truth the steps can count."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from hcs_batch import steps
from hcs_batch.cli.plates import main_make_plates
from hcs_batch.errors import PipelineError
from hcs_batch.pipeline import (
    PipelineSpec,
    StepSpec,
    default_pipeline_text,
    load_pipeline_file,
    noop_pipeline_text,
    parse_pipeline,
)
from hcs_batch.testing.plates import make_plates, well_names


def test_builtin_pipelines_parse() -> None:
    spec = parse_pipeline(default_pipeline_text())
    assert spec.name == "nucleus_counter"
    assert [s.name for s in spec.steps] == [
        "normalize",
        "gaussian_blur",
        "otsu_threshold",
        "split_touching",
    ]
    assert spec.segment_channel == 1
    assert spec.steps[1] == StepSpec(func="hcs_batch.steps:gaussian_blur", params={"sigma": 1.0})
    assert parse_pipeline(noop_pipeline_text()) == PipelineSpec(
        name="noop", steps=(StepSpec(func="hcs_batch.steps:noop", params={}),)
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name = [", "not valid TOML"),
        ("name = 'x'", "no steps"),
        ("[[steps]]\nsigma = 1", "step 1 needs func"),
        ("[[steps]]\nfunc = 'no_colon'", "step 1 needs func"),
        ("[[steps]]\nfunc = 'a:b'\n[[steps]]\nfunc = 3", "step 2"),
        ("extra = 1\n[[steps]]\nfunc = 'a:b'", "extra"),
    ],
)
def test_bad_pipelines_are_named(text: str, needle: str) -> None:
    with pytest.raises(PipelineError, match=r"my\.toml") as info:
        parse_pipeline(text, source="my.toml")
    assert needle in str(info.value)


def test_load_pipeline_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(noop_pipeline_text())
    assert load_pipeline_file(good) == noop_pipeline_text()
    bad = tmp_path / "bad.toml"
    bad.write_text("[[steps]\n")
    with pytest.raises(PipelineError, match=r"bad\.toml"):
        load_pipeline_file(bad)
    with pytest.raises(PipelineError, match=r"missing\.toml"):
        load_pipeline_file(tmp_path / "missing.toml")


def test_steps_contract() -> None:
    image = np.zeros((20, 20), dtype=np.uint16)
    image[2:6, 2:6] = 2000
    image[10:15, 10:15] = 2200
    norm = steps.normalize(image, low_percentile=0.0, high_percentile=100.0)
    assert norm.dtype == np.float32 and float(norm.min()) == 0.0 and float(norm.max()) == 1.0
    mask = steps.otsu_threshold(steps.gaussian_blur(norm, sigma=0.5))
    assert mask.dtype == np.bool_
    assert steps.count_objects(mask) == {"object_count": 2}
    assert steps.count_objects(mask, min_size=20) == {"object_count": 1}
    raw_mean = steps.mean_intensity(image > 0, raw=image)["mean_intensity"]
    assert raw_mean == pytest.approx((16 * 2000 + 25 * 2200) / 41)
    assert steps.mean_intensity(image)["mean_intensity"] == pytest.approx((16 * 2000 + 25 * 2200) / 400)
    assert steps.noop(image) is None
    assert steps.is_inline_noop(steps.noop) and not steps.is_inline_noop(steps.normalize)


def test_make_plates_layout_and_ground_truth(tmp_path: Path) -> None:
    folders = make_plates(tmp_path, plates=2, wells=26, sites=2, channels=2, size=64, seed=1)
    assert [f.name for f in folders] == ["plate_001", "plate_002"]
    names = sorted(p.name for p in folders[0].iterdir())
    assert len(names) == 26 * 2 * 2 and "A01_s1_w1.tif" in names and "B02_s2_w2.tif" in names
    assert well_names(26)[-3:] == ["A24", "B01", "B02"]
    with open(tmp_path / "ground_truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 26 * 2 * 2
    assert set(rows[0]) == {"plate", "well", "site", "channel", "object_count"}
    image = tifffile.imread(folders[0] / "A01_s1_w1.tif")
    assert image.shape == (64, 64) and image.dtype == np.uint16
    # Same seed, same images.
    again = make_plates(tmp_path / "again", plates=1, wells=1, sites=1, channels=1, size=64, seed=1)
    assert np.array_equal(tifffile.imread(again[0] / "A01_s1_w1.tif"), image)


def test_make_plates_command_refuses_bad_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hcs_batch.cli import build_parser

    args = build_parser().parse_args(["make-plates", str(tmp_path), "--wells", "999"])
    assert main_make_plates(args) == 2
    assert "wells" in capsys.readouterr().err


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(64, 48), (2, 64, 48)])  # 2-D takes the banded log path, 3-D the whole-image one
def test_otsu_threshold_records_the_threshold_it_used_in_the_images_units(log: bool, shape: tuple[int, ...]) -> None:
    # Issue 12: wells.csv carries the threshold used. The recorded value splits the step's input as its mask does.
    rng = np.random.default_rng(7)
    image = rng.gamma(2.0, 0.05, shape).astype(np.float32)
    image[..., 10:20, 10:20] += 0.6
    notes: dict[str, object] = {}
    with steps.step_call(notes):
        mask = steps.otsu_threshold(image, log=log)
    threshold = notes["threshold"]
    assert isinstance(threshold, float) and float(image.min()) < threshold < float(image.max())
    differ = np.count_nonzero(mask != (image > threshold))
    assert differ <= 2, f"{differ} pixels on the other side of the recorded threshold"  # float rounding at the edge
    assert steps.otsu_threshold(image, log=log).shape == mask.shape  # outside a worker: nothing recorded, no error


def test_gaussian_blur_changes_the_callers_image_only_when_a_worker_hands_it_over() -> None:
    image = np.random.default_rng(3).random((40, 30), dtype=np.float32)
    before = image.copy()
    blurred = steps.gaussian_blur(image, sigma=1.0)
    np.testing.assert_array_equal(image, before)  # called directly: a copy
    with steps.step_call({}, handed_over=np.zeros(1, np.float32)):  # another array handed over: still a copy
        assert steps.gaussian_blur(image, sigma=1.0) is not image
    np.testing.assert_array_equal(image, before)
    with steps.step_call({}, handed_over=image):
        assert steps.gaussian_blur(image, sigma=1.0) is image
    np.testing.assert_array_equal(image, blurred)
