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
