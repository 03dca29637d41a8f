"""One core, one image at a time: the scikit-image reference and the benchmark's pipeline on the same images.

``python -m benchmarks.realplates_single PLATE --images K`` takes the first K nuclear-stain fields (channel 1) of
the flat plate folder PLATE and, image by image (alternating which goes first), times:

- ``reference``: the standard scikit-image recipe a student writes from the tutorials (Gaussian blur, Otsu,
  label, distance-transform watershed, ``regionprops_table``), each image decoded from its TIFF;
- ``pipeline``: the benchmark's pipeline (:mod:`benchmarks._realsteps`: the built-in counter) segmenting the same
  file, decode and object measurement included (only this channel: the per-image cost), the rows written to a
  CSV and the objects to Parquet, as hcs-batch writes its results.

Then the first ``wells`` whole wells (every site and channel) through the pipeline, decode and writing included,
with the malloc settings of hcs-batch's workers (:func:`hcs_batch.server.allocator.keep_heap`): the one-core rate
that parallel efficiency is measured against.

The last stdout line is a JSON object: per-image seconds of each, (well, site) -> count for each (so the caller
can compare with the ground truth), and the one-core wells/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def reference_count(path: Path) -> int:
    """The textbook scikit-image nucleus segmentation of one image; returns the number of nuclei."""
    import tifffile
    from scipy import ndimage as ndi
    from skimage import feature, filters, measure, morphology, segmentation

    image = tifffile.imread(path)
    smooth = filters.gaussian(image, sigma=2, preserve_range=True)
    mask = smooth > filters.threshold_otsu(smooth)
    mask = morphology.remove_small_objects(mask, max_size=30)
    distance = ndi.distance_transform_edt(mask)
    coords = feature.peak_local_max(distance, min_distance=7, labels=measure.label(mask), exclude_border=False)
    markers = np.zeros(distance.shape, dtype=np.int32)
    markers[tuple(coords.T)] = np.arange(1, len(coords) + 1)
    labels = segmentation.watershed(-distance, markers, mask=mask)
    table = measure.regionprops_table(
        labels,
        intensity_image=image,
        properties=("label", "area", "centroid", "eccentricity", "solidity", "perimeter", "intensity_mean"),
    )
    return len(table["label"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realplates_single")
    parser.add_argument("plate")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--wells", type=int, default=2)
    args = parser.parse_args(argv)
    from hcs_batch.server.allocator import keep_heap

    from ._realsteps import compile_steps, group_wells, pipeline_text, process_well, write_objects, write_rows

    plate = Path(args.plate)
    steps = compile_steps(pipeline_text())
    fields = [
        (well, site, name)
        for well, images in group_wells(plate).items()
        for site, channel, name in images
        if channel == 1
    ][: args.images]
    process_well(plate, fields[0][0], [(fields[0][1], 1, fields[0][2])], steps)  # warm imports and caches
    reference_count(plate / fields[0][2])
    times: dict[str, list[float]] = {"reference": [], "pipeline": []}
    counts: dict[str, dict[str, int]] = {"reference": {}, "pipeline": {}}
    with tempfile.TemporaryDirectory(prefix="hcs-bench-single-") as tmp:
        for index, (well, site, name) in enumerate(fields):
            order = ("reference", "pipeline") if index % 2 == 0 else ("pipeline", "reference")
            for which in order:
                t0 = time.perf_counter()
                if which == "reference":
                    count = reference_count(plate / name)
                else:
                    rows, tables = process_well(plate, well, [(site, 1, name)], steps)
                    write_rows(Path(tmp) / f"{well}_{site}.csv", rows)
                    write_objects(Path(tmp) / f"{well}_{site}.parquet", tables)
                    count = int(rows[0]["object_count"])
                times[which].append(time.perf_counter() - t0)
                counts[which][f"{well}/{site}"] = count
        wells = list(group_wells(plate).items())[: args.wells]
        # The one-core rate with the allocator settings of hcs-batch's workers (fewer page faults: up to ~15%
        # less CPU a well on a busy machine), so parallel efficiency compares like with like.
        keep_heap()
        t0, cpu0 = time.perf_counter(), time.process_time()
        for well, images in wells:
            rows, tables = process_well(plate, well, images, steps)
            write_rows(Path(tmp) / f"{well}.csv", rows)
            write_objects(Path(tmp) / f"{well}.parquet", tables)
        serial_s, serial_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    result: dict[str, Any] = {"images": len(fields), "counts": counts}
    result["serial_wells"] = len(wells)
    result["serial_wells_per_s"] = round(len(wells) / serial_s, 3)
    result["serial_cpu_s_per_well"] = round(serial_cpu_s / len(wells), 3)
    for which, values in times.items():
        result[f"{which}_s_per_image"] = round(statistics.median(values), 4)
        result[f"{which}_runs_s"] = [round(v, 4) for v in values]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
