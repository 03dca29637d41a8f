"""Shared test set-up: Qt offscreen before anything imports Qt; every test in its own working directory.

The test step modules (``tests.support.slow_steps``, ``user_steps``) are registered under the ``hcs_batch.steps``
entry-point group by the metadata-only folder ``tests/support/dist`` (on pytest's ``pythonpath``, see
pyproject.toml; :func:`tests.support.serverproc.env` gives it to subprocesses), exactly as a lab registers its
step package, so servers allow them without ``--allow-steps``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own ``tmp_path``: a server's default data and output root is its working directory,
    so embedded servers (and ``hcs-batch serve`` subprocesses) of a test may use the test's own plates."""
    monkeypatch.chdir(tmp_path)


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
