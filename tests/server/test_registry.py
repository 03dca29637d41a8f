"""The server registry: atomic entries, removed on exit, entries of dead processes dropped when read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hcs_batch.server import registry
from hcs_batch.server.registry import ServerEntry, find_entry, read_entries, registered


def _entry(pid: int, port: int = 7700) -> ServerEntry:
    return ServerEntry(url=f"tcp://127.0.0.1:{port}", pid=pid, started_at="2026-12-04T05:00:00+00:00")


def test_the_env_var_names_the_folder(runtime_dir: Path) -> None:
    assert registry.runtime_dir() == runtime_dir


def test_no_xdg_runtime_dir_is_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    # `hcs-batch status` and `serve` in an ssh session or container printed platformdirs' RuntimeDirWarning (two
    # lines) on every command; under filterwarnings=error a warning fails this test. Nothing is created.
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert registry.runtime_dir().name == "hcs_batch"


def test_an_entry_lives_as_long_as_its_block(runtime_dir: Path) -> None:
    # This test process runs hcs_batch code but its command line is pytest's: register a process that is.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()  # hcs_batch"], stdin=subprocess.PIPE)
    try:
        with registered(_entry(proc.pid)) as path:
            assert path.parent == runtime_dir and oct(runtime_dir.stat().st_mode & 0o777) == "0o700"
            assert json.loads(path.read_text())["pid"] == proc.pid
            assert [e.pid for e in read_entries()] == [proc.pid]
            assert find_entry("tcp://localhost:7700") == _entry(proc.pid)
            assert find_entry("tcp://127.0.0.1:7701") is None
            assert not [p for p in runtime_dir.iterdir() if p.suffix == ".tmp"]  # written atomically
        assert not path.exists() and read_entries() == []
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


def test_dead_and_foreign_pids_and_garbage_are_dropped(runtime_dir: Path) -> None:
    runtime_dir.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = runtime_dir / "server-1-1.json"
    dead.write_bytes(json.dumps({"url": "tcp://127.0.0.1:1", "pid": gone.pid, "started_at": "x"}).encode())
    foreign = runtime_dir / "server-2-2.json"  # a live pid that is not hcs-batch (pid reuse): never trusted
    foreign.write_bytes(json.dumps({"url": "tcp://127.0.0.1:2", "pid": 1, "started_at": "x"}).encode())
    (runtime_dir / "server-3-3.json").write_text("{not json")
    assert read_entries() == []
    assert not dead.exists() and not foreign.exists()


@pytest.mark.parametrize("fields", [{"events_port": 70000}, {"workers": -2}, {"pid": 0}])
def test_an_entry_with_an_impossible_value_is_malformed_and_skipped(runtime_dir: Path, fields: dict[str, int]) -> None:
    # Written by a live hcs-batch process, so only the value can make the entry go (pid 0 would name a process
    # group to os.kill).
    runtime_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()  # hcs_batch"], stdin=subprocess.PIPE)
    try:
        good = {"url": "tcp://127.0.0.1:7700", "pid": proc.pid, "started_at": "x"}
        (runtime_dir / "server-1-7700.json").write_bytes(json.dumps(good).encode())
        (runtime_dir / "server-2-7701.json").write_bytes(json.dumps({**good, **fields}).encode())
        assert [entry.pid for entry in read_entries()] == [proc.pid]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
