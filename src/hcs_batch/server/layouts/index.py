"""The plate's image index: what every layout parser produces and what the compiler plans with.

Plain data only (strings, ints, tuples), because a well's part of it crosses to worker processes:

- ``Sources``: the z-planes of one (site, timepoint, channel), in z order. Each is a file path relative to the
  plate folder (``TimePoint_1/ZStep_2/P_A01_s1_w1.tif``) or an OME-Zarr plane reference
  ``zarr:<array path>#<i>,<j>,...`` (the indices of the array's leading axes, every axis but y and x).
- ``ImageSet``: ``(site, timepoint, ((channel, sources), ...))``, channels ascending.
- ``WellImages``: a well's image sets, sorted by (site, timepoint).

:class:`IndexBuilder` collects ``(well, site, timepoint, channel, z) -> source`` entries as a parser finds them
and freezes them into a :class:`PlateIndex`; it never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ...errors import PlateError
from ...model import safe_plate_name

__all__ = [
    "WELLS",
    "ZARR_PREFIX",
    "ImageSet",
    "IndexBuilder",
    "PlateIndex",
    "Sources",
    "WellImages",
    "few",
    "plate_name_or",
    "well_name",
]

Sources = tuple[str, ...]
ImageSet = tuple[int, int, tuple[tuple[int, Sources], ...]]
WellImages = tuple[ImageSet, ...]
ZARR_PREFIX = "zarr:"

ROWS = [chr(ord("A") + i) for i in range(26)] + [f"A{chr(ord('A') + i)}" for i in range(6)]
"""Plate row names up to a 1,536-well plate: A..Z, AA..AF."""
_ROW_INDEX = {name: index for index, name in enumerate(ROWS)}
WELLS = frozenset(f"{row}{col:02d}" for row in ROWS for col in range(1, 49))
"""Every well name of a plate up to 1,536 wells: ``A01`` .. ``AF48``."""
_WELL = re.compile(r"^([A-Z]{1,2})0*(\d{1,2})$")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
"""What cannot be in a plate name (:func:`hcs_batch.model.safe_plate_name`): path separators, control characters,
line separators, undecodable bytes. Any other Unicode character is kept (``Platte_Müller``)."""


def well_name(row: str | int, column: str | int) -> str:
    """``A01`` style name of a well from a row (letters, or a 1-based number) and a 1-based column.

    Raises:
        PlateError: a row beyond AF (32 rows) or a column outside 1..48.
    """
    row_name = ROWS[row - 1] if isinstance(row, int) and 1 <= row <= len(ROWS) else str(row).upper()
    col = int(column)
    if row_name not in _ROW_INDEX or not 1 <= col <= 48:
        raise PlateError(f"no such well: row {row!r}, column {column!r} (plates go up to rows A-AF, columns 1-48)")
    return f"{row_name}{col:02d}"


def _well_key(name: str) -> tuple[int, int]:
    match = _WELL.match(name)
    if match is None:
        return (99, 0)
    return (_ROW_INDEX.get(match.group(1), 99), int(match.group(2)))


def few(names: list[str] | tuple[str, ...], limit: int = 5) -> str:
    """A few of ``names`` for a message: ``a, b, c and 7 more``."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def plate_name_or(candidate: str | None, fallback: str) -> str:
    """``candidate`` made into a safe output folder name (separators and control characters become ``_``, at most
    255 bytes), else ``fallback``."""
    for name in (candidate, fallback):
        if not name:
            continue
        cleaned = _UNSAFE.sub("_", name.strip()).strip(" ._-").replace("..", "_")
        cleaned = cleaned.encode()[:255].decode(errors="ignore")
        try:
            return safe_plate_name(cleaned)
        except PlateError:
            continue
    return "plate"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateIndex:
    """Everything a layout found in a plate folder.

    ``ignored``: files (relative paths) the layout does not understand; ``skipped``: files it recognised and
    leaves out on purpose (thumbnails, the instrument's own projections); ``warnings``: one line each, for the
    compile reply (missing files against the layout's promise, unreadable parts).
    """

    layout: str
    path: str
    name: str
    wells: Mapping[str, WellImages]
    channel_names: Mapping[int, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    sites: tuple[int, ...] = ()
    """Every site number found, ascending (likewise ``channels`` and ``timepoints``)."""
    channels: tuple[int, ...] = ()
    timepoints: tuple[int, ...] = ()
    z_planes: int = 0
    """The most z-planes any (site, timepoint, channel) has."""
    image_count: int = 0
    """How many planes (files or zarr planes) the index names."""


class IndexBuilder:
    """Collects the planes a parser finds; :meth:`build` freezes them. A second plane at the same key is a warning."""

    def __init__(self) -> None:
        self._planes: dict[tuple[str, int, int, int], dict[int, str]] = {}
        self.ignored: list[str] = []
        self.skipped: list[str] = []
        self.warnings: list[str] = []
        self._duplicates: list[str] = []

    def add(self, well: str, site: int, timepoint: int, channel: int, z: int, source: str) -> None:
        planes = self._planes.setdefault((well, site, timepoint, channel), {})
        if z in planes:
            self._duplicates.append(source)
            return
        planes[z] = source

    def keys(self) -> set[tuple[str, int, int, int, int]]:
        """Every (well, site, timepoint, channel, z) added so far."""
        return {(*key, z) for key, planes in self._planes.items() for z in planes}

    def has(self, well: str, site: int, timepoint: int, channel: int) -> bool:
        return (well, site, timepoint, channel) in self._planes

    def plane_count(self, well: str, site: int, timepoint: int, channel: int) -> int:
        return len(self._planes.get((well, site, timepoint, channel), ()))

    def source_of(self, key: tuple[str, int, int, int, int]) -> str:
        """The source added at (well, site, timepoint, channel, z). Raises KeyError."""
        return self._planes[key[:4]][key[4]]

    def drop_plane(self, well: str, site: int, timepoint: int, channel: int, z: int) -> str | None:
        """Remove one plane (e.g. the instrument's projection when the planes are there); returns its source."""
        planes = self._planes.get((well, site, timepoint, channel))
        return None if planes is None else planes.pop(z, None)

    def build(
        self,
        *,
        layout: str,
        path: str,
        name: str,
        channel_names: Mapping[int, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> PlateIndex:
        """Freeze the index.

        Raises:
            PlateError: no image at all was found (the message names the folder and a few ignored files).
        """
        warnings = list(self.warnings)
        if self._duplicates:
            warnings.append(
                f"{len(self._duplicates)} image(s) repeat a well/site/channel/plane already found and were left out: "
                f"{few(sorted(self._duplicates))}"
            )
        if self.ignored:
            warnings.append(
                f"{len(self.ignored)} file(s) not understood by the {layout} layout were ignored: "
                f"{few(sorted(self.ignored))}"
            )
        per_well: dict[str, dict[tuple[int, int], list[tuple[int, Sources]]]] = {}
        sites: set[int] = set()
        channels: set[int] = set()
        timepoints: set[int] = set()
        z_planes = image_count = 0
        for (well, site, timepoint, channel), planes in self._planes.items():
            if not planes:
                continue
            sources = tuple(planes[z] for z in sorted(planes))
            per_well.setdefault(well, {}).setdefault((site, timepoint), []).append((channel, sources))
            sites.add(site)
            channels.add(channel)
            timepoints.add(timepoint)
            z_planes = max(z_planes, len(sources))
            image_count += len(sources)
        if not per_well:
            hint = f"; it holds {few(sorted(self.ignored))}" if self.ignored else ""
            raise PlateError(f"plate folder {path} holds no images the {layout} layout understands{hint}")
        wells = {
            well: tuple(
                (site, timepoint, tuple(sorted(channels))) for (site, timepoint), channels in sorted(sets.items())
            )
            for well, sets in sorted(per_well.items(), key=lambda item: _well_key(item[0]))
        }
        return PlateIndex(
            layout=layout,
            path=path,
            name=name,
            wells=MappingProxyType(wells),
            channel_names=MappingProxyType(dict(channel_names or {})),
            ignored=tuple(sorted(self.ignored)),
            skipped=tuple(sorted(self.skipped)),
            warnings=tuple(warnings),
            metadata=MappingProxyType(dict(metadata or {})),
            sites=tuple(sorted(sites)),
            channels=tuple(sorted(channels)),
            timepoints=tuple(sorted(timepoints)),
            z_planes=z_planes,
            image_count=image_count,
        )
