"""Shared test set-up: Qt offscreen before anything imports Qt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def gate_dir(tmp_path: Path) -> Path:
    """An empty folder for the ``tests.support.slow_steps:gate`` step (see ``serverproc.GATE_PIPELINE``)."""
    folder = tmp_path / "gate"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private server registry for every test (and the servers it starts: subprocesses inherit the variable),
    so no test reads or writes the user's real ``hcs-batch servers`` folder."""
    folder = tmp_path / "runtime"
    monkeypatch.setenv("HCS_BATCH_RUNTIME_DIR", str(folder))
    return folder
