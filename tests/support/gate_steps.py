"""Pipeline steps for the fault tests, importable by server worker processes through PYTHONPATH=tests/support.

Every step takes its decisions from files, never from timing: the test process writes or reads files in
``gate_dir`` and the worker answers. A worker that blocks records its pid first (``<pid>.pid``), so the test can
wait for it and, after killing the server, kill it by pid.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def _wait_for(path: Path) -> None:
    # A bounded poll would need a bound the test cannot know; the test always releases or kills the worker.
    while not path.exists():
        time.sleep(0.02)


def gate(image: np.ndarray, *, gate_dir: str, allow: int = 0) -> np.ndarray:
    """The first ``allow`` calls (over all workers) pass at once; later ones record their pid and wait until
    ``gate_dir/release`` exists (and pass then). Tokens are claimed with O_EXCL, so exactly ``allow`` pass."""
    folder = Path(gate_dir)
    release = folder / "release"
    if release.exists():
        return image
    for i in range(allow):
        try:
            os.close(os.open(folder / f"token_{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return image
        except FileExistsError:
            continue
    (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()))
    _wait_for(release)
    return image


def by_size(image: np.ndarray, *, gate_dir: str, hold_size: int = 0, fail_size: int = 0) -> np.ndarray:
    """Plates of one pipeline that behave differently by image size: ``hold_size`` images record the worker's
    pid and block until the process is killed; ``fail_size`` images fail the well; others pass at once."""
    side = int(image.shape[0])
    if side == fail_size:
        raise RuntimeError(f"planned failure for {side}px images")
    if side == hold_size:
        Path(gate_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
        while True:
            time.sleep(3600)
    return image
