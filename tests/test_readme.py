"""The README's quick start and every command of "Using it" work as written, run in a fresh folder with the
environment's ``hcs-batch`` on the PATH (the only change: the server's port 7700 becomes a free one, since the test
machine may be running another server)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from .support.serverproc import ROOT, env, free_port_pair

README = ROOT / "README.md"


def _block(section: str) -> list[str]:
    """The command lines of the first ``sh`` block after the ``## section`` heading (comments stripped)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    block = text[text.index("```sh\n", start) + len("```sh\n") :]
    block = block[: block.index("```")]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line]


def _environment() -> dict[str, str]:
    environment = env()
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    return environment


def test_the_quick_start_names_the_environment_the_makefile_makes() -> None:
    lines = _block("Quick start")
    assert lines == ["make demo", ". .venv/bin/activate", "hcs-batch --help"]
    assert re.search(r"^VENV \?= \.venv$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    result = subprocess.run(["hcs-batch", "--help"], capture_output=True, text=True, env=_environment(), timeout=60)
    assert result.returncode == 0 and "make-plates" in result.stdout


def test_every_command_of_using_it_works_as_written(tmp_path: Path) -> None:
    port = free_port_pair()
    environment = _environment()
    server: subprocess.Popen[str] | None = None
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for line in _block("Using it"):
            line = line.replace("7700", str(port))
            if line.endswith("&"):  # the server: started like the shell would, then waited for until it listens
                server = subprocess.Popen(
                    shlex.split(line[:-1]), cwd=tmp_path, env=environment, stdout=subprocess.PIPE, text=True
                )
                assert server.stdout is not None
                assert "listening on" in server.stdout.readline()
                continue
            result = subprocess.run(
                ["bash", "-c", line], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, (line, result.stdout, result.stderr)
            outputs[line] = result
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=60) == 0
            assert server.stdout is not None
            server.stdout.close()
    summary = json.loads(next(out.stdout for line, out in outputs.items() if "--json" in line))
    assert summary["counts"] == {"completed": 2} and summary["wells_reused"] == 0
    runs = [out.stderr for line, out in outputs.items() if line.startswith("hcs-batch run") and "--json" not in line]
    assert len(runs) == 2 and all("0 well(s) computed, 8 reused" in err for err in runs)
    assert (tmp_path / "results" / "plate_001" / "wells.csv").exists()


def test_the_readmes_example_pipeline_is_the_built_in_one() -> None:
    # Issue 12: the README's example was not the built-in pipeline and measured nothing.
    import tomllib

    text = README.read_text(encoding="utf-8")
    start = text.index("\n### Pipelines\n")
    block = text[text.index("```toml\n", start) + len("```toml\n") :]
    shown = tomllib.loads(block[: block.index("```")])
    built_in = ROOT / "src" / "hcs_batch" / "pipelines" / "nucleus_counter.toml"
    assert shown == tomllib.loads(built_in.read_text(encoding="utf-8"))
    assert any(step["func"] == "hcs_batch.steps:split_touching" for step in shown["steps"])  # it makes objects


def _built_table_modules() -> set[str]:
    """The modules the "How it is built" table names: in its middle column, a backticked folder (ending in ``/``)
    is followed by backticked module names inside it."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## How it is built\n")
    section = text[start : text.index("\n## ", start + 1)]
    named: set[str] = set()
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| ") or len(cells) < 3 or line.startswith("| ---") or line.startswith("| layer"):
            continue
        folder = ""
        for token in re.findall(r"`([^`]+)`", cells[1]):
            if token.endswith("/"):
                folder = token
            else:
                named.add(folder + token)
    return named


def test_how_it_is_built_names_every_module_and_nothing_else() -> None:
    on_disk = {
        str(path.relative_to(base))
        for base, folder in ((ROOT / "src", "hcs_batch"), (ROOT, "guest_mode"))
        for path in (base / folder).rglob("*.py")
        if path.name != "__init__.py"
    }
    named = _built_table_modules()
    assert sorted(on_disk - named) == [], "modules missing from the README's table"
    assert sorted(named - on_disk) == [], "the README's table names modules that do not exist"
