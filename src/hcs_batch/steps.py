"""Built-in pipeline steps on numpy/scipy; together the default nucleus counter.

The step contract (for built-in and user steps alike):

- A step is a plain function ``step(image, **params)``: the current working image (a numpy array) is its first
  positional argument, the pipeline's parameters for it are keyword arguments.
- If the function declares a keyword parameter named ``raw``, it also receives the raw image as loaded from the
  TIFF file (untouched by earlier steps); pipelines must not set ``raw`` themselves.
- It returns either a new ``numpy.ndarray``, which replaces the working image for the following steps, or a
  ``dict`` of measurements (name → number), merged into the result row of that well, site and channel; ``None``
  changes nothing. Measurement values must be plain numbers or strings.
- Steps run in worker processes, one well at a time; they must not rely on state shared with the server.

A step marked with :func:`inline_noop` (the attribute ``hcs_batch_noop = True`` on the function) promises to do
nothing at all. A pipeline made only of such steps is executed inline by the server, without loading images or
using worker processes: every (well, site, channel) gets a row with no measurements. That keeps the per-plate
overhead of benchmark plates near the cost of the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from . import imageops

__all__ = [
    "NOOP_ATTRIBUTE",
    "count_objects",
    "gaussian_blur",
    "inline_noop",
    "is_inline_noop",
    "mean_intensity",
    "noop",
    "normalize",
    "otsu_threshold",
]

NOOP_ATTRIBUTE = "hcs_batch_noop"
"""Function attribute that marks a step as doing nothing (see the module docstring)."""

F = TypeVar("F", bound=Callable[..., Any])


def inline_noop(func: F) -> F:
    """Mark ``func`` as a step that does nothing, so all-noop pipelines run inline on the server."""
    setattr(func, NOOP_ATTRIBUTE, True)
    return func


def is_inline_noop(func: object) -> bool:
    """True when ``func`` was marked with :func:`inline_noop`."""
    return getattr(func, NOOP_ATTRIBUTE, False) is True


def normalize(
    image: NDArray[Any], *, low_percentile: float = 1.0, high_percentile: float = 99.0
) -> NDArray[np.float32]:
    """Rescale intensities so the ``low_percentile`` maps to 0 and ``high_percentile`` to 1 (clipped)."""
    if not 0.0 <= low_percentile < high_percentile <= 100.0:
        raise ValueError(
            f"normalize: need 0 <= low_percentile < high_percentile <= 100, got {low_percentile}, {high_percentile}"
        )
    low, high = imageops.percentiles(image, (low_percentile, high_percentile))
    return imageops.rescale(image, low, high)


def gaussian_blur(image: NDArray[Any], *, sigma: float = 1.0) -> NDArray[np.float32]:
    """Smooth with a Gaussian of standard deviation ``sigma`` pixels (0 returns the image as float)."""
    if sigma < 0:
        raise ValueError(f"gaussian_blur: sigma must be >= 0, got {sigma}")
    if image.ndim == 2:
        return imageops.gaussian(image, sigma)
    data = image.astype(np.float32, copy=False)
    if sigma == 0:
        return data
    out: NDArray[np.float32] = ndimage.gaussian_filter(data, sigma=sigma)
    return out


def otsu_threshold(image: NDArray[Any], *, bins: int = 256) -> NDArray[np.bool_]:
    """Foreground mask: pixels above Otsu's threshold (maximum between-class variance over ``bins`` bins)."""
    if bins < 2:
        raise ValueError(f"otsu_threshold: bins must be >= 2, got {bins}")
    level = imageops.otsu_level(image, bins)
    mask: NDArray[np.bool_] = image > level
    return mask


def count_objects(image: NDArray[Any], *, min_size: int = 0, connectivity: int = 1) -> dict[str, int]:
    """Count connected foreground objects of at least ``min_size`` pixels; measures ``object_count``.

    ``connectivity`` 1 joins edge neighbours, 2 also diagonal ones.
    """
    if connectivity not in (1, 2):
        raise ValueError(f"count_objects: connectivity must be 1 or 2, got {connectivity}")
    mask = image > 0
    if image.ndim == 2:
        labels, count = imageops.label(mask, connectivity)
    else:
        labels, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(image.ndim, connectivity))
    if min_size > 0 and count:
        count = int(np.count_nonzero(imageops.object_sizes(labels, count) >= min_size))
    return {"object_count": int(count)}


def mean_intensity(image: NDArray[Any], *, raw: NDArray[Any] | None = None) -> dict[str, float]:
    """Mean raw intensity inside the foreground (when the working image is a mask) or over the whole image.

    Measures ``mean_intensity``; 0.0 for an empty mask. Without ``raw`` (called directly) the working image is
    measured.
    """
    source = image if raw is None else raw
    if image.dtype == np.bool_ and image.shape == source.shape:
        return {"mean_intensity": imageops.masked_mean(source, image)}
    return {"mean_intensity": float(source.mean())}


@inline_noop
def noop(image: NDArray[Any]) -> None:
    """Do nothing (for benchmarks); a pipeline of only ``noop`` steps runs inline on the server."""
    return None
