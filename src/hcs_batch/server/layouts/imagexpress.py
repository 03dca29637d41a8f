"""Classic ImageXpress / MetaXpress exports: a ``<plate>.HTD`` file and ``<prefix>_<well>[_s<n>][_w<n>][GUID].tif``.

Images sit in the plate folder, in ``TimePoint_<t>/`` and in ``TimePoint_<t>/ZStep_<z>/``; the extension is any
case of ``tif``/``tiff``; ``_thumb`` files are skipped. As MetaXpress writes them, ``_s`` appears only with several
sites and ``_w`` only with several wavelengths: a missing ``_s`` is site 1, a missing ``_w`` channel 1. When a
timepoint has ``ZStep_<z>`` planes, the images beside them in ``TimePoint_<t>/`` are the instrument's own
projections: skipped (the planes are projected by the pipeline's projection instead).

The HTD's ``XWells``/``YWells``/``WellsSelection<row>``, ``XSites``/``YSites``/``SiteSelection<row>``,
``NWavelengths``/``WaveName<n>``, ``TimePoints`` and ``ZSteps`` keys say what the export should hold: files
missing against that promise are a warning naming them. The plate is named after the HTD file.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from ...errors import PlateError
from .index import IndexBuilder, PlateIndex, few, plate_name_or, well_name

__all__ = ["NAME", "detect", "parse_htd", "plate_name", "read"]

NAME = "imagexpress"
_GUID = r"[0-9A-F]{8}(?:-[0-9A-F]{4}){3}-[0-9A-F]{12}"
_IMAGE = re.compile(
    rf"^(?:(?P<prefix>.*?)_)?(?P<row>[A-Z]{{1,2}})(?P<col>\d{{2}})(?:_s(?P<site>\d{{1,4}}))?(?:_w(?P<wave>\d{{1,2}}))?"
    rf"(?P<thumb>_thumb)?(?:{_GUID})?\.tiff?$",
    re.IGNORECASE,
)
_TIMEPOINT = re.compile(r"^TimePoint_(\d{1,5})$", re.IGNORECASE)
_ZSTEP = re.compile(r"^ZStep_(\d{1,5})$", re.IGNORECASE)
_PROJECTION = 0
"""The z of an image beside ``ZStep_*`` folders (the instrument's projection) until the planes are known."""


def detect(names: list[str]) -> bool:
    """True when the folder holds an ``.HTD`` file or ``TimePoint_<t>`` folders."""
    return any(name.lower().endswith(".htd") or _TIMEPOINT.match(name) for name in names)


def _truth(value: str) -> bool:
    return value.strip().upper() == "TRUE"


def parse_htd(text: str) -> dict[str, list[str]]:
    """The HTD's ``"Key", value, value, ...`` lines as ``{key: [values]}`` (no I/O)."""
    keys: dict[str, list[str]] = {}
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if row and row[0].strip():
            keys[row[0].strip()] = [value.strip() for value in row[1:]]
    return keys


def _promise(keys: dict[str, list[str]]) -> dict[str, Any]:
    """What the HTD says the export holds: wells, site count, wavelengths, timepoints, z-steps (missing = unknown)."""

    def number(key: str, default: int = 1) -> int:
        try:
            return int(keys[key][0])
        except (KeyError, IndexError, ValueError):
            return default

    wells: list[str] = []
    x_wells, y_wells = number("XWells", 0), number("YWells", 0)
    for row in range(1, y_wells + 1):
        selection = keys.get(f"WellsSelection{row}", [])
        for col, chosen in enumerate(selection[:x_wells], start=1):
            if _truth(chosen):
                try:
                    wells.append(well_name(row, col))
                except PlateError:
                    pass
    sites = 1
    if _truth(keys.get("Sites", ["FALSE"])[0]):
        sites = sum(_truth(v) for row in range(1, number("YSites") + 1) for v in keys.get(f"SiteSelection{row}", []))
        sites = max(sites, 1)
    waves = number("NWavelengths") if _truth(keys.get("Waves", ["FALSE"])[0]) else 1
    names = {n: keys.get(f"WaveName{n}", [""])[0].strip('"') for n in range(1, waves + 1)}
    zsteps = number("ZSteps") if _truth(keys.get("ZSeries", ["FALSE"])[0]) else 1
    return {
        "wells": wells,
        "sites": sites,
        "waves": waves,
        "wave_names": names,
        "timepoints": number("TimePoints"),
        "zsteps": zsteps,
    }


def _walk(root: Path, builder: IndexBuilder) -> list[tuple[str, str, int, int]]:
    """(relative path, file name, timepoint, z) of every candidate file; unknown folders go to ``ignored``."""
    found: list[tuple[str, str, int, int]] = []

    def listdir(folder: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as entries:
                return list(entries)
        except OSError as exc:
            builder.warnings.append(f"cannot read folder {folder}: {exc.strerror or exc}")
            return []

    for entry in listdir(root):
        timepoint = _TIMEPOINT.match(entry.name)
        if entry.is_dir():
            if timepoint is None:
                builder.ignored.append(entry.name + "/")
                continue
            t = int(timepoint.group(1))
            inner = listdir(Path(entry.path))
            has_z = any(e.is_dir() and _ZSTEP.match(e.name) for e in inner)
            for sub in inner:
                rel = f"{entry.name}/{sub.name}"
                zstep = _ZSTEP.match(sub.name)
                if sub.is_dir():
                    if zstep is None:
                        builder.ignored.append(rel + "/")
                        continue
                    for plane in listdir(Path(sub.path)):
                        if plane.is_dir():
                            builder.ignored.append(f"{rel}/{plane.name}/")
                        else:
                            found.append((f"{rel}/{plane.name}", plane.name, t, int(zstep.group(1))))
                else:
                    found.append((rel, sub.name, t, _PROJECTION if has_z else 1))
        elif not entry.name.lower().endswith(".htd"):
            found.append((entry.name, entry.name, 1, 1))
    return found


def _metaseries(root: Path, builder: IndexBuilder) -> dict[str, Any]:
    """Pixel size and wavelength of each channel from the first image's MetaSeries tags (empty when absent)."""
    from ..images import metaseries_summary

    first: dict[int, tuple[str, int, int, int, int]] = {}
    for key in sorted(builder.keys()):
        first.setdefault(key[3], key)
    out: dict[str, Any] = {}
    for channel, key in sorted(first.items()):
        try:
            summary = metaseries_summary(root / builder.source_of(key))
        except Exception:  # metadata only: an unreadable image fails its well later, naming itself
            continue
        if summary:
            out[str(channel)] = summary
    return out


def plate_name(path: str | Path, names: list[str]) -> str:
    """The HTD file's name without ``.HTD`` (else the folder's)."""
    htds = sorted(n for n in names if n.lower().endswith(".htd"))
    root = Path(path).absolute()
    return plate_name_or(htds[0][: -len(".htd")] if htds else None, root.name)


def read(path: str | Path, names: list[str]) -> PlateIndex:
    """Index the MetaXpress export at ``path`` (``names``: its top-level listing). Blocking I/O: call in a thread.

    Raises:
        PlateError: no image the layout understands, or an unreadable HTD file.
    """
    root = Path(path).absolute()
    builder = IndexBuilder()
    htds = sorted(n for n in names if n.lower().endswith(".htd") and (root / n).is_file())
    promise: dict[str, Any] | None = None
    if htds:
        try:
            text = (root / htds[0]).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise PlateError(f"cannot read {root / htds[0]}: {exc.strerror or exc}") from None
        promise = _promise(parse_htd(text))
        if len(htds) > 1:
            builder.warnings.append(f"several HTD files in {root}: using {htds[0]}, ignoring {few(htds[1:])}")
    else:
        builder.warnings.append(f"no .HTD file in {root}: cannot check that the export is complete")
    for rel, name, t, z in _walk(root, builder):
        match = _IMAGE.match(name)
        if match is None:
            if not name.startswith("."):
                builder.ignored.append(rel)
            continue
        if match.group("thumb"):
            builder.skipped.append(rel)
            continue
        try:
            well = well_name(match.group("row"), match.group("col"))
        except PlateError:
            builder.ignored.append(rel)
            continue
        site, wave = int(match.group("site") or 1), int(match.group("wave") or 1)
        builder.add(well, site, t, wave, z, rel)
    _drop_projections(builder)
    if promise is not None:
        _check_promise(builder, promise, htds[0])
    metadata: dict[str, Any] = {"htd": htds[0] if htds else ""}
    index_names = promise["wave_names"] if promise else {}
    metadata["metaseries"] = _metaseries(root, builder)
    return builder.build(
        layout=NAME,
        path=str(root),
        name=plate_name(root, names),
        channel_names={k: v for k, v in index_names.items() if v},
        metadata=metadata,
    )


def _drop_projections(builder: IndexBuilder) -> None:
    """An image beside ``ZStep_*`` folders is the instrument's projection when its planes are there (skipped),
    else the only image of a wavelength acquired without z (plane 1)."""
    for well, site, t, channel, z in sorted(builder.keys()):
        if z != _PROJECTION:
            continue
        source = builder.drop_plane(well, site, t, channel, z)
        if source is None:
            continue
        if builder.plane_count(well, site, t, channel):
            builder.skipped.append(source)
        else:
            builder.add(well, site, t, channel, 1, source)


def _check_promise(builder: IndexBuilder, promise: dict[str, Any], htd: str) -> None:
    found = {(w, s, t, c) for w, s, t, c, _ in builder.keys()}
    found_wells = {key[0] for key in found}
    wells = promise["wells"] or sorted(found_wells)
    missing_wells = [w for w in wells if w not in found_wells]
    if missing_wells:
        builder.warnings.append(f"{htd} selects {len(missing_wells)} well(s) with no image: {few(missing_wells)}")
    missing: list[str] = []
    for well in wells:
        if well not in found_wells:
            continue
        for t in range(1, promise["timepoints"] + 1):
            for site in range(1, promise["sites"] + 1):
                for wave in range(1, promise["waves"] + 1):
                    if (well, site, t, wave) not in found:
                        missing.append(f"{well} site {site} channel {wave} timepoint {t}")
                    elif 1 < builder.plane_count(well, site, t, wave) < promise["zsteps"]:
                        # A wavelength without z has one plane; one with z must have them all.
                        missing.append(f"{well} site {site} channel {wave} timepoint {t} (some z-planes)")
    if missing:
        builder.warnings.append(f"{len(missing)} image(s) promised by {htd} are missing: {few(missing)}")
