"""``hcs-batch keys generate DIR``: write a CurveZMQ server and client key pair."""

from __future__ import annotations

import argparse
import sys

from ..errors import SecurityError
from ..security import generate_keys
from .exits import EXIT_OK, EXIT_USAGE

__all__ = ["main_keys"]


def main_keys(args: argparse.Namespace) -> int:
    """``hcs-batch keys generate DIR``; returns 0, or 2 (one line on stderr) when keys exist there already."""
    try:
        generate_keys(args.dir)
    except (SecurityError, OSError) as exc:
        print(f"hcs-batch keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"wrote CurveZMQ keys to {args.dir}: the server needs server.key_secret and clients/; "
        "a client needs server.key and client.key_secret",
        file=sys.stderr,
    )
    return EXIT_OK
