"""The step allowlist against a real ``hcs-batch serve`` process: a server imports and runs steps only from
``hcs_batch.steps``, registered step packages and ``--allow-steps`` prefixes; anything else is refused at compile
without being imported (its import-time code never runs), with a message naming the module and how to allow it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from hcs_batch.client import open_connection
from hcs_batch.errors import PipelineError
from hcs_batch.server.allowlist import StepAllowlist
from hcs_batch.server.compiler import compile_pipeline
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import Server, env, reap, start_server
from .helpers import wait_terminal

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("imported")  # import-time side effect: must never happen on a refused step


def step(image):
    return {{"evil": 1}}
"""

EXPLOIT = """
name = "exploit"
[[steps]]
func = "numpy.char:add"
x2 = "; touch {marker}"
[[steps]]
func = "subprocess:run"
shell = true
"""

LAB = '''
"""A lab's step package."""


def double(image):
    return image * 2


def brightness(image):
    return {"brightness": float(image.mean())}
'''


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    """A folder on the server's PYTHONPATH holding ``evil_mod`` (writes ``marker`` when imported), the step
    package ``labsteps`` and its dist-info registering it under the ``hcs_batch.steps`` entry-point group."""
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "evil_mod.py").write_text(EVIL.format(marker=str(tmp_path / "imported")))
    (folder / "labsteps").mkdir()
    (folder / "labsteps" / "__init__.py").write_text(LAB)
    info = folder / "labsteps-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labsteps\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hcs_batch.steps]\nlab = labsteps\n")
    return folder


def _env(modules: Path) -> dict[str, str]:
    environment = env()
    environment["PYTHONPATH"] = os.pathsep.join([str(modules), environment["PYTHONPATH"]])
    return environment


@pytest.fixture
def server_factory(modules: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Server]]:
    monkeypatch.setenv("PYTHONPATH", _env(modules)["PYTHONPATH"])
    started: list[Server] = []
    yield started
    for server in started:
        reap(server)


async def _start(started: list[Server], *extra: str) -> Server:
    server = await trio.to_thread.run_sync(functools.partial(start_server, workers=1, extra=extra))
    started.append(server)
    return server


async def _compile_error(server: Server, plate: Path, pipeline: str) -> PipelineError:
    async with open_connection(server.url) as conn:
        with pytest.raises(PipelineError) as caught:
            await conn.compile(plate_path=str(plate), plate_name="p", pipeline=pipeline)
    return caught.value


@pytest.fixture
def plate(tmp_path: Path) -> Path:
    return make_plates(tmp_path / "plates", plates=1, wells=2, sites=1, channels=1, size=16, seed=3)[0]


async def test_a_step_outside_the_allowlist_is_refused_without_importing_it(
    server_factory: list[Server], plate: Path, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        server = await _start(server_factory)
        error = await _compile_error(server, plate, "[[steps]]\nfunc = 'evil_mod:step'\n")
    message = str(error)
    assert "'evil_mod'" in message and "--allow-steps evil_mod" in message and "entry-point group" in message
    assert not (tmp_path / "imported").exists(), "the refused module's import-time code ran"


async def test_the_shell_exploit_is_refused_and_runs_nothing(
    server_factory: list[Server], plate: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    with trio.fail_after(60):
        server = await _start(server_factory)
        error = await _compile_error(server, plate, EXPLOIT.format(marker=marker))
        assert "'numpy.char'" in str(error) and "not an allowed step module" in str(error)
        # Alone, the shell step is refused too; and a refused step later in a pipeline stops the whole compile
        # before any step module (here the allowed-looking first one) is imported.
        error = await _compile_error(server, plate, "[[steps]]\nfunc = 'subprocess:run'\nshell = true\n")
        assert "'subprocess'" in str(error)
        both = "[[steps]]\nfunc = 'hcs_batch.steps:noop'\n[[steps]]\nfunc = 'evil_mod:step'\n"
        assert "step 2 (evil_mod:step)" in str(await _compile_error(server, plate, both))
        # A name merely imported into an allowed module is not a step of it.
        error = await _compile_error(server, plate, "[[steps]]\nfunc = 'hcs_batch.steps:TypeVar'\n")
        assert "defined in module 'typing'" in str(error)
    assert not marker.exists() and not (tmp_path / "imported").exists()


async def test_allow_steps_and_registered_packages_are_allowed(
    server_factory: list[Server], plate: Path, tmp_path: Path
) -> None:
    pipeline = "[[steps]]\nfunc = 'labsteps:double'\n[[steps]]\nfunc = 'labsteps:brightness'\n"
    with trio.fail_after(90):
        server = await _start(server_factory, "--allow-steps", "evil_mod")
        async with open_connection(server.url) as conn:
            # Registered under the entry-point group: allowed without any flag.
            compiled = await conn.compile(plate_path=str(plate), plate_name="lab", pipeline=pipeline)
            execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
            assert (await wait_terminal(conn, [execution_id]))[execution_id].state == "completed"
            # Named by the operator: allowed, so (only now) imported.
            await conn.compile(plate_path=str(plate), plate_name="evil", pipeline="[[steps]]\nfunc = 'evil_mod:step'\n")
    assert (tmp_path / "imported").exists()
    assert "brightness" in (tmp_path / "out" / "lab" / "wells.csv").read_text().splitlines()[0]


def test_run_and_compile_pass_allow_steps_to_their_embedded_server(modules: Path, plate: Path, tmp_path: Path) -> None:
    pipeline = tmp_path / "evil.toml"
    pipeline.write_text("[[steps]]\nfunc = 'evil_mod:step'\n")
    command = [sys.executable, "-m", "hcs_batch", "run", str(plate), "--pipeline", str(pipeline), "--json"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=_env(modules))
    # A pipeline mistake found before any plate runs: one line, exit 2, nothing imported.
    assert refused.returncode == 2 and refused.stdout == "", refused.stderr
    assert refused.stderr.count("\n") == 1 and "evil.toml:2: step 1 (evil_mod:step)" in refused.stderr
    assert "not an allowed step module" in refused.stderr and "--allow-steps evil_mod" in refused.stderr
    assert not (tmp_path / "imported").exists()
    compile_command = [sys.executable, "-m", "hcs_batch", "compile", str(plate), "--pipeline", str(pipeline)]
    compile_refused = subprocess.run(compile_command, capture_output=True, text=True, timeout=120, env=_env(modules))
    assert compile_refused.returncode == 2 and "--allow-steps evil_mod" in compile_refused.stderr
    assert not (tmp_path / "imported").exists()
    compile_allowed = subprocess.run(
        [*compile_command, "--allow-steps", "evil_mod"], capture_output=True, text=True, timeout=120, env=_env(modules)
    )
    assert compile_allowed.returncode == 0, compile_allowed.stderr
    assert (tmp_path / "imported").exists()
    (tmp_path / "imported").unlink()
    allowed = subprocess.run(
        [*command, "--allow-steps", "evil_mod", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(modules),
    )
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "imported").exists()
    remote = subprocess.run(
        [*command, "--allow-steps", "evil_mod", "--server", "tcp://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(modules),
    )
    assert remote.returncode == 2 and "embedded server only" in remote.stderr


def test_prefixes_match_whole_module_names() -> None:
    allowlist = StepAllowlist.build(["mylab"], entry_points=False)
    assert allowlist.allows("mylab") and allowlist.allows("mylab.steps.deep")
    assert not allowlist.allows("mylabx") and not allowlist.allows("my") and not allowlist.allows("hcs_batch")
    assert allowlist.allows("hcs_batch.steps")
    with pytest.raises(PipelineError, match="private"):
        allowlist.check("mylab:_helper")
    with pytest.raises(Exception, match="not a module name"):
        StepAllowlist.build(["a b"])


def test_deeply_nested_pipeline_toml_is_a_pipeline_error() -> None:
    with pytest.raises(PipelineError, match="nests arrays or tables too deeply"):
        compile_pipeline("x = " + "[" * 5000 + "]" * 5000 + "\n[[steps]]\nfunc = 'hcs_batch.steps:noop'\n")


def test_the_gui_passes_allow_steps_and_its_plates_to_its_embedded_server(
    modules: Path, plate: Path, tmp_path: Path
) -> None:
    pipeline = tmp_path / "evil.toml"
    pipeline.write_text("[[steps]]\nfunc = 'evil_mod:step'\n")
    environment = dict(_env(modules), QT_QPA_PLATFORM="offscreen")
    command = [sys.executable, "-m", "guest_mode", str(plate), "--compile", "--exit-when-done"]
    command += ["--pipeline", str(pipeline), "--output", str(tmp_path / "out")]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    assert refused.returncode == 1, refused.stderr
    assert not (tmp_path / "imported").exists()
    allowed = subprocess.run(
        [*command, "--allow-steps", "evil_mod"], capture_output=True, text=True, timeout=120, env=environment
    )
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "imported").exists()
