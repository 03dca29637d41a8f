"""Fixtures for the server tests: embedded servers on loopback and synthetic plates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hcs_batch.server import ServerAddress, open_embedded_server
from hcs_batch.testing.plates import make_plates


@pytest.fixture
async def server() -> AsyncIterator[ServerAddress]:
    """A server with two warm worker processes."""
    async with open_embedded_server(workers=2) as address:
        yield address


@pytest.fixture
async def control_server() -> AsyncIterator[ServerAddress]:
    """A server for control-path tests: one worker, started only if a well needs it."""
    async with open_embedded_server(workers=1, warm_workers=False) as address:
        yield address


@pytest.fixture
def plates(tmp_path: Path) -> list[Path]:
    """Two small synthetic plates (3 wells, 2 sites, 2 channels, 48 px) plus ground_truth.csv in their parent."""
    return make_plates(tmp_path / "plates", plates=2, wells=3, sites=2, channels=2, size=48, seed=7)
