"""Built-in pipeline steps on numpy, scipy and scikit-image; together the default nucleus counter.

The step contract (for built-in and user steps alike):

- A step is a plain function ``step(image, **params)``: the current working image (a numpy array) is its first
  positional argument, the pipeline's parameters for it are keyword arguments.
- If the function declares a keyword parameter named ``raw``, it also receives the raw image as loaded from the
  TIFF file (untouched by earlier steps); pipelines must not set ``raw`` themselves.
- It returns either a new ``numpy.ndarray``, which replaces the working image for the following steps, or a
  ``dict`` of measurements (name → number), merged into the result row of that well, site and channel; ``None``
  changes nothing. Measurement values must be plain numbers or strings.
- Steps run in worker processes, one well at a time; they must not rely on state shared with the server.
- An array a step returns belongs to the worker from then on (the step keeps no reference to it). The worker
  may hand it to a later step to overwrite: a step that can write its result into its input asks
  :func:`may_overwrite` (``gaussian_blur`` does: one float32 image less at the worker's peak). Called anywhere
  else, a step never changes the caller's image.

Objects. A step marked with :func:`makes_objects` (the attribute ``hcs_batch_objects = True``) returns the
*segmentation*: a 2-D label image of the plane's shape (integers, 0 = background, each object one value) or a
boolean mask (labelled into connected objects). A pipeline holding such a step runs once per image set (site,
timepoint) on its ``segment_channel`` only; the server then measures every channel inside the objects of the last
such step (:mod:`hcs_batch.measure`): ``object_count`` and ``mean_intensity`` of every channel's row come from
those objects, and ``objects.parquet`` gets one row per object. A pipeline without one (dict-only user
pipelines, the previous counter) runs on every channel's image on its own, as before, and measures no objects.

A step marked with :func:`inline_noop` (the attribute ``hcs_batch_noop = True`` on the function) promises to do
nothing at all. A pipeline made only of such steps is executed inline by the server, without loading images or
using worker processes: every (well, site, channel) gets a row with no measurements. That keeps the per-plate
overhead of benchmark plates near the cost of the wire.

The server imports this module to check pipelines; SciPy is imported only inside the steps that use it (their
n-D paths), so a server never loads it: ~0.3 s less before an embedded server can start its workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from . import imageops

__all__ = [
    "NOOP_ATTRIBUTE",
    "OBJECTS_ATTRIBUTE",
    "Range",
    "count_objects",
    "gaussian_blur",
    "inline_noop",
    "is_inline_noop",
    "is_objects_step",
    "makes_objects",
    "may_overwrite",
    "mean_intensity",
    "noop",
    "normalize",
    "otsu_threshold",
    "split_touching",
    "step_call",
]

NOOP_ATTRIBUTE = "hcs_batch_noop"
"""Function attribute that marks a step as doing nothing (see the module docstring)."""

OBJECTS_ATTRIBUTE = "hcs_batch_objects"
"""Function attribute that marks a step whose array result is the segmentation (see the module docstring)."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Range:
    """The values a numeric step parameter accepts, declared in its annotation and checked when the pipeline
    compiles: ``sigma: Annotated[float, Range(ge=0)] = 1.0``. Bounds left at None do not apply."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: object) -> str:
        """What ``value`` must be when it is outside the range; empty when inside (or not a number: the type
        check names that)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return ""
        x = float(value)
        for bound, inside, text in (
            (self.ge, self.ge is None or x >= self.ge, ">="),
            (self.gt, self.gt is None or x > self.gt, ">"),
            (self.le, self.le is None or x <= self.le, "<="),
            (self.lt, self.lt is None or x < self.lt, "<"),
        ):
            if bound is not None and not inside:
                return f"must be {text} {bound:g}, got {value!r}"
        return ""

    def __str__(self) -> str:
        parts = [
            f"{text} {bound:g}"
            for bound, text in ((self.ge, ">="), (self.gt, ">"), (self.le, "<="), (self.lt, "<"))
            if bound is not None
        ]
        return ", ".join(parts)


Percent = Annotated[float, Range(ge=0, le=100)]


def inline_noop(func: F) -> F:
    """Mark ``func`` as a step that does nothing, so all-noop pipelines run inline on the server."""
    setattr(func, NOOP_ATTRIBUTE, True)
    return func


def is_inline_noop(func: object) -> bool:
    """True when ``func`` was marked with :func:`inline_noop`."""
    return getattr(func, NOOP_ATTRIBUTE, False) is True


@dataclass(frozen=True, slots=True)
class _StepCall:
    notes: dict[str, Any]
    handed_over: object


_CALL: ContextVar[_StepCall | None] = ContextVar("hcs_batch_step_call", default=None)
"""The worker's frame around the step running now (see :func:`step_call`)."""


@contextmanager
def step_call(notes: dict[str, Any], handed_over: NDArray[Any] | None = None) -> Iterator[None]:
    """The worker's frame around one step call: :func:`_note` records into ``notes``, and ``handed_over`` (the
    working image, when the worker made it and reads it no more after this step) is what :func:`may_overwrite`
    says yes to. Restores the frame before it on exit, also on an exception."""
    token = _CALL.set(_StepCall(notes, handed_over))
    try:
        yield
    finally:
        _CALL.reset(token)


def may_overwrite(array: NDArray[Any]) -> bool:
    """True when the running step may write its result into ``array`` (its image): the worker handed it over (an
    array it owns, read by nothing after this step: never the raw plane, a segmentation or a view). Outside
    :func:`step_call` (a step called directly) always False."""
    call = _CALL.get()
    return call is not None and call.handed_over is array


def _note(name: str, value: Any) -> None:
    """Record measurement ``name`` for the row of the image being processed, beside an array result
    (``otsu_threshold``'s ``threshold``). The worker merges it into the row as it merges a returned dict;
    called outside a worker, nothing happens."""
    call = _CALL.get()
    if call is not None:
        call.notes[name] = value


def makes_objects(func: F) -> F:
    """Mark ``func`` as a step whose array result is the segmentation the server measures."""
    setattr(func, OBJECTS_ATTRIBUTE, True)
    return func


def is_objects_step(func: object) -> bool:
    """True when ``func`` was marked with :func:`makes_objects`."""
    return getattr(func, OBJECTS_ATTRIBUTE, False) is True


def normalize(
    image: NDArray[Any], *, low_percentile: Percent = 1.0, high_percentile: Percent = 99.0
) -> NDArray[np.float32]:
    """Rescale intensities so the ``low_percentile`` maps to 0 and ``high_percentile`` to 1 (clipped)."""
    if not 0.0 <= low_percentile < high_percentile <= 100.0:
        raise ValueError(
            f"normalize: need 0 <= low_percentile < high_percentile <= 100, got {low_percentile}, {high_percentile}"
        )
    low, high = imageops.percentiles(image, (low_percentile, high_percentile))
    return imageops.rescale(image, low, high)


def gaussian_blur(image: NDArray[Any], *, sigma: Annotated[float, Range(ge=0)] = 1.0) -> NDArray[np.float32]:
    """Smooth with a Gaussian of standard deviation ``sigma`` pixels (0 returns the image as float). In a
    pipeline it blurs in place the float32 image an earlier step made (one image less in memory, the same result)."""
    if sigma < 0:
        raise ValueError(f"gaussian_blur: sigma must be >= 0, got {sigma}")
    if image.ndim == 2:
        return imageops.gaussian(image, sigma, in_place=may_overwrite(image))
    data = image.astype(np.float32, copy=False)
    if sigma == 0:
        return data
    from scipy import ndimage  # here, not at the top: see the module docstring

    out: NDArray[np.float32] = ndimage.gaussian_filter(data, sigma=sigma)
    return out


def otsu_threshold(
    image: NDArray[Any], *, bins: Annotated[int, Range(ge=2)] = 256, log: bool = False
) -> NDArray[np.bool_]:
    """Foreground mask: pixels above Otsu's threshold (maximum between-class variance over ``bins`` bins).

    With ``log`` the threshold is found on ``log(image - min + range / 1000)``: on a logarithmic scale a single
    very bright object (or a few) no longer pulls the threshold above dim nuclei, which plain Otsu on a 10-fold
    spread of brightness does.

    Records the threshold it used, in the input image's units (pixels above it are the mask), as the ``threshold``
    column of ``wells.csv``.
    """
    if bins < 2:
        raise ValueError(f"otsu_threshold: bins must be >= 2, got {bins}")
    data = image
    if log and (banded := imageops.log_otsu(image, bins)) is not None:
        _note("threshold", banded[1])
        return banded[0]
    offset = None
    if log:
        lo, hi = imageops.min_max(image)
        data = image.astype(np.float32)  # float32 carries the log's 1e-3..1 range with room to spare
        offset = np.float32(lo - max(hi - lo, 1e-12) * 1e-3)
        data -= offset
        np.log(data, out=data)
    level = imageops.otsu_level(data, bins)
    _note("threshold", float(level) if offset is None else float(np.exp(level)) + float(offset))
    mask: NDArray[np.bool_] = data > level
    return mask


@makes_objects
def split_touching(
    image: NDArray[Any], *, min_distance: Annotated[int, Range(ge=1)] = 5, min_size: Annotated[int, Range(ge=0)] = 20
) -> NDArray[np.uint16 | np.int32]:
    """Split a foreground mask into objects, touching ones apart: the segmentation (a label image: uint16 while
    there are fewer than 65,536 objects, int32 beyond).

    Holes are filled, specks of ``min_size`` pixels or fewer dropped, then a watershed of the distance transform
    (scikit-image) grows one object from every distance maximum at least ``min_distance`` pixels from a higher one
    (about the smallest nucleus radius). Objects of ``min_size`` pixels or fewer are dropped; labels run 1..n.
    A label image as input is split the same way (its foreground is ``image > 0``). The transform, the peaks and
    the flooding run one object's bounding box at a time (fast; the same objects as scikit-image's calls).
    """
    if image.ndim != 2:
        raise ValueError(f"split_touching: needs a 2-D mask, got shape {image.shape}")
    if min_distance < 1 or min_size < 0:
        raise ValueError(f"split_touching: need min_distance >= 1 and min_size >= 0, got {min_distance}, {min_size}")
    mask = imageops.fill_holes(image > 0)
    if min_size:
        # remove_small_objects(mask, max_size=min_size): its specks are edge-connected (connectivity 1).
        specks, count = imageops.label_narrow(mask, connectivity=1)
        small = imageops.object_sizes(specks, count) <= min_size
        if small.any():
            mask &= np.concatenate(([False], ~small))[specks]
        del specks
    return imageops.split_objects(mask, min_distance, min_size)


def count_objects(
    image: NDArray[Any],
    *,
    min_size: Annotated[int, Range(ge=0)] = 0,
    connectivity: Annotated[int, Range(ge=1, le=2)] = 1,
) -> dict[str, int]:
    """Count connected foreground objects of at least ``min_size`` pixels; measures ``object_count``.

    ``connectivity`` 1 joins edge neighbours, 2 also diagonal ones. A label image (integers) counts its labels
    of at least ``min_size`` pixels instead.
    """
    if connectivity not in (1, 2):
        raise ValueError(f"count_objects: connectivity must be 1 or 2, got {connectivity}")
    if np.issubdtype(image.dtype, np.integer):
        sizes = np.bincount(image.ravel().astype(np.int64))[1:]
        return {"object_count": int(np.count_nonzero(sizes >= max(min_size, 1)))}
    mask = image > 0
    if image.ndim == 2:
        labels, count = imageops.label(mask, connectivity)
    else:
        from scipy import ndimage

        labels, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(image.ndim, connectivity))
    if min_size > 0 and count:
        count = int(np.count_nonzero(imageops.object_sizes(labels, count) >= min_size))
    return {"object_count": int(count)}


def mean_intensity(image: NDArray[Any], *, raw: NDArray[Any] | None = None) -> dict[str, float]:
    """Mean raw intensity inside the foreground (when the working image is a mask or a label image, where
    the foreground is ``image > 0``) or over the whole image.

    Measures ``mean_intensity``; 0.0 for an empty mask. Without ``raw`` (called directly) the working image is
    measured.
    """
    source = image if raw is None else raw
    labels = raw is not None and image is not raw and image.dtype.kind in "iu"
    if (image.dtype == np.bool_ or labels) and image.shape == source.shape:
        return {"mean_intensity": imageops.masked_mean(source, image > 0 if labels else image)}
    return {"mean_intensity": float(source.mean())}


@inline_noop
def noop(image: NDArray[Any]) -> None:
    """Do nothing (for benchmarks); a pipeline of only ``noop`` steps runs inline on the server."""
    return None
