"""What a new user trips on in the first hour (issue 12): every mistake is one line, exit 2, before any work."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hcs_batch.errors import InputError, PipelineError
from hcs_batch.server.compiler import compile_pipeline
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import env


def _hcs(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, env=env(), timeout=120, cwd=cwd
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def plate(tmp_path: Path) -> Path:
    return make_plates(tmp_path / "plates", plates=1, wells=1, size=32, seed=1)[0]


@pytest.mark.parametrize("server", ["127.0.0.1:7700", "tcp://127.0.0.1", "http://127.0.0.1:7700", "tcp://:7700/x"])
@pytest.mark.parametrize("command", ["run", "status", "attach"])
def test_a_malformed_server_address_names_the_expected_form(plate: Path, server: str, command: str) -> None:
    args = [command, str(plate), "--server", server] if command == "run" else [command, "--server", server]
    line = _one_line(_hcs(*args))
    assert "tcp://HOST:PORT" in line and repr(server) in line


async def test_open_backend_refuses_a_malformed_address_before_connecting() -> None:
    from hcs_batch.connect import open_backend

    with pytest.raises(InputError, match="tcp://HOST:PORT"):
        async with open_backend("127.0.0.1:7700"):
            pass  # pragma: no cover


def test_output_pointing_at_a_file_is_exit_2_before_any_work(plate: Path, tmp_path: Path) -> None:
    (tmp_path / "results.txt").write_text("mine")
    line = _one_line(_hcs("run", str(plate), "--output", str(tmp_path / "results.txt")))
    assert "results.txt is a file" in line
    assert (tmp_path / "results.txt").read_text() == "mine"


BAD_STEP = """name = "mine"

[[steps]]
func = "hcs_batch.steps:normalize"

[[steps]]
func = "hcs_batch.steps:gausian_blur"
sigma = 1.0
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BAD_STEP,
            "mine.toml:7: step 2 (hcs_batch.steps:gausian_blur): module 'hcs_batch.steps' has no function "
            "'gausian_blur'; did you mean 'gaussian_blur'?",
        ),
        (
            BAD_STEP.replace("gausian_blur", "gaussian_blur").replace("sigma", "sigmaa"),
            "mine.toml:8: step 2 (hcs_batch.steps:gaussian_blur): unknown parameter 'sigmaa'; did you mean 'sigma'?",
        ),
        (
            BAD_STEP.replace("gausian_blur", "gaussian_blur").replace("1.0", "-1"),
            "mine.toml:8: step 2 (hcs_batch.steps:gaussian_blur): parameter 'sigma' must be >= 0, got -1",
        ),
    ],
)
def test_a_pipeline_mistake_is_checked_once_before_any_plate(tmp_path: Path, text: str, expected: str) -> None:
    plates = make_plates(tmp_path / "plates", plates=3, wells=1, size=32, seed=1)
    (tmp_path / "mine.toml").write_text(text)
    result = _hcs("run", *map(str, plates), "--pipeline", "mine.toml", "--output", "out", cwd=tmp_path)
    line = _one_line(result)
    assert line.startswith(f"hcs-batch: {expected}"), line
    assert not (tmp_path / "out").exists(), "nothing ran"


@pytest.mark.parametrize(
    ("step", "params", "message"),
    [
        ("normalize", "high_percentile = 101", "'high_percentile' must be <= 100, got 101"),
        ("otsu_threshold", "bins = 1", "'bins' must be >= 2, got 1"),
        ("split_touching", "min_distance = 0", "'min_distance' must be >= 1, got 0"),
        ("count_objects", "connectivity = 3", "'connectivity' must be <= 2, got 3"),
    ],
)
def test_built_in_parameter_ranges_are_checked_at_compile(step: str, params: str, message: str) -> None:
    text = f'[[steps]]\nfunc = "hcs_batch.steps:{step}"\n{params}\n'
    with pytest.raises(PipelineError, match=message):
        compile_pipeline(text, "p.toml")


def test_serve_logs_one_line_per_execution_start_and_end(plate: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", "1"],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env(),
        )
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split()[4]
            result = _hcs("run", str(plate), "--server", url, "--output", str(tmp_path / "out"), "--json")
            assert result.returncode == 0, result.stderr
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            proc.stdout.close()  # type: ignore[union-attr]
    execution = json.loads(result.stdout)["plates"][0]["execution_id"]
    lines = [line for line in log_path.read_text().splitlines() if execution in line]
    assert len(lines) == 2, log_path.read_text()
    assert "plate plate_001 started, 1 wells" in lines[0]
    assert re.search(r"plate plate_001 completed in \d+\.\d\d s, 1 of 1 wells done \(0 reused\)$", lines[1])


def test_version_is_the_package_version() -> None:
    import hcs_batch

    result = _hcs("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hcs-batch {hcs_batch.__version__}"


def test_make_plates_refuses_a_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    first = _hcs("make-plates", "plates", "--plates", "2", "--wells", "2", "--size", "32", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (tmp_path / "plates" / "notes.txt").write_text("mine")
    line = _one_line(_hcs("make-plates", "plates", "--plates", "1", "--wells", "1", "--size", "32", cwd=tmp_path))
    assert "plates is not empty" in line and "--overwrite" in line
    assert len(list((tmp_path / "plates" / "plate_002").iterdir())) == 2, "nothing touched"
    again = _hcs("make-plates", "plates", "--plates", "1", "--wells", "1", "--size", "32", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "plates").iterdir()) == ["ground_truth.csv", "notes.txt", "plate_001"]
    assert [p.name for p in (tmp_path / "plates" / "plate_001").iterdir()] == ["A01_s1_w1.tif"]
    assert len((tmp_path / "plates" / "ground_truth.csv").read_text().splitlines()) == 2


def test_the_demo_writes_its_own_folder_and_make_demo_says_how_to_get_the_command(tmp_path: Path) -> None:
    (tmp_path / "hcs-results").mkdir()
    (tmp_path / "hcs-results" / "mine.csv").write_text("precious")
    result = _hcs("demo", "--plates", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hcs-demo-results" / "plate_001" / "wells.csv").exists()
    assert [p.name for p in (tmp_path / "hcs-results").iterdir()] == ["mine.csv"]
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert ". $(VENV)/bin/activate" in demo_recipe and "$(VENV)/bin/hcs-batch --help" in demo_recipe


def test_a_pipeline_mistake_against_a_named_server_is_one_error_before_any_plate(tmp_path: Path) -> None:
    from ..support.serverproc import running_server

    plates = make_plates(tmp_path / "plates", plates=3, wells=1, size=32, seed=1)
    (tmp_path / "mine.toml").write_text(BAD_STEP)
    with running_server(workers=1) as server:
        result = _hcs(
            "run", *map(str, plates), "--pipeline", "mine.toml", "--server", server.url, "--output", "out", cwd=tmp_path
        )
    line = _one_line(result)
    assert "mine.toml:7: step 2 (hcs_batch.steps:gausian_blur)" in line and "did you mean 'gaussian_blur'?" in line
    assert not (tmp_path / "out").exists()
