"""Plate discovery: which wells, sites and channels a plate folder holds.

A plate is a folder of ImageXpress-style TIFFs named ``<well>_s<site>_w<channel>.tif`` (or ``.tiff``), e.g.
``A01_s1_w1.tif``; other files are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import PlateError

__all__ = ["IMAGE_PATTERN", "ImageFile", "PlateListing", "discover_plate", "list_folder", "listing_from_names"]

IMAGE_PATTERN = re.compile(r"^([A-Pa-p](?:0[1-9]|1\d|2[0-4]))_s(\d{1,4})_w(\d{1,3})\.tiff?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageFile:
    """One image of a plate: its well (upper case, e.g. ``A01``), site, channel and file name."""

    well: str
    site: int
    channel: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateListing:
    """What a plate folder holds, sorted by (well, site, channel)."""

    path: str
    images: tuple[ImageFile, ...]
    wells: tuple[str, ...]
    sites: tuple[int, ...]
    channels: tuple[int, ...]


def discover_plate(path: str | Path) -> PlateListing:
    """List the images of the plate folder at ``path`` (blocking file-system I/O: call it in a thread).

    Raises:
        PlateError: the folder does not exist, is not a folder, cannot be read, or holds no matching image.
    """
    return listing_from_names(path, list_folder(path))


def list_folder(path: str | Path) -> list[str]:
    """The names in the plate folder (one blocking ``listdir``, almost no Python: cheap to run in a thread).

    Raises:
        PlateError: the folder does not exist, is not a folder, or cannot be read.
    """
    folder = Path(path)
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        raise PlateError(f"plate folder {folder} does not exist; check the path (it is read on the server)") from None
    except NotADirectoryError:
        raise PlateError(f"plate path {folder} is not a folder; pass the folder that holds the images") from None
    except OSError as exc:
        raise PlateError(f"cannot read plate folder {folder}: {exc.strerror or exc}") from None


def listing_from_names(path: str | Path, names: list[str]) -> PlateListing:
    """The listing of the folder at ``path`` holding ``names`` (no I/O).

    Raises:
        PlateError: no name matches ``<well>_s<site>_w<channel>.tif``.
    """
    folder = Path(path)
    images: list[ImageFile] = []
    for name in names:
        match = IMAGE_PATTERN.match(name)
        if match is not None:
            well, site, channel = match.groups()
            images.append(ImageFile(well=well.upper(), site=int(site), channel=int(channel), name=name))
    if not images:
        raise PlateError(
            f"plate folder {folder} holds no images named <well>_s<site>_w<channel>.tif (e.g. A01_s1_w1.tif)"
        )
    images.sort(key=lambda im: (im.well, im.site, im.channel, im.name))
    return PlateListing(
        path=str(folder.absolute()),
        images=tuple(images),
        wells=tuple(sorted({im.well for im in images})),
        sites=tuple(sorted({im.site for im in images})),
        channels=tuple(sorted({im.channel for im in images})),
    )
