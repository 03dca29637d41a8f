"""Compile over the wire: layout warnings in the reply, and hostile layout/projection config refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import trio

from hcs_batch.client import open_connection
from hcs_batch.errors import PlateError
from hcs_batch.pipeline import default_pipeline_text, noop_pipeline_text
from hcs_batch.server import ServerAddress
from hcs_batch.server.layouts import read_plate
from tests.server.helpers import wait_terminal
from tests.support.vendor_plates import make_metaxpress_plate, write_htd


async def test_compile_reply_carries_layout_counts_and_warnings(control_server: ServerAddress, tmp_path: Path) -> None:
    plate = tmp_path / "4711"
    make_metaxpress_plate(plate, wells=("A01", "B02"), sites=2, waves=2, timepoints=2, zsteps=2, htd_sites=3, size=16)
    (plate / "TimePoint_1" / "Thumbs.db").write_bytes(b"x")
    async with open_connection(control_server.control_url) as conn:
        reply = await conn.compile(plate_path=str(plate), plate_name="Plate1", pipeline=noop_pipeline_text())
    assert (reply.layout, reply.wells, reply.sites, reply.channels) == ("imagexpress", ["A01", "B02"], 2, 2)
    assert (reply.timepoints, reply.z_planes) == (2, 2)
    assert len(reply.warnings) == 2
    assert reply.warnings[0].startswith("8 image(s) promised by Plate1.HTD are missing: A01 site 3 channel 1")
    assert reply.warnings[1] == "1 file(s) not understood by the imagexpress layout were ignored: TimePoint_1/Thumbs.db"


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"layout": "../../etc"}, "unknown plate layout '../../etc'"),
        ({"layout": "os:system"}, "unknown plate layout 'os:system'"),
        ({"projection": "__import__('os')"}, "unknown projection"),
    ],
)
async def test_hostile_layout_config_is_refused(
    control_server: ServerAddress, tmp_path: Path, config: dict[str, str], needle: str
) -> None:
    make_metaxpress_plate(tmp_path / "p", wells=("A01",), sites=1, waves=1, size=16)
    async with open_connection(control_server.control_url) as conn:
        with pytest.raises(PlateError, match=needle.replace("(", r"\(")):
            await conn.compile(
                plate_path=str(tmp_path / "p"), plate_name="p", pipeline=noop_pipeline_text(), config=config
            )


def test_a_wavelength_without_z_beside_one_with_zsteps(tmp_path: Path) -> None:
    # MetaXpress acquires z per wavelength: w1 has ZStep planes (and a projection beside them), w2 only one image.
    plate = tmp_path / "p"
    (plate / "TimePoint_1" / "ZStep_1").mkdir(parents=True)
    (plate / "TimePoint_1" / "ZStep_2").mkdir()
    write_htd(plate / "P.HTD", wells=["A01"], sites=1, waves=2, zsteps=2)
    image = np.zeros((4, 4), np.uint16)
    for rel in ("TimePoint_1/P_A01_w1.tif", "TimePoint_1/ZStep_1/P_A01_w1.tif", "TimePoint_1/ZStep_2/P_A01_w1.tif"):
        tifffile.imwrite(plate / rel, image)
    tifffile.imwrite(plate / "TimePoint_1/P_A01_w2.tif", image)
    index = read_plate(plate)
    assert index.wells["A01"] == (
        (
            1,
            1,
            (
                (1, ("TimePoint_1/ZStep_1/P_A01_w1.tif", "TimePoint_1/ZStep_2/P_A01_w1.tif")),
                (2, ("TimePoint_1/P_A01_w2.tif",)),
            ),
        ),
    )
    assert index.skipped == ("TimePoint_1/P_A01_w1.tif",)
    assert index.warnings == ()


async def test_an_rgb_image_fails_its_plate_naming_the_file_and_shape(
    control_server: ServerAddress, tmp_path: Path
) -> None:
    plate = tmp_path / "p"
    make_metaxpress_plate(plate, wells=("A01", "B02"), sites=1, waves=1, size=16, thumbs=False)
    (rgb,) = (plate / "TimePoint_1").glob("Plate1_B02*.tif")
    tifffile.imwrite(rgb, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    async with open_connection(control_server.control_url) as conn:
        compiled = await conn.compile(plate_path=str(plate), plate_name="Plate1", pipeline=default_pipeline_text())
        execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
        with trio.fail_after(120):
            record = (await wait_terminal(conn, [execution_id]))[execution_id]
    assert record.state == "failed"
    # B02 fails alone: A01 is computed and written.
    relative = rgb.relative_to(plate).as_posix()
    assert record.error.startswith(f"1 of 2 wells failed: B02: cannot read {relative}: shape (16, 16, 3)"), record.error
    assert record.wells_done == 1 and (tmp_path / "out" / "Plate1" / "wells" / "A01.json").is_file()
    assert rgb.name in record.error and "shape (16, 16, 3) is not one 2-D grey plane" in record.error
