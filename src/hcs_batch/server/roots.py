"""Data and output roots: the only folders a server reads plates from and writes results below.

``hcs-batch serve --data-root DIR --output-root DIR`` (each repeatable; default: the server's working directory,
as Jupyter's root). A plate folder or an output folder is accepted when its real path (symlinks followed, ``..``
resolved) is a root or lies below one. A refusal says "outside the server's data roots" / "outside the server's
output roots" and names the path exactly as the client sent it, in the same words whether or not it exists: the
answer reveals nothing about the file system outside the roots. A relative output folder is taken below the first
output root.

The checks follow symlinks (``os.path.realpath``): blocking file-system calls, run them on a thread lane.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, PlateError
from ..model import safe_plate_name
from .layouts.flat import list_folder

__all__ = ["Roots", "check_output_dir", "check_plate_folder", "list_plate_folder"]


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def _inside(real: Path, roots: tuple[Path, ...]) -> bool:
    return any(real == root or root in real.parents for root in roots)


@dataclass(frozen=True, slots=True)
class Roots:
    """The real paths of a server's data roots and output roots (each at least one)."""

    data: tuple[Path, ...]
    output: tuple[Path, ...]

    @classmethod
    def build(cls, data: Iterable[str | Path] = (), output: Iterable[str | Path] = ()) -> Roots:
        """Resolve the roots (blocking); an empty list means the working directory.

        Raises:
            InputError: a data root that is not an existing folder (an output root may not exist yet).
        """
        data_roots = tuple(dict.fromkeys(_real(d) for d in data)) or (_real(os.getcwd()),)
        output_roots = tuple(dict.fromkeys(_real(o) for o in output)) or (_real(os.getcwd()),)
        for root in data_roots:
            if not root.is_dir():
                raise InputError(f"--data-root {root} is not an existing folder")
        for root in output_roots:
            if root.exists() and not root.is_dir():
                raise InputError(f"--output-root {root} is not a folder")
        return cls(data_roots, output_roots)


def check_plate_folder(path: str, roots: Roots) -> Path:
    """The real path of the plate folder ``path`` if it lies inside a data root.

    Raises:
        PlateError: outside the data roots (the same message whether or not ``path`` exists).
    """
    real = _real(path)
    if not _inside(real, roots.data):
        raise PlateError(f"plate folder {path!r} is outside the server's data roots; ask its operator to add one")
    return real


def list_plate_folder(path: str, roots: Roots) -> tuple[str, list[str]]:
    """(real path, names in it) of a plate folder inside the data roots: one blocking call for a thread lane.
    A symbolic link in the folder must point inside the data roots too (so a planted link cannot make the server
    read a file elsewhere); the check costs nothing for ordinary files.

    Raises:
        PlateError: outside the data roots, a link in it pointing outside them, or (inside) missing, not a
            folder, unreadable.
    """
    real = check_plate_folder(path, roots)
    try:
        with os.scandir(real) as entries:
            found = [(entry.name, entry.is_symlink()) for entry in entries]
    except OSError:
        list_folder(real)  # raises the PlateError naming the problem
        raise
    for name, is_link in found:
        if is_link and not _inside(_real(real / name), roots.data):
            raise PlateError(
                f"plate folder {path!r} holds {name!r}, a link to a file outside the server's data roots; "
                "copy the file into the plate folder or ask the operator to add a data root"
            )
    return str(real), [name for name, _ in found]


def check_output_dir(output_dir: str, plate_name: str, roots: Roots) -> Path:
    """The real path of ``output_dir/plate_name`` if it lies inside an output root; a relative ``output_dir`` is
    taken below the first output root. The plate folder itself is checked too (a symlink placed there cannot
    redirect the results).

    Raises:
        PlateError: an unsafe plate name, or outside the output roots (the same message whether or not it exists).
    """
    safe_plate_name(plate_name)
    given = Path(os.path.expanduser(output_dir))
    base = given if given.is_absolute() else roots.output[0] / given
    real_base = _real(base)
    target = _real(real_base / plate_name)
    if not _inside(real_base, roots.output) or not _inside(target, roots.output) or target.parent != real_base:
        raise PlateError(
            f"output folder {output_dir!r} is outside the server's output roots; ask its operator to add one"
        )
    return target
