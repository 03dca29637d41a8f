"""The content identity of a plate's images: what resume keys on, so changed images are never served stale.

A well's identity is the sha256 of its sources with each file's size and modification time (``st_size``,
``st_mtime_ns``): regenerating an image, or copying another over it, changes it even when the name and the size
stay. An OME-Zarr plane's identity is its array's folder: every file below it (chunks and metadata), by size and
mtime. A source that cannot be stat'ed gets an identity of its own (``missing``), so it never matches a result
computed while it existed. Blocking I/O: run it in a thread.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from .layouts.index import ZARR_PREFIX, WellImages

__all__ = ["content_identity"]


def _stat(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _tree(path: Path) -> str:
    """Size and mtime of every file below the folder ``path`` (an OME-Zarr array), as one digest."""
    digest = hashlib.sha256()
    if not path.is_dir():
        return "missing"
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            file = Path(folder, name)
            digest.update(f"{file.relative_to(path)}={_stat(file)};".encode())
    return digest.hexdigest()


def content_identity(plate_path: str, wells: Mapping[str, WellImages]) -> dict[str, str]:
    """Per well, the sha256 hex of its sources and their files' sizes and mtimes (see the module docstring)."""
    root = Path(plate_path)
    arrays: dict[str, str] = {}
    identity: dict[str, str] = {}
    for well, image_sets in wells.items():
        digest = hashlib.sha256()
        for _site, _timepoint, channels in image_sets:
            for _channel, sources in channels:
                for source in sources:
                    if source.startswith(ZARR_PREFIX):
                        array = source[len(ZARR_PREFIX) :].rpartition("#")[0]
                        if array not in arrays:
                            arrays[array] = _tree(root / array)
                        stamp = arrays[array]
                    else:
                        stamp = _stat(root / source)
                    digest.update(f"{source}={stamp};".encode())
        identity[well] = digest.hexdigest()
    return identity
