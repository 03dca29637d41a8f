"""docs/steps-reference.md is generated from the built-in steps' signatures and docstrings: it never drifts."""

from __future__ import annotations

from scripts.steps_reference import OUTPUT, render, step_functions


def test_the_reference_matches_the_steps() -> None:
    assert OUTPUT.read_text(encoding="utf-8") == render(), (
        "docs/steps-reference.md is out of date: run `python -m scripts.steps_reference` (or `make docs`)"
    )


def test_every_built_in_step_and_parameter_is_in_the_reference() -> None:
    text = OUTPUT.read_text(encoding="utf-8")
    names = [name for name, _ in step_functions()]
    assert {"normalize", "gaussian_blur", "otsu_threshold", "split_touching", "count_objects"} <= set(names)
    assert "| `sigma` | float | `1.0` | >= 0 |" in text
    assert "| `min_distance` | int | `5` | >= 1 |" in text
