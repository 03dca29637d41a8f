"""Plate layouts: turn a plate folder into its image index (:class:`~.index.PlateIndex`).

One module per layout, each with ``NAME``, ``detect(names) -> bool`` (from the folder's top-level listing, no
I/O) and ``read(path, names) -> PlateIndex`` (blocking I/O, except ``flat``'s, which only parses the names):

- ``omezarr``: an OME-Zarr HCS plate (``zarr.json`` or ``.zattrs`` in the folder);
- ``phenix``: an Opera Phenix / Operetta (Harmony) export (``Index.idx.xml``/``Index.ref.xml``/``Index.xml``,
  in the folder or in ``Images/``);
- ``imagexpress``: a classic ImageXpress / MetaXpress export (``*.HTD``, ``TimePoint_<t>/`` folders);
- ``flat``: ``<well>[_s<site>][_w<channel>][_z<z>][_t<t>].tif`` in the folder (the fallback).

Detection tries them in that order; ``layout=NAME`` (``--layout NAME`` on the command line) overrides it.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

from ...errors import PlateError
from ...model import PlateRef
from . import flat, imagexpress, omezarr, phenix
from .index import ImageSet, PlateIndex, Sources, WellImages

__all__ = [
    "LAYOUTS",
    "ImageSet",
    "PlateIndex",
    "Sources",
    "WellImages",
    "choose_layout",
    "plate_name",
    "plate_ref",
    "plate_root",
    "read_plate",
]

LAYOUTS: dict[str, ModuleType] = {module.NAME: module for module in (omezarr, phenix, imagexpress, flat)}
"""Every layout by name, in detection order."""
_SUBFOLDER = re.compile(r"^(TimePoint|ZStep)_\d+$", re.IGNORECASE)


def choose_layout(names: list[str], layout: str | None = None) -> ModuleType:
    """The layout module for a folder holding ``names``: ``layout`` when given, else the first that detects it.

    Raises:
        PlateError: ``layout`` is not a known layout name.
    """
    if layout:
        module = LAYOUTS.get(layout)
        if module is None:
            raise PlateError(f"unknown plate layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        return module
    for module in LAYOUTS.values():
        if module.detect(names):
            return module
    return flat


def plate_root(path: str | Path) -> Path:
    """The folder that holds the plate's layout: ``path``, or the plate above it when ``path`` is one of a
    MetaXpress export's ``TimePoint_<t>``/``ZStep_<z>`` folders (a plate is never named after those)."""
    folder = Path(path).expanduser().absolute()
    while _SUBFOLDER.match(folder.name) and folder.parent != folder:
        folder = folder.parent
    return folder


def plate_name(path: str | Path, layout: str | None = None) -> str:
    """The plate's own name (HTD file, Index XML PlateID, Zarr ``plate.name``, else its folder), as a safe
    output folder name. Blocking I/O; cheaper than :func:`read_plate` for every layout but Harmony's.

    Raises:
        PlateError: the folder is unreadable or the layout unknown.
    """
    names = flat.list_folder(path)
    name: str = choose_layout(names, layout).plate_name(path, names)
    return name


def plate_ref(path: str | Path, layout: str | None = None) -> PlateRef:
    """A plate as a host should name it: at its :func:`plate_root`, named by :func:`plate_name`; by its folder when
    the layout cannot be read here (the compile then fails that plate alone, with the layout's message).

    Raises:
        PlateError: the folder's name is not a usable plate name either.
    """
    root = plate_root(path)
    try:
        return PlateRef(name=plate_name(root, layout), path=root)
    except PlateError:
        return PlateRef.from_path(root)


def read_plate(path: str | Path, layout: str | None = None) -> PlateIndex:
    """Index the plate at ``path`` (blocking I/O: call it in a thread, or from a command line).

    Raises:
        PlateError: the folder is unreadable, the layout unknown, or it holds no image the layout understands.
    """
    names = flat.list_folder(path)
    module = choose_layout(names, layout)
    index: PlateIndex = module.read(path, names)
    return index
