"""Test support: an in-memory execution backend (:mod:`.backend`) and synthetic plates (:mod:`.plates`).

Names load lazily: importing :mod:`hcs_batch.testing.plates` (``hcs-batch make-plates``) does not load the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import CompileCall, ExecuteCall, InMemoryBackend, open_in_memory_backend
    from .plates import make_plates, well_names

__all__ = ["CompileCall", "ExecuteCall", "InMemoryBackend", "make_plates", "open_in_memory_backend", "well_names"]

_HOMES = {"make_plates": "plates", "well_names": "plates"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_HOMES.get(name, 'backend')}", __name__), name)
