"""The flat layout: every image in the plate folder itself, named ``<well>[_s<site>][_w<channel>][_z<z>][_t<t>].tif``.

``A01_s1_w1.tif`` (what ``hcs-batch make-plates`` writes), ``A01.tif``, ``B12_w2_z3.TIFF`` and ``AF48_s2_t5.tif``
are all understood: a missing ``_s`` is site 1, ``_w`` channel 1, ``_z`` plane 1, ``_t`` timepoint 1. Wells go up
to a 1,536-well plate (rows A-AF, columns 01-48). Every other name is reported as not understood. The plate is
named after its folder. A flat folder promises nothing, so the images found are the promise: an image that the
other wells have but a well lacks (a site, channel, plane or timepoint missing) is a warning naming it.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from ...errors import PlateError
from .index import WELLS, IndexBuilder, PlateIndex, few, plate_name_or

__all__ = ["IMAGE_PATTERN", "NAME", "detect", "index_from_names", "list_folder", "plate_name", "read"]

NAME = "flat"
IMAGE_PATTERN = re.compile(r"^([A-Z]{1,2}\d{2})((?:_[SWZT]\d{1,4})*)\.tiff?$", re.IGNORECASE)
_TOKEN = re.compile(r"_([SWZT])(\d{1,4})", re.IGNORECASE)
_CANONICAL = re.compile(
    r"^([A-Z]{1,2}\d{2})(?:_s(\d{1,4}))?(?:_w(\d{1,4}))?(?:_z(\d{1,4}))?(?:_t(\d{1,4}))?\.tiff?$", re.IGNORECASE
)


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


def detect(names: list[str]) -> bool:
    """True when some name in the folder is a flat image name (the fallback layout)."""
    return any(IMAGE_PATTERN.match(name) for name in names)


def parse_name(name: str) -> tuple[str, int, int, int, int] | None:
    """(well, site, channel, z, timepoint) of a flat image name, or None when it is not one."""
    match = _CANONICAL.match(name)  # the common token order first: one regex, no token loop
    if match is not None:
        well, site, channel, z, timepoint = match.groups()
        well = well.upper()
        numbers = (int(site or 1), int(channel or 1), int(z or 1), int(timepoint or 1))
        if well not in WELLS or 0 in numbers:
            return None
        return well, *numbers
    match = IMAGE_PATTERN.match(name)
    if match is None:
        return None
    values = {"S": 1, "W": 1, "Z": 1, "T": 1}
    seen: set[str] = set()
    for letter, number in _TOKEN.findall(match.group(2)):
        letter = letter.upper()
        if letter in seen or int(number) < 1:
            return None
        seen.add(letter)
        values[letter] = int(number)
    well = match.group(1).upper()
    if well not in WELLS:
        return None
    return well, values["S"], values["W"], values["Z"], values["T"]


def index_from_names(path: str | Path, names: list[str]) -> PlateIndex:
    """The index of the flat plate folder at ``path`` holding ``names`` (no I/O: runs on the Trio thread).

    Raises:
        PlateError: no name is a flat image name.
    """
    folder = Path(path).absolute()
    builder = IndexBuilder()
    for name in names:
        parsed = parse_name(name)
        if parsed is None:
            if not name.startswith("."):
                builder.ignored.append(name)
            continue
        well, site, channel, z, timepoint = parsed
        builder.add(well, site, timepoint, channel, z, name)
    _warn_missing(builder)
    try:
        return builder.build(layout=NAME, path=str(folder), name=plate_name_or(folder.name, "plate"))
    except PlateError:
        raise PlateError(
            f"plate folder {folder} holds no images named <well>_s<site>_w<channel>.tif (e.g. A01_s1_w1.tif)"
            + (f"; it holds {', '.join(sorted(builder.ignored)[:5])}" if builder.ignored else "")
        ) from None


def _warn_missing(builder: IndexBuilder) -> None:
    """Add a warning naming the images some well lacks that the plate's other wells have."""
    keys = builder.keys()
    axes = [sorted({key[i] for key in keys}) for i in range(5)]  # well, site, timepoint, channel, z
    wells, sites, timepoints, channels, planes = axes
    if len(keys) == len(wells) * len(sites) * len(timepoints) * len(channels) * len(planes):
        return
    missing = [
        f"{well}_s{site}_w{channel}" + (f"_z{z}" if len(planes) > 1 else "") + (f"_t{t}" if len(timepoints) > 1 else "")
        for well, site, t, channel, z in itertools.product(*axes)
        if (well, site, t, channel, z) not in keys
    ]
    builder.warnings.append(
        f"{len(missing)} image(s) missing where the plate's other images have them (it runs without them): "
        f"{few(missing)}"
    )


def plate_name(path: str | Path, names: list[str]) -> str:
    """The folder's name."""
    return plate_name_or(Path(path).absolute().name, "plate")


def read(path: str | Path, names: list[str]) -> PlateIndex:
    """:func:`index_from_names` (the common signature of every layout's ``read``)."""
    return index_from_names(path, names)
