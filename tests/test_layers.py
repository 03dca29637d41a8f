"""DESIGN.md's layer table, checked over the source (AST) and at run time (a fresh interpreter).

Every import of every module under ``src/hcs_batch`` and ``guest_mode`` counts, including imports inside functions
(they run too); only imports under ``if TYPE_CHECKING:`` are exempt (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.serverproc import env

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "src" / "hcs_batch", ROOT / "guest_mode"]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("model", ("hcs_batch._util", "hcs_batch.errors", "hcs_batch.model", "hcs_batch.plate_settings")),
    (
        "protocol",
        (
            "hcs_batch.protocol",
            "hcs_batch.pipeline",
            "hcs_batch.steps",
            "hcs_batch.imageops",
            "hcs_batch.measure",
            "hcs_batch.outline",
        ),
    ),
    ("runtime", ("hcs_batch.runtime",)),
    ("backend", ("hcs_batch.backend",)),
    ("transport", ("hcs_batch.client", "hcs_batch._zmq", "hcs_batch.security")),
    ("policy", ("hcs_batch.workflow",)),
    ("server", ("hcs_batch.server",)),
    ("connect", ("hcs_batch.connect",)),
    ("hosts", ("hcs_batch.cli", "hcs_batch.__main__", "hcs_batch.testing", "guest_mode")),
]
"""The layers of DESIGN.md, top first: a module imports only its own layer and those above it."""

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "model": ("trio", "zmq", "PyQt6", "msgspec", "socket", "subprocess"),
    "protocol": ("zmq", "PyQt6", "trio"),
    "runtime": ("zmq", "PyQt6", "hcs_batch.model", "hcs_batch.protocol"),
    "backend": ("zmq", "PyQt6"),
    "transport": ("PyQt6",),
    "policy": ("zmq", "PyQt6", "hcs_batch.client", "hcs_batch._zmq", "hcs_batch.security"),
    "server": ("PyQt6", "hcs_batch.client", "hcs_batch.workflow", "hcs_batch.backend"),
    "connect": ("PyQt6",),
    "hosts": (),
}
"""What a layer must not import although the order would allow it (the "must not" column)."""

RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def _module_name(path: Path) -> str:
    base = ROOT / "src" if path.is_relative_to(ROOT / "src") else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import that can run, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from . import x`` imports the module ``package.x`` when there is one
            submodules = [f"{target}.{a.name}" for a in node.names if _is_module(target, a.name)]
            found.extend((node.lineno, submodule) for submodule in submodules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_module(package: str, name: str) -> bool:
    if not package.startswith(("hcs_batch", "guest_mode")):
        return False
    folder = (ROOT / "src" if package.startswith("hcs_batch") else ROOT).joinpath(*package.split("."))
    return (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()


def _violations() -> list[str]:
    problems: list[str] = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            module = _module_name(path)
            if module == "hcs_batch":
                continue  # the package root only re-exports, lazily
            layer = _layer(module)
            if layer is None:
                problems.append(f"{module}: in no layer of DESIGN.md; add it to LAYERS")
                continue
            for line, target in _imports(path, module):
                where = f"{path.relative_to(ROOT)}:{line}"
                if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[layer]):
                    problems.append(f"{where}: {layer} layer imports {target}")
                    continue
                target_layer = _layer(target)
                if target_layer is not None and RANK[target_layer] > RANK[layer]:
                    problems.append(f"{where}: {layer} layer imports {target} of the lower {target_layer} layer")
    return problems


def test_every_import_follows_the_layer_table() -> None:
    assert _violations() == []


DASK_HOME = ("hcs_batch.server.executor.dask", "hcs_batch.server.executor.dask_cluster")
"""The only modules that may import ``dask`` or ``distributed``: the Dask executor's (imported only when asked for)."""


def test_only_the_dask_executor_imports_dask() -> None:
    found = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            module = _module_name(path)
            for line, target in _imports(path, module):
                if target.split(".")[0] in ("dask", "distributed") and module not in DASK_HOME:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    assert found == []


def test_the_check_catches_a_policy_module_that_imports_the_transport(tmp_path: Path) -> None:
    assert _layer("hcs_batch.workflow.service") == "policy"
    assert _layer("hcs_batch.server.executor.local") == "server"
    assert _layer("hcs_batch.server.allocator") == _layer("hcs_batch.server.recycle") == "server"
    assert _layer("hcs_batch.imageops") == _layer("hcs_batch.steps") == "protocol"  # the steps' building blocks
    assert _layer("guest_mode.window") == "hosts"
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ..client import connection\n    import zmq\n")
    assert _imports(bad, "hcs_batch.workflow.bad") == [
        (2, "hcs_batch.client"),
        (2, "hcs_batch.client.connection"),
        (3, "zmq"),
    ]
    guarded = tmp_path / "guarded.py"
    guarded.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import zmq\n")
    assert _imports(guarded, "hcs_batch.workflow.guarded") == [(1, "typing")]


def _loaded_in_fresh_interpreter(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("zmq", "PyQt6") or m.startswith("hcs_batch.client")}


@pytest.mark.slow
def test_the_model_and_the_policy_load_neither_zmq_nor_qt() -> None:
    loaded = _loaded_in_fresh_interpreter(
        "import hcs_batch, hcs_batch.model, hcs_batch.workflow.service, hcs_batch.runtime, hcs_batch.steps"
    )
    assert "hcs_batch.workflow.service" in loaded and "hcs_batch.imageops" in loaded
    assert _heavy(loaded) == set()
    assert "cv2" not in loaded  # imageops loads OpenCV on first use, in a worker


@pytest.mark.slow
def test_a_worker_process_loads_only_what_a_well_needs() -> None:
    loaded = _loaded_in_fresh_interpreter("import hcs_batch.server.worker")
    assert "hcs_batch.server.worker" in loaded
    assert _heavy(loaded) == set()
    unwanted = ("hcs_batch.workflow", "trio_parallel", "hcs_batch.server.control")
    assert {m for m in loaded if m.startswith(unwanted)} == set()


@pytest.mark.slow
def test_a_server_loads_no_image_library_before_its_workers_start() -> None:
    # An embedded server (hcs-batch run) starts its workers only once these are imported: SciPy alone was ~0.3 s.
    loaded = _loaded_in_fresh_interpreter(
        "import hcs_batch.cli.batch, hcs_batch.server.serve, hcs_batch.server.compiler, hcs_batch.steps"
    )
    assert "hcs_batch.server.serve" in loaded and "hcs_batch.steps" in loaded
    image_libraries = ("scipy", "skimage", "cv2", "tifffile", "pyarrow", "matplotlib")
    assert {m for m in loaded if m.split(".")[0] in image_libraries} == set()


@pytest.mark.slow
def test_the_public_api_still_loads_the_transport_on_demand() -> None:
    loaded = _loaded_in_fresh_interpreter("import hcs_batch\nhcs_batch.open_connection")
    assert "zmq" in loaded
