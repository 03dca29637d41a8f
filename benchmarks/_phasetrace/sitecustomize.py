"""A benchmark-only tracer of one command's phases (:mod:`benchmarks.run_phases`); not part of hcs-batch.

Put this folder first on ``PYTHONPATH`` and name a file in ``HCS_PHASES``: every Python process of the command
(the CLI, spawned or forked workers) appends JSON lines ``{"t": epoch seconds, "cpu": the process's CPU seconds,
"pid", "ev", "ph"}`` to it: ``I`` when the interpreter reaches ``site``, when its last ``atexit`` handler runs and
when a module of ``MODULES`` has finished importing, ``B``/``E`` around every call of ``FUNCTIONS``. Without
``HCS_PHASES`` it does nothing.
"""

from __future__ import annotations

import functools
import importlib.machinery
import inspect
import json
import os
import sys
import time
from typing import Any

_PATH = os.environ.get("HCS_PHASES")

MODULES = {
    "hcs_batch.cli.batch",
    "hcs_batch.server.serve",
    "hcs_batch.server.worker",
    "hcs_batch.server.executor.local",
    "hcs_batch.workflow.service",
    "trio_parallel",
}
"""Modules whose import end is logged (``import:NAME``)."""

FUNCTIONS: dict[str, list[str]] = {
    "hcs_batch.cli": ["main"],
    "hcs_batch.cli.batch": ["_run_batch", "_report"],
    "hcs_batch.server.compiler": ["compile_pipeline", "compile_plate"],
    "hcs_batch.server.serve": ["serve"],
    "hcs_batch.server.executor.local": ["LocalRunner.warm_up", "_LocalWells.run_well", "open_worker_context"],
    "hcs_batch.server.executor.base": ["Executor.submit", "Executor._run"],
    "hcs_batch.server.results": ["write_plate_results", "load_done_wells"],
    "hcs_batch.server.plate_map": ["write_plate_map"],
    "hcs_batch.server.worker": ["warm_up", "run_well"],
    "hcs_batch.server.allocator": ["keep_heap"],
    "hcs_batch.workflow.service": ["BatchWorkflowService.run_plates"],
    "trio_parallel._proc": ["SpawnProcWorker.start"],
    "benchmarks._realsteps": ["process_well", "write_rows", "write_objects"],
    "benchmarks.realplates_pool": ["main"],
}
"""Functions (``Class.method`` too, sync or async) whose calls are logged as ``NAME`` begin/end."""


def log(ev: str, ph: str = "I") -> None:
    assert _PATH is not None
    line = json.dumps({"t": time.time(), "cpu": time.process_time(), "pid": os.getpid(), "ev": ev, "ph": ph}) + "\n"
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _wrap(name: str, func: Any) -> Any:
    if getattr(func, "__phase_wrapped__", False):
        return func
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            log(name, "B")
            try:
                return await func(*args, **kwargs)
            finally:
                log(name, "E")

        traced: Any = traced_async
    else:

        @functools.wraps(func)
        def traced_sync(*args: Any, **kwargs: Any) -> Any:
            log(name, "B")
            try:
                return func(*args, **kwargs)
            finally:
                log(name, "E")

        traced = traced_sync
    traced.__phase_wrapped__ = True
    return traced


def _patch(module: Any) -> None:
    for qualname in FUNCTIONS.get(module.__name__, []):
        owner, _, attr = qualname.rpartition(".")
        target = getattr(module, owner) if owner else module
        original = inspect.getattr_static(target, attr, None)
        if original is None:
            continue
        if isinstance(original, (staticmethod, classmethod)):
            continue
        setattr(target, attr, _wrap(qualname, original))


class _Finder:
    """Finds the module as the path finder does, then logs and patches after its body has run."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in MODULES and name not in FUNCTIONS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            if name in MODULES:
                log(f"import:{name}")
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _PATH:
    import atexit

    log("interpreter")
    atexit.register(log, "atexit")  # registered first, so it runs last of the atexit handlers
    sys.meta_path.insert(0, _Finder())
