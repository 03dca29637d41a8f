"""The few hcs_batch calls the benchmark cases make, in one place: a silent host, plates, a service on a backend.

Keeping them here means an API change on main is fixed once, not in every case.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from hcs_batch.model import PlateRef, PlateState
from hcs_batch.workflow.host import BatchHost


class SilentHost(BatchHost):
    """A host that shows nothing and counts outcomes; ``all_done`` is set when the batch reports every plate."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.all_done = trio.Event()
        self.running = 0
        self.running_target = 1
        self.running_reached = trio.Event()
        """Set once ``running_target`` plates have entered ``running``."""

    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:
        if state == PlateState.RUNNING:
            self.running += 1
            if self.running >= self.running_target:
                self.running_reached.set()

    def emit_error(self, text: str) -> None:
        pass  # outcomes are counted below

    def on_plate_completed(self, plate: str, state: PlateState, error: str) -> None:
        self.outcomes[str(state)] += 1

    def on_all_plates_completed(self, summary: Any) -> None:
        self.all_done.set()


def make_plate_refs(
    root: Path, *, plates: int, wells: int = 1, sites: int = 1, channels: int = 1, size: int = 16, seed: int = 0
) -> list[PlateRef]:
    """Synthetic plates on disk (``hcs_batch.testing.plates.make_plates``) as ``PlateRef``s."""
    from hcs_batch.testing.plates import make_plates

    paths = make_plates(root, plates=plates, wells=wells, sites=sites, channels=channels, size=size, seed=seed)
    return [PlateRef.from_path(p) for p in paths]


def noop_pipeline() -> str:
    from hcs_batch.pipeline import noop_pipeline_text

    return noop_pipeline_text()


def default_pipeline() -> str:
    from hcs_batch.pipeline import default_pipeline_text

    return default_pipeline_text()


TMP = tempfile.gettempdir()
SERVE_ROOTS = ("--data-root", TMP, "--output-root", TMP)
"""``hcs-batch serve`` arguments letting a benchmark server read and write in the temporary folder, where the
benchmarks' plates and outputs live (a server's roots default to its working directory)."""


@asynccontextmanager
async def open_backend(server_url: str | None = None, *, workers: int | None = None) -> AsyncIterator[Any]:
    """An embedded local server and a connection to it (``server_url=None``), or a connection to ``server_url``.
    The embedded server's data and output root is the temporary folder."""
    from hcs_batch.connect import open_backend as _open_backend

    async with _open_backend(server_url, workers=workers, data_roots=[TMP], output_roots=[TMP]) as backend:
        yield backend


def embedded_backend(*args: Any, embedded: str = "process", **kwargs: Any) -> Any:
    """``hcs_batch.connect.open_backend`` with the temporary folder as the embedded server's roots (for the
    window's ``open_backend`` seam); ``embedded`` as there (``"process"``: as ``python -m guest_mode`` does)."""
    from hcs_batch.connect import open_backend as _open_backend

    return _open_backend(*args, data_roots=[TMP], output_roots=[TMP], embedded=embedded, **kwargs)


def make_service(host: BatchHost, backend: Any, *, pipeline_text: str, output_dir: Path) -> Any:
    from hcs_batch.workflow.service import BatchWorkflowService

    return BatchWorkflowService(host, backend, pipeline_text=pipeline_text, output_dir=str(output_dir))


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"hcs-bench-{prefix}-")
