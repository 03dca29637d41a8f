"""``hcs-batch make-plates DIR``: write synthetic plates with a ``ground_truth.csv``."""

from __future__ import annotations

import argparse
import sys

from ..testing.plates import make_plates
from .exits import EXIT_OK, EXIT_USAGE

__all__ = ["main_make_plates"]


def main_make_plates(args: argparse.Namespace) -> int:
    """``hcs-batch make-plates DIR ...``: write the plates, print their folders; 2 on bad arguments."""
    try:
        folders = make_plates(
            args.dir,
            plates=args.plates,
            wells=args.wells,
            sites=args.sites,
            channels=args.channels,
            size=args.size,
            seed=args.seed,
        )
    except (ValueError, OSError) as exc:
        print(f"hcs-batch make-plates: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for folder in folders:
        print(folder)
    return EXIT_OK
