"""Per-plate settings: the pure policy, and the server-side reader on real files (symlinks out refused)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hcs_batch.errors import PlateError
from hcs_batch.plate_settings import PlateSettings, is_inside, merged_config, parse_plate_settings
from hcs_batch.server.plate_files import read_plate_files


def test_pipeline_and_config_are_parsed() -> None:
    settings = parse_plate_settings('pipeline = "./sub/p.toml"\n[config]\nobjective = "20x"\nbin = 2\nflag = true\n')
    assert settings.pipeline == "sub/p.toml"
    assert dict(settings.config) == {"objective": "20x", "bin": "2", "flag": "true"}
    assert merged_config({"objective": "10x", "keep": "1"}, settings) == {
        "objective": "20x",
        "keep": "1",
        "bin": "2",
        "flag": "true",
    }
    assert merged_config({"a": "1"}, None) == {"a": "1"}
    assert parse_plate_settings("") == PlateSettings()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('pipeline = "../other/p.toml"', "inside"),
        ('pipeline = "sub/../../p.toml"', "inside"),
        ('pipeline = "/etc/passwd"', "absolute"),
        ('pipeline = "~/p.toml"', "absolute"),
        ('pipeline = "C:\\\\p.toml"', "absolute"),
        ('pipeline = "..\\\\p.toml"', "inside"),
        ('pipeline = ""', "relative"),
        ("pipeline = 3", "relative"),
        ('pipeline = "."', "name a file"),
        ('pipelin = "p.toml"', "unknown setting 'pipelin'"),
        ("config = 1", "table"),
        ("[config]\nx = [1]", "string, number or boolean"),
        ("pipeline = ", "not valid TOML"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_reason(text: str, words: str) -> None:
    with pytest.raises(PlateError, match=r"hcs_batch\.toml") as info:
        parse_plate_settings(text)
    assert words in str(info.value)


def test_is_inside_is_path_aware() -> None:
    assert is_inside("/data/plate", "/data/plate/p.toml")
    assert is_inside("/data/plate", "/data/plate")
    assert not is_inside("/data/plate", "/data/plate2/p.toml")  # a prefix is not a parent
    assert not is_inside("/data/plate", "/data/p.toml")


def _plate(tmp_path: Path) -> Path:
    plate = tmp_path / "plate"
    plate.mkdir()
    (plate / "A01_s1_w1.tif").write_bytes(b"")
    return plate


def test_reader_reads_the_named_pipeline(tmp_path: Path) -> None:
    plate = _plate(tmp_path)
    (plate / "own.toml").write_text('name = "own"\n')
    (plate / "hcs_batch.toml").write_text('pipeline = "own.toml"\n[config]\nk = "v"\n')
    files = read_plate_files(str(plate), os.listdir(plate))
    assert files is not None and files.pipeline_text == 'name = "own"\n' and dict(files.settings.config) == {"k": "v"}
    assert read_plate_files(str(plate), ["A01_s1_w1.tif"]) is None  # no settings file in the listing


def test_reader_refuses_symlinks_out_of_the_plate(tmp_path: Path) -> None:
    plate = _plate(tmp_path)
    outside = tmp_path / "secret.toml"
    outside.write_text('name = "stolen"\n')
    (plate / "link.toml").symlink_to(outside)
    (plate / "hcs_batch.toml").write_text('pipeline = "link.toml"\n')
    with pytest.raises(PlateError, match="out of the plate folder"):
        read_plate_files(str(plate), os.listdir(plate))
    # The settings file itself may not be a link out either.
    (plate / "hcs_batch.toml").unlink()
    (tmp_path / "settings.toml").write_text('pipeline = "own.toml"\n')
    (plate / "hcs_batch.toml").symlink_to(tmp_path / "settings.toml")
    with pytest.raises(PlateError, match="link out of the plate folder"):
        read_plate_files(str(plate), os.listdir(plate))


def test_reader_names_a_missing_pipeline(tmp_path: Path) -> None:
    plate = _plate(tmp_path)
    (plate / "hcs_batch.toml").write_text('pipeline = "missing.toml"\n')
    with pytest.raises(PlateError, match=r"missing\.toml does not exist"):
        read_plate_files(str(plate), os.listdir(plate))
