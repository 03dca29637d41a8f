"""Plates as microscopes write them, with nucleus images whose counts are known.

- :func:`make_metaxpress_plate`: a classic MetaXpress export (``<name>.HTD``, ``TimePoint_<t>/[ZStep_<z>/]``,
  ``<name>_<well>[_s<n>][_w<n>]<GUID>.tif``, ``_thumb`` files, the instrument's projections beside ZStep folders);
- :func:`make_phenix_plate`: a Harmony export (``Images/Index.idx.xml`` in the HarmonyV6 namespace,
  ``r01c01f01p01-ch1sk1fk1fl1.tiff``);
- :func:`make_zarr_plate`: an OME-Zarr HCS plate written by ome-zarr's writer on the zarr library (NGFF 0.4 or 0.5).

Every (well, site, channel, timepoint) gets one image from the synthetic nucleus generator; with several
z-planes that image is the brightest plane (the others are dimmer copies), so its max projection is the image
and its count the truth. Each maker returns ``{(well, site, channel, timepoint): object_count}``.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from hcs_batch.testing.plates import nucleus_image

Truth = dict[tuple[str, int, int, int], int]


def _planes(rng: np.random.Generator, size: int, zsteps: int) -> tuple[list[NDArray[np.uint16]], int]:
    image, count = nucleus_image(rng, size)
    bright = int(rng.integers(0, zsteps))
    planes = [image if z == bright else (image // (2 + z)).astype(np.uint16) for z in range(zsteps)]
    return planes, count


def segmented(truth: Truth) -> Truth:
    """The counts hcs_batch reports: objects are segmented on channel 1 (the pipeline's ``segment_channel``) and
    every channel's row carries that count."""
    return {(w, s, c, t): truth[(w, s, 1, t)] for (w, s, c, t) in truth}


def _guid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16))).upper()


def write_htd(
    path: Path,
    *,
    wells: Sequence[str],
    sites: int,
    waves: int,
    timepoints: int = 1,
    zsteps: int = 1,
    x_wells: int = 24,
    y_wells: int = 16,
    wave_names: Sequence[str] = (),
) -> None:
    """A MetaXpress HTD file selecting ``wells`` (``A01`` names) on an x_wells by y_wells plate."""
    rows = [chr(ord("A") + i) for i in range(26)] + ["A" + chr(ord("A") + i) for i in range(6)]
    lines = [
        '"HTSInfoFile", Version 1.0',
        '"Description", "hcs_batch test plate"',
        f'"TimePoints", {timepoints}',
        f'"ZSeries", {"TRUE" if zsteps > 1 else "FALSE"}',
        f'"ZSteps", {zsteps}',
        '"ZProjection", FALSE',
        f'"XWells", {x_wells}',
        f'"YWells", {y_wells}',
    ]
    for r in range(y_wells):
        flags = ", ".join("TRUE" if f"{rows[r]}{c + 1:02d}" in wells else "FALSE" for c in range(x_wells))
        lines.append(f'"WellsSelection{r + 1}", {flags}')
    lines += [f'"Sites", {"TRUE" if sites > 1 else "FALSE"}', f'"XSites", {sites}', '"YSites", 1']
    lines.append(f'"SiteSelection1", {", ".join(["TRUE"] * sites)}')
    lines += [f'"Waves", {"TRUE" if waves > 1 else "FALSE"}', f'"NWavelengths", {waves}']
    for w in range(waves):
        name = wave_names[w] if w < len(wave_names) else f"W{w + 1}"
        lines += [f'"WaveName{w + 1}", "{name}"', f'"WaveCollect{w + 1}", 1']
    lines += ['"UniqueIdentifier", "7F8E0A1B-0000-4000-8000-000000000001"', '"EndFile"']
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def make_metaxpress_plate(
    folder: Path,
    *,
    name: str = "Plate1",
    wells: Sequence[str] = ("A01", "B02"),
    sites: int = 2,
    waves: int = 2,
    timepoints: int = 1,
    zsteps: int = 1,
    size: int = 64,
    seed: int = 0,
    htd_sites: int | None = None,
    thumbs: bool = True,
    compression: str | None = None,
    metaseries: bool = False,
    extension: str = ".tif",
    x_wells: int = 24,
    y_wells: int = 16,
) -> Truth:
    """Write a MetaXpress export into ``folder``; ``htd_sites`` lets the HTD promise more sites than written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_htd(
        folder / f"{name}.HTD",
        wells=wells,
        sites=htd_sites or sites,
        waves=waves,
        timepoints=timepoints,
        zsteps=zsteps,
        x_wells=x_wells,
        y_wells=y_wells,
        wave_names=["DAPI", "FITC", "TexasRed"][:waves],
    )
    truth: Truth = {}
    for t in range(1, timepoints + 1):
        tp = folder / f"TimePoint_{t}"
        tp.mkdir(exist_ok=True)
        for well in wells:
            for site in range(1, sites + 1):
                for wave in range(1, waves + 1):
                    stem = f"{name}_{well}" + (f"_s{site}" if (htd_sites or sites) > 1 else "")
                    stem += f"_w{wave}" if waves > 1 else ""
                    planes, count = _planes(rng, size, zsteps)
                    truth[(well, site, wave, t)] = count
                    kwargs: dict[str, Any] = {"compression": compression}
                    if metaseries:
                        kwargs.update(software="MetaSeries", description=metaseries_description(wave))
                    if zsteps == 1:
                        tifffile.imwrite(tp / f"{stem}{_guid(rng)}{extension}", planes[0], **kwargs)
                    else:
                        # The instrument's own projection sits beside the ZStep folders: a mean, not the max.
                        projection = np.mean(planes, axis=0).astype(np.uint16)
                        tifffile.imwrite(tp / f"{stem}{_guid(rng)}{extension}", projection, **kwargs)
                        for z, plane in enumerate(planes, start=1):
                            (tp / f"ZStep_{z}").mkdir(exist_ok=True)
                            tifffile.imwrite(tp / f"ZStep_{z}" / f"{stem}{_guid(rng)}{extension}", plane, **kwargs)
                    if thumbs:
                        thumb = planes[0][::4, ::4]
                        tifffile.imwrite(tp / f"{stem}_thumb{_guid(rng)}{extension}", thumb)
    return segmented(truth)


def metaseries_description(wave: int) -> str:
    """A MetaSeries ImageDescription with pixel size and wavelength, as MetaXpress writes it."""
    wavelength = {1: 452, 2: 520, 3: 624}.get(wave, 700)
    return (
        '<MetaData>\r\n<prop id="Description" type="string" value=""/>\r\n'
        "<PlaneInfo>\r\n"
        '<prop id="spatial-calibration-x" type="float" value="0.65"/>\r\n'
        '<prop id="spatial-calibration-y" type="float" value="0.65"/>\r\n'
        '<prop id="spatial-calibration-units" type="string" value="um"/>\r\n'
        f'<prop id="wavelength" type="int" value="{wavelength}"/>\r\n'
        "</PlaneInfo>\r\n<SetInfo>\r\n</SetInfo>\r\n</MetaData>"
    )


_HARMONY_NS = "http://www.perkinelmer.com/PEHH/HarmonyV6"


def phenix_index_xml(entries: Sequence[dict[str, Any]], *, plate_id: str = "PHX-0001", rows: int = 16) -> str:
    """A Harmony ``Index.idx.xml`` listing ``entries`` (url, row, col, field, plane, channel, timepoint (0-based))."""
    images = []
    for e in entries:
        images.append(
            f'<Image Version="1"><id>{e["row"]:02d}{e["col"]:02d}K1F{e["field"]}P{e["plane"]}R{e["channel"]}</id>'
            f"<State>Ok</State><URL>{e['url']}</URL><Row>{e['row']}</Row><Col>{e['col']}</Col>"
            f"<FieldID>{e['field']}</FieldID><PlaneID>{e['plane']}</PlaneID><TimepointID>{e['timepoint']}</TimepointID>"
            f"<FlimID>1</FlimID><ChannelID>{e['channel']}</ChannelID>"
            f"<ChannelName>{['Hoechst 33342', 'Alexa 488'][(e['channel'] - 1) % 2]}</ChannelName></Image>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<EvaluationInputData xmlns="{_HARMONY_NS}" Version="2">'
        f"<User>lab</User><InstrumentType>Phenix</InstrumentType>"
        f"<Plates><Plate><PlateID>{plate_id}</PlateID><MeasurementID>m-1</MeasurementID>"
        f"<PlateName>screen plate</PlateName><PlateRows>{rows}</PlateRows><PlateColumns>24</PlateColumns></Plate>"
        f"</Plates><Images>{''.join(images)}</Images></EvaluationInputData>"
    )


def make_phenix_plate(
    folder: Path,
    *,
    wells: Sequence[tuple[int, int]] = ((1, 1), (2, 3)),
    fields: int = 2,
    planes: int = 1,
    channels: int = 2,
    timepoints: int = 1,
    size: int = 64,
    seed: int = 0,
    plate_id: str = "PHX-0001",
) -> Truth:
    """Write a Harmony export into ``folder`` (images and ``Index.idx.xml`` in ``folder/Images``)."""
    images = folder / "Images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = "ABCDEFGHIJKLMNOP"
    truth: Truth = {}
    entries: list[dict[str, Any]] = []
    for row, col in wells:
        for field in range(1, fields + 1):
            for channel in range(1, channels + 1):
                for sk in range(1, timepoints + 1):
                    stack, count = _planes(rng, size, planes)
                    truth[(f"{rows[row - 1]}{col:02d}", field, channel, sk)] = count
                    for plane, pixels in enumerate(stack, start=1):
                        url = f"r{row:02d}c{col:02d}f{field:02d}p{plane:02d}-ch{channel}sk{sk}fk1fl1.tiff"
                        tifffile.imwrite(images / url, pixels)
                        entries.append(
                            {
                                "url": url,
                                "row": row,
                                "col": col,
                                "field": field,
                                "plane": plane,
                                "channel": channel,
                                "timepoint": sk - 1,
                            }
                        )
    (images / "Index.idx.xml").write_text(phenix_index_xml(entries, plate_id=plate_id), encoding="utf-8")
    return segmented(truth)


def make_zarr_plate(
    folder: Path,
    *,
    version: str = "0.5",
    wells: Sequence[str] = ("A/1", "B/3"),
    fields: int = 2,
    channels: int = 2,
    planes: int = 1,
    size: int = 64,
    seed: int = 0,
    name: str = "ZarrPlate",
    timepoints: int = 0,
) -> Truth:
    """Write an OME-Zarr HCS plate (axes ``czyx``, or ``tczyx`` with ``timepoints``) with ome-zarr's writer on
    zarr 3 (v3 for 0.5, v2 for 0.4)."""
    with warnings.catch_warnings():
        # ome-zarr 0.18 warns about its own deprecated Scaler at import time; we do not use it.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _make_zarr_plate(folder, version, wells, fields, channels, planes, size, seed, name, timepoints)


def _make_zarr_plate(
    folder: Path,
    version: str,
    wells: Sequence[str],
    fields: int,
    channels: int,
    planes: int,
    size: int,
    seed: int,
    name: str,
    timepoints: int,
) -> Truth:
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV05() if version == "0.5" else FormatV04()
    root = zarr.open_group(str(folder), mode="w", zarr_format=3 if version == "0.5" else 2)
    row_names = sorted({w.split("/")[0] for w in wells})
    col_names = sorted({w.split("/")[1] for w in wells}, key=int)
    write_plate_metadata(root, row_names, col_names, list(wells), fmt=fmt, name=name)
    rng = np.random.default_rng(seed)
    truth: Truth = {}
    for well_path in wells:
        row, col = well_path.split("/")
        well = root.require_group(row).require_group(col)
        write_well_metadata(well, [{"path": str(f)} for f in range(fields)], fmt=fmt)
        for field in range(fields):
            data = np.zeros((max(timepoints, 1), channels, planes, size, size), dtype=np.uint16)
            for t in range(max(timepoints, 1)):
                for channel in range(channels):
                    stack, count = _planes(rng, size, planes)
                    data[t, channel] = np.stack(stack)
                    truth[(f"{row}{int(col):02d}", field + 1, channel + 1, t + 1)] = count
            image = well.require_group(str(field))
            write_image(
                data if timepoints else data[0],
                image,
                axes="tczyx" if timepoints else "czyx",
                fmt=fmt,
                scale_factors=[],
                omero={
                    "channels": [
                        {
                            "label": ["Hoechst", "Tubulin", "Actin"][c % 3],
                            "color": ["0000FF", "00FF00", "FF0000"][c % 3],
                            "window": {"start": 0, "end": 4000, "min": 0, "max": 65535},
                        }
                        for c in range(channels)
                    ]
                },
            )
    return segmented(truth)
