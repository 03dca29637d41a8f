"""``hcs-batch inspect PLATE [--layout NAME] [--json]``: what a plate layout finds in a folder, before any run.

Prints the layout, the plate's name, its wells, sites, channels (with their names), z-planes, timepoints, the
files skipped on purpose and those not understood, and the layout's warnings. Reads the folder here (no server).
Exit 0 when the plate has images, 2 when it cannot be read or holds none.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["inspect_json", "main_inspect"]


def inspect_json(path: str, layout: str | None = None) -> dict[str, Any]:
    """What :func:`main_inspect` prints with ``--json``. Raises PlateError."""
    from ..server.layouts import plate_root, read_plate

    index = read_plate(plate_root(path), layout)
    return {
        "layout": index.layout,
        "plate": index.name,
        "path": index.path,
        "wells": list(index.wells),
        "sites": list(index.sites),
        "channels": list(index.channels),
        "channel_names": {str(k): v for k, v in index.channel_names.items()},
        "z_planes": index.z_planes,
        "timepoints": list(index.timepoints),
        "images": index.image_count,
        "skipped": list(index.skipped),
        "ignored": list(index.ignored),
        "warnings": list(index.warnings),
        "metadata": dict(index.metadata),
    }


def _span(values: list[int]) -> str:
    if not values:
        return "none"
    if values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{len(values)} ({values[0]}-{values[-1]})"
    return f"{len(values)} ({', '.join(map(str, values))})"


def main_inspect(args: argparse.Namespace) -> int:
    from ..errors import PlateError
    from ..server.layouts.index import few

    try:
        found = inspect_json(args.plate, args.layout)
    except PlateError as exc:
        print(f"hcs-batch inspect: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    names = found["channel_names"]
    channels = ", ".join(f"{c} {names[str(c)]}" if str(c) in names else str(c) for c in found["channels"])
    wells = found["wells"]
    lines = [
        f"plate      {found['plate']}  ({found['path']})",
        f"layout     {found['layout']}",
        f"wells      {len(wells)} ({few(wells, 8)})",
        f"sites      {_span(found['sites'])}",
        f"channels   {len(found['channels'])} ({channels})",
        f"z-planes   {found['z_planes']}",
        f"timepoints {_span(found['timepoints'])}",
        f"images     {found['images']}",
        f"skipped    {len(found['skipped'])}" + (f" ({few(found['skipped'], 3)})" if found["skipped"] else ""),
        f"ignored    {len(found['ignored'])}" + (f" ({few(found['ignored'], 3)})" if found["ignored"] else ""),
    ]
    lines += [f"warning: {warning}" for warning in found["warnings"]]
    print("\n".join(lines))
    return 0
