"""The public API is exactly what hcs_batch re-exports."""

from __future__ import annotations

import hcs_batch


def test_all_names_exist_and_nothing_public_is_missing() -> None:
    for name in hcs_batch.__all__:
        assert hasattr(hcs_batch, name), name
    public = {
        name
        for name, value in vars(hcs_batch).items()
        if not name.startswith("_") and not getattr(value, "__name__", "").startswith("hcs_batch.")
    }
    assert public - {"annotations"} == set(hcs_batch.__all__)
