"""Shared test set-up: Qt offscreen before anything imports Qt; the test step package registered; every test in
its own working directory.

``tests/support`` goes on ``sys.path`` first: it holds ``slow_steps`` and the ``hcs_batch_test_steps`` dist-info
that registers it under the ``hcs_batch.steps`` entry-point group, exactly as a lab registers its step package,
so servers in this process allow it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SUPPORT = Path(__file__).parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own ``tmp_path``: a server's default data and output root is its working directory,
    so embedded servers (and ``hcs-batch serve`` subprocesses) of a test may use the test's own plates."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def gate_dir(tmp_path: Path) -> Path:
    """An empty folder for the ``slow_steps:gate`` step (see ``tests/support/serverproc.GATE_PIPELINE``)."""
    folder = tmp_path / "gate"
    folder.mkdir()
    return folder
