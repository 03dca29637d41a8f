"""``hcs-batch make-plates DIR``: write synthetic plates with a ``ground_truth.csv``.

A folder that already holds something is refused (old and new images would mix, and ``ground_truth.csv`` would
describe only the new ones) unless ``--overwrite``: then the plate folders (``plate_NNN``) and
``ground_truth.csv`` already there are removed first; other files are left alone.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from ..testing.plates import make_plates
from .exits import EXIT_OK, EXIT_USAGE
from .parser import PLATE_OPTIONS

__all__ = ["main_make_plates"]

_PLATE = re.compile(r"^plate_\d{3,}$")


def main_make_plates(args: argparse.Namespace) -> int:
    """``hcs-batch make-plates DIR ...``: write the plates, print their folders; 2 on bad arguments or a folder
    that is not empty (without ``--overwrite``)."""
    target = Path(args.dir)
    try:
        if target.exists() and not target.is_dir():
            raise ValueError(f"{target} is a file; name a folder")
        if target.is_dir() and any(target.iterdir()):
            if not args.overwrite:
                raise ValueError(
                    f"{target} is not empty; choose an empty folder, or pass --overwrite to replace the plates in it"
                )
            for child in target.iterdir():
                if child.is_dir() and _PLATE.match(child.name):
                    shutil.rmtree(child)
            (target / "ground_truth.csv").unlink(missing_ok=True)
        folders = make_plates(args.dir, **{name: getattr(args, name) for name in PLATE_OPTIONS})
    except (ValueError, OSError) as exc:
        print(f"hcs-batch make-plates: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for folder in folders:
        print(folder)
    return EXIT_OK
