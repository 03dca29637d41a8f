"""User-style steps for tests (``tests.support.user_steps:NAME``): steps that return what a careless user step
might, so the server's checks on step results can be driven end to end."""

from __future__ import annotations

from typing import Any

import numpy as np


def measure_well(image: np.ndarray, *, name: str = "well", value: str = "Z99") -> dict[str, Any]:
    """Return one measurement called ``name`` (by default one that clashes with the ``well`` column)."""
    return {name: value}


def measure_array(image: np.ndarray) -> dict[str, Any]:
    """Return an array where a measurement (one number) belongs."""
    return {"profile": image.mean(axis=0)}


def measure_numpy_scalar(image: np.ndarray) -> dict[str, Any]:
    """A numpy scalar is one number: accepted and stored as a plain one."""
    return {"peak": np.float32(image.max())}
