"""OME-Zarr HCS plates (NGFF 0.4: ``.zattrs``; NGFF 0.5: ``zarr.json`` with the metadata under ``ome``).

Read with zarr (3.x reads both the v2 and the v3 format): the plate's ``plate.wells`` name the well groups
(``A/1``), each well's ``well.images`` its fields (site = position + 1), each field's ``multiscales[0]`` its axes
and full-resolution array (``datasets[0]``). Every axis but y and x must be ``t``, ``c`` or ``z``: timepoints,
channels and z-planes come from the array's shape; channel names from ``omero.channels[].label``. A plane is the
source ``zarr:<array path>#<indices of the leading axes>``. The plate is named by ``plate.name`` (else the folder,
without ``.zarr``).

A well or field group the metadata names but the store lacks, or one whose metadata is unusable, is a warning
naming it; the other wells are indexed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import PlateError
from .index import ZARR_PREFIX, IndexBuilder, PlateIndex, few, plate_name_or, well_name

__all__ = ["NAME", "detect", "ome_attributes", "plate_name", "read"]

NAME = "omezarr"
_AXES = ("t", "c", "z")


def detect(names: list[str]) -> bool:
    """True when the folder is a zarr group (``zarr.json``, ``.zattrs`` or ``.zgroup``)."""
    return any(name in ("zarr.json", ".zattrs", ".zgroup") for name in names)


def ome_attributes(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The NGFF metadata of a group: under ``ome`` (0.5) or the attributes themselves (0.4)."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, Mapping) else attrs


def _safe_path(value: object) -> str | None:
    if not isinstance(value, str) or not value or value.startswith("/") or "\\" in value:
        return None
    parts = PurePosixPath(value).parts
    return None if any(p in ("..", ".", "") for p in parts) else "/".join(parts)


def _axis_names(multiscale: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for axis in multiscale.get("axes", []):
        names.append(str(axis.get("name") if isinstance(axis, Mapping) else axis).lower())
    return names


def _index_field(group: Any, path: str, well: str, site: int, builder: IndexBuilder, names: dict[int, str]) -> None:
    """Add one field's planes. Raises ValueError (a message) when its metadata is unusable."""
    import zarr

    ome = ome_attributes(group.attrs.asdict())
    multiscales = ome.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], Mapping):
        raise ValueError("no multiscales metadata")
    datasets = multiscales[0].get("datasets") or []
    dataset = _safe_path(datasets[0].get("path")) if datasets and isinstance(datasets[0], Mapping) else None
    if dataset is None:
        raise ValueError("no usable datasets[0].path")
    array = group[dataset]
    if not isinstance(array, zarr.Array):
        raise ValueError(f"{dataset} is not an array")
    axes = _axis_names(multiscales[0]) or list("tczyx"[-array.ndim :])
    if len(axes) != array.ndim or axes[-2:] != ["y", "x"] or any(a not in _AXES for a in axes[:-2]):
        raise ValueError(f"axes {axes} of shape {array.shape}: need [t][c][z] y x")
    ranges = [range(n) for n in array.shape[:-2]]
    for indices in itertools.product(*ranges):
        position = dict(zip(axes[:-2], indices, strict=True))
        source = f"{ZARR_PREFIX}{path}/{dataset}#{','.join(map(str, indices))}"
        builder.add(well, site, position.get("t", 0) + 1, position.get("c", 0) + 1, position.get("z", 0) + 1, source)
    channels = ome.get("omero", {}).get("channels", []) if isinstance(ome.get("omero"), Mapping) else []
    for number, channel in enumerate(channels if isinstance(channels, list) else [], start=1):
        if isinstance(channel, Mapping) and isinstance(channel.get("label"), str):
            names.setdefault(number, channel["label"])


def _open_plate(root: Path) -> tuple[Any, Mapping[str, Any]]:
    import zarr

    try:
        group = zarr.open_group(str(root), mode="r")
        plate = ome_attributes(group.attrs.asdict()).get("plate")
    except Exception as exc:  # zarr raises many kinds for a broken store
        raise PlateError(f"{root} is not a readable zarr group: {type(exc).__name__}: {exc}") from None
    if not isinstance(plate, Mapping) or not isinstance(plate.get("wells"), list):
        raise PlateError(f"{root} is a zarr group without OME-Zarr plate metadata (plate.wells)")
    return group, plate


def _name(plate: Mapping[str, Any], root: Path) -> str:
    name = plate.get("name")
    return plate_name_or(name if isinstance(name, str) else None, root.name.removesuffix(".zarr").removesuffix(".ome"))


def plate_name(path: str | Path, names: list[str]) -> str:
    """``plate.name`` (else the folder's name without ``.zarr``). Raises PlateError like :func:`read`."""
    root = Path(path).absolute()
    return _name(_open_plate(root)[1], root)


def read(path: str | Path, names: list[str]) -> PlateIndex:
    """Index the OME-Zarr plate at ``path``. Blocking I/O: call it in a thread.

    Raises:
        PlateError: not a zarr group, no ``plate`` metadata, or no readable field at all.
    """
    root = Path(path).absolute()
    plate_group, plate = _open_plate(root)
    builder = IndexBuilder()
    channel_names: dict[int, str] = {}
    problems: list[str] = []
    for entry in plate["wells"]:
        well_path = _safe_path(entry.get("path") if isinstance(entry, Mapping) else None)
        parts = well_path.split("/") if well_path else []
        if well_path is None or len(parts) != 2:
            problems.append(f"well path {entry!r} refused")
            continue
        try:
            well = well_name(parts[0], parts[1])
            well_group = plate_group[well_path]
            well_meta = ome_attributes(well_group.attrs.asdict()).get("well", {})
            images = well_meta.get("images") if isinstance(well_meta, Mapping) else None
            if not isinstance(images, list):
                raise ValueError("no well.images metadata")
        except KeyError:
            problems.append(f"{root / well_path} (missing well group)")
            continue
        except (ValueError, PlateError) as exc:
            problems.append(f"{root / well_path} ({exc})")
            continue
        for site, image in enumerate(images, start=1):
            field = _safe_path(image.get("path") if isinstance(image, Mapping) else None)
            where = root / well_path / str(field)
            try:
                if field is None:
                    raise ValueError(f"field path {image!r} refused")
                _index_field(well_group[field], f"{well_path}/{field}", well, site, builder, channel_names)
            except KeyError:
                problems.append(f"{where} (missing field group)")
            except ValueError as exc:
                problems.append(f"{where} ({exc})")
    if problems:
        builder.warnings.append(f"{len(problems)} part(s) of {root} cannot be read and were left out: {few(problems)}")
    version = ome_attributes(plate_group.attrs.asdict()).get("version") or plate.get("version", "")
    return builder.build(
        layout=NAME,
        path=str(root),
        name=_name(plate, root),
        channel_names=channel_names,
        metadata={"ngff_version": str(version)},
    )
