"""Opera Phenix / Operetta (Harmony) exports: an Index XML listing every image.

The index is ``Index.idx.xml`` (newer Harmony), ``Index.ref.xml`` or ``Index.xml``, in the plate folder or in its
``Images/`` folder. Each ``Image`` element names its file (``URL``, e.g. ``r01c01f01p01-ch1sk1fk1fl1.tiff``, relative
to the index) and its ``Row``, ``Col``, ``FieldID`` (site), ``PlaneID`` (z), ``ChannelID`` and ``TimepointID``
(0-based in Harmony: timepoint = TimepointID + 1). The plate is named by ``Plates/Plate/PlateID`` (else
``PlateName``, else the folder).

The XML is parsed with DTDs and entities refused. A URL that is absolute or climbs out of the folder is refused
(a warning naming it); files the index lists but the folder lacks are a warning naming them; image files in the
index's folder that the index does not list are reported as not understood.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

from ...errors import PlateError
from ._xml import parse_xml
from .index import IndexBuilder, PlateIndex, few, plate_name_or, well_name

__all__ = ["INDEX_NAMES", "NAME", "detect", "find_index", "plate_name", "read"]

NAME = "phenix"
INDEX_NAMES = ("Index.idx.xml", "Index.ref.xml", "Index.xml")
_URL = re.compile(r"r(\d+)c(\d+)f(\d+)p(\d+)-ch(\d+)sk(\d+)fk\d+fl\d+", re.IGNORECASE)
_MAX_INDEX_BYTES = 512 * 1024 * 1024


def detect(names: list[str]) -> bool:
    """True when the folder holds an Index XML, or an ``Images`` folder (checked for one when read)."""
    return any(name in INDEX_NAMES for name in names) or "Images" in names


def find_index(root: Path) -> Path | None:
    """The first Index XML in ``root`` or ``root/Images`` (in :data:`INDEX_NAMES` order)."""
    for folder in (root, root / "Images"):
        for name in INDEX_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def _text(element: ET.Element, tag: str) -> str:
    found = element.find(tag)
    return (found.text or "").strip() if found is not None else ""


def _safe_relative(url: str) -> str | None:
    """``url`` as a relative POSIX path inside the index's folder, or None when it would leave it."""
    url = url.replace("\\", "/")
    if not url or "://" in url or url.startswith("/") or re.match(r"^[A-Za-z]:", url):
        return None
    parts = PurePosixPath(url).parts
    if any(part in ("..", "") for part in parts):
        return None
    return str(PurePosixPath(*parts))


def _load(index_file: Path) -> ET.Element:
    try:
        if index_file.stat().st_size > _MAX_INDEX_BYTES:
            raise PlateError(f"{index_file} is over {_MAX_INDEX_BYTES >> 20} MiB; refusing to parse it")
        return parse_xml(index_file.read_bytes())
    except OSError as exc:
        raise PlateError(f"cannot read {index_file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PlateError(f"{index_file} is not a usable Index XML: {exc}") from None


def _name(document: ET.Element, root: Path) -> str:
    plate = _text(document, "Plates/Plate/PlateID") or _text(document, "Plates/Plate/PlateName")
    return plate_name_or(plate, root.name)


def plate_name(path: str | Path, names: list[str]) -> str:
    """The Index XML's PlateID (else PlateName, else the folder's name). Raises PlateError like :func:`read`."""
    root = Path(path).absolute()
    index_file = find_index(root)
    return root.name if index_file is None else _name(_load(index_file), root)


def read(path: str | Path, names: list[str]) -> PlateIndex:
    """Index the Harmony export at ``path``. Blocking I/O: call it in a thread.

    Raises:
        PlateError: no Index XML, an unreadable or malformed one (the message names the file), or no image.
    """
    root = Path(path).absolute()
    index_file = find_index(root)
    if index_file is None:
        raise PlateError(f"no Index.idx.xml, Index.ref.xml or Index.xml in {root} or {root / 'Images'}")
    document = _load(index_file)
    folder = index_file.parent
    prefix = "" if folder == root else f"{folder.name}/"
    builder = IndexBuilder()
    try:
        present = set(os.listdir(folder))
    except OSError as exc:
        raise PlateError(f"cannot read folder {folder}: {exc.strerror or exc}") from None
    images = document.findall("Images/Image")
    if not images:
        raise PlateError(f"{index_file} lists no Images/Image elements; is it a Harmony Index XML?")
    t_ids = [_text(image, "TimepointID") for image in images]
    offset = 1 if any(t == "0" for t in t_ids) else 0
    listed: set[str] = set()
    missing: list[str] = []
    refused: list[str] = []
    channel_names: dict[int, str] = {}
    for image in images:
        url = _text(image, "URL")
        rel = _safe_relative(url)
        if rel is None:
            refused.append(url or "(empty URL)")
            continue
        listed.add(rel)
        match = _URL.search(rel)
        try:
            row = int(_text(image, "Row") or (match.group(1) if match else ""))
            col = int(_text(image, "Col") or (match.group(2) if match else ""))
            site = int(_text(image, "FieldID") or (match.group(3) if match else ""))
            z = int(_text(image, "PlaneID") or (match.group(4) if match else ""))
            channel = int(_text(image, "ChannelID") or (match.group(5) if match else ""))
            t_text = _text(image, "TimepointID")
            timepoint = int(t_text) + offset if t_text else int(match.group(6) if match else "")
            well = well_name(row, col)
        except (ValueError, PlateError):
            refused.append(url)
            continue
        if rel not in present and not (folder / rel).is_file():
            missing.append(rel)
            continue
        name = _text(image, "ChannelName")
        if name:
            channel_names.setdefault(channel, name)
        builder.add(well, site, timepoint, channel, z, prefix + rel)
    if missing:
        builder.warnings.append(f"{len(missing)} image(s) listed in {index_file} are missing: {few(sorted(missing))}")
    if refused:
        builder.warnings.append(
            f"{len(refused)} Image entries of {index_file} were refused (a URL outside the folder or no "
            f"well/field/plane/channel): {few(refused)}"
        )
    for name in sorted(present - listed - set(INDEX_NAMES)):
        if name.lower().endswith((".tif", ".tiff")):
            builder.ignored.append(prefix + name)
    return builder.build(
        layout=NAME,
        path=str(root),
        name=_name(document, root),
        channel_names=channel_names,
        metadata={"index": str(index_file.relative_to(root))},
    )
