"""The worker holds one image set's images only while it needs them: the segmentation channel alone while the
steps run, then one channel at a time, each released once measured; the results are those of measuring every
channel at once."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from numpy.typing import NDArray

from hcs_batch import steps
from hcs_batch.measure import measure_objects
from hcs_batch.server import worker
from hcs_batch.server.worker import StepFailure, run_well

_alive: list[weakref.ReferenceType[NDArray[Any]]] = []
_seen_in_step: list[int] = []


@steps.makes_objects
def segment(image: NDArray[Any]) -> NDArray[np.int32]:
    """Label the bright pixels (one object per row band); records how many loaded planes are alive meanwhile."""
    _seen_in_step.append(sum(ref() is not None for ref in _alive))
    labels = np.zeros(image.shape, np.int32)
    labels[image > 500] = 1 + np.arange(image.shape[0])[:, None].repeat(image.shape[1], 1)[image > 500] // 16
    return labels


def smooth(image: NDArray[Any]) -> NDArray[np.float32]:
    """A first step that returns a new image (the loaded plane is then free unless a step wants raw)."""
    return image.astype(np.float32)


@steps.makes_objects
def segment_raw(image: NDArray[Any], raw: NDArray[Any]) -> NDArray[np.int32]:
    """``segment`` for a step that also wants the raw plane."""
    assert raw.dtype == np.uint16
    return segment(image)


def _plate(folder: Path, shapes: dict[int, tuple[int, int]] | None = None) -> list[tuple[int, int, str]]:
    folder.mkdir()
    rng = np.random.default_rng(2)
    images = []
    for channel in (1, 2, 3):
        shape = (shapes or {}).get(channel, (64, 48))
        plane = rng.integers(0, 400, shape).astype(np.uint16)
        plane[4:12, 5:20] = plane[20:30, 30:40] = plane[40:60, 2:9] = 900 + 10 * channel
        tifffile.imwrite(folder / f"B02_s1_w{channel}.tif", plane)
        images.append((1, channel, f"B02_s1_w{channel}.tif"))
    return images


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every plane the worker decodes: (its files, how many planes it decoded before are still alive)."""
    record: list[tuple[str, int]] = []
    load = worker._load

    def tracked(plate_path: str, sources: list[str], well: str, projection: str) -> NDArray[Any]:
        record.append((";".join(sources), sum(ref() is not None for ref in _alive)))
        plane = load(plate_path, sources, well, projection)
        _alive.append(weakref.ref(plane))
        return plane

    _alive.clear()
    _seen_in_step.clear()
    monkeypatch.setattr(worker, "_load", tracked)
    return record


def test_one_plane_at_a_time_and_the_same_columns(tmp_path: Path, loads: list[tuple[str, int]]) -> None:
    images = _plate(tmp_path / "plate")
    plan = ((f"{__name__}:segment", {}, False),)
    rows = run_well(str(tmp_path / "plate"), "B02", images, plan, str(tmp_path / "out"), "k", segment_channel=2)
    # The segmentation channel first and alone during the steps; then decoded again and measured, and every other
    # channel after, each alone.
    assert [files for files, _ in loads] == [f"B02_s1_w{channel}.tif" for channel in (2, 2, 1, 3)]
    assert [alive for _, alive in loads] == [0, 0, 0, 0] and _seen_in_step == [1]
    assert all(ref() is None for ref in _alive)
    assert [row["channel"] for row in rows] == [1, 2, 3] and {row["object_count"] for row in rows} == {4}
    # The same columns and values as measuring the three planes at once.
    import pyarrow.parquet as pq

    table = pq.read_table(next((tmp_path / "out" / "wells").glob("B02*.parquet"))).to_pydict()
    planes = {str(c): tifffile.imread(tmp_path / "plate" / f"B02_s1_w{c}.tif") for c in (1, 2, 3)}
    expected = measure_objects(segment(planes["2"]), planes)
    assert [k for k in table if k not in ("well", "site", "channel", "timepoint")] == list(expected)
    for column, values in expected.items():
        np.testing.assert_array_equal(table[column], values, err_msg=column)
    means = [row["mean_intensity"] for row in rows]
    assert means[0] < means[1] < means[2]  # 910, 920, 930 inside the objects


def test_a_channel_of_another_shape_still_fails_the_well_by_name(tmp_path: Path, loads: list[tuple[str, int]]) -> None:
    images = _plate(tmp_path / "plate", {3: (64, 40)})
    plan = ((f"{__name__}:segment", {}, False),)
    message = r"well B02 site 1 timepoint 1: channel 3 is \(64, 40\), channel 1 \(64, 48\)"
    with pytest.raises(StepFailure, match=message):
        run_well(str(tmp_path / "plate"), "B02", images, plan, str(tmp_path / "out"), "k")
    assert not (tmp_path / "out" / "wells").exists() or not list((tmp_path / "out" / "wells").iterdir())


def test_the_loaded_plane_is_released_after_the_first_step_unless_a_step_wants_raw(
    tmp_path: Path, loads: list[tuple[str, int]]
) -> None:
    images = _plate(tmp_path / "plate")
    plan = ((f"{__name__}:smooth", {}, False), (f"{__name__}:segment", {}, False))
    first = run_well(str(tmp_path / "plate"), "B02", images, plan, str(tmp_path / "out"), "k")
    assert _seen_in_step == [0]  # the segmenting (second) step runs with no loaded plane alive
    _seen_in_step.clear()
    raw_plan = ((f"{__name__}:smooth", {}, False), (f"{__name__}:segment_raw", {}, True))
    second = run_well(str(tmp_path / "plate"), "B02", images, raw_plan, str(tmp_path / "out2"), "k")
    assert _seen_in_step == [1]  # kept for the step that wants it
    assert [r["object_count"] for r in first] == [r["object_count"] for r in second] == [4, 4, 4]
    assert [r["mean_intensity"] for r in first] == [r["mean_intensity"] for r in second]


def test_a_well_of_the_built_in_counter_holds_at_most_3_5_images_at_once(tmp_path: Path) -> None:
    """numpy's buffers (tracemalloc: deterministic, unlike RSS) while a worker runs a well of the built-in counter
    on realistic 1,024-pixel fields, 2 sites x 2 channels: 3.03 images of the uint16 plane (as at 2,048 pixels;
    at 512 the fixed-size buffers weigh ~2 more), when ``normalize`` turns the plane into float32 and when
    ``split_touching`` works on the mask. The Gaussian blurs the float32 image it is handed in place (4.04 when it
    made a copy); any plane held through the steps (the raw one, or every channel decoded at once) or another
    image-sized float copy fails it."""
    import inspect
    import tracemalloc

    from benchmarks._realdata import make_field
    from hcs_batch.pipeline import default_pipeline_text, parse_pipeline

    plate = tmp_path / "plate"
    plate.mkdir()
    rng = np.random.default_rng(2)
    images = []
    for site in (1, 2):
        planes, _ = make_field(rng, 1024, 2)
        for channel, plane in enumerate(planes, 1):
            tifffile.imwrite(plate / f"C03_s{site}_w{channel}.tif", plane)
            images.append((site, channel, f"C03_s{site}_w{channel}.tif"))
    plan = tuple(
        (step.func, dict(step.params), "raw" in inspect.signature(worker._function(step.func)).parameters)
        for step in parse_pipeline(default_pipeline_text()).steps
    )
    run_well(str(plate), "C03", images, plan, str(tmp_path / "warm"), "k")  # imports, first-call caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rows = run_well(str(plate), "C03", images, plan, str(tmp_path / "out"), "k")
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert [row["object_count"] for row in rows] == [169, 169, 171, 171]  # 171 and 175 nuclei made
    image = 1024 * 1024 * 2
    assert peak / image <= 3.5, f"{peak / image:.2f} images"


_handed: list[bool] = []


def probe(image: NDArray[Any]) -> None:
    """Records whether the worker handed this step its image to overwrite."""
    _handed.append(steps.may_overwrite(image))


def probe_raw(image: NDArray[Any], raw: NDArray[Any]) -> None:
    _handed.append(steps.may_overwrite(image) or steps.may_overwrite(raw))


def view(image: NDArray[Any]) -> NDArray[Any]:
    return image[:, :]


def test_a_step_may_overwrite_only_an_image_the_worker_owns_and_reads_no_more(tmp_path: Path) -> None:
    # The raw plane (kept for a step that wants it), a view (of memory someone else may read) and a segmentation
    # (measured after the steps) are never handed over; a fresh array an earlier step returned is.
    images = _plate(tmp_path / "plate")
    me = __name__
    plan = (
        (f"{me}:probe_raw", {}, True),
        (f"{me}:smooth", {}, False),
        (f"{me}:probe", {}, False),
        (f"{me}:view", {}, False),
        (f"{me}:probe", {}, False),
        (f"{me}:segment", {}, False),
        (f"{me}:probe", {}, False),
    )
    _handed.clear()
    rows = run_well(str(tmp_path / "plate"), "B02", images[:1], plan, str(tmp_path / "out"), "k")
    assert _handed == [False, True, False, False]
    assert rows[0]["object_count"] == 4
    assert not steps.may_overwrite(np.zeros(3))  # outside a worker's step call: never


def test_the_built_in_blur_in_a_worker_gives_the_copying_blurs_results(tmp_path: Path) -> None:
    # In place (handed over by the worker) or not (called directly): the same pixels, so the same objects.
    images = _plate(tmp_path / "plate")
    counter = (
        ("hcs_batch.steps:normalize", {}, False),
        ("hcs_batch.steps:gaussian_blur", {"sigma": 2.0}, False),
        (f"{__name__}:keep", {}, False),
    )
    _kept.clear()
    run_well(str(tmp_path / "plate"), "B02", images[:1], counter, str(tmp_path / "out"), "k")
    plane = tifffile.imread(tmp_path / "plate" / "B02_s1_w1.tif")
    expected = steps.gaussian_blur(steps.normalize(plane), sigma=2.0)
    np.testing.assert_array_equal(_kept[0], expected)


_kept: list[NDArray[Any]] = []


def keep(image: NDArray[Any]) -> None:
    _kept.append(image.copy())
