"""Resampling between a case's grid and the voxel spacing the members were trained at.

MET (2026) and MEN-RT cases come in native space at any spacing (CONTRACT.md section 7);
a network trained on 1 mm voxels sees a 0.9 x 0.9 x 3 mm case as a squashed brain. The
manifest's ``preprocessing.spacing`` records the training spacing; a case whose spacing
differs by more than :data:`SPACING_TOLERANCE` is resampled to it for the networks, and the
probabilities come back to the case's grid before they are thresholded, so the labels lie
on the input's exact grid. The training cache resamples images and regions with
:func:`resample_case`, the same code, so the networks see at runtime what they trained on.

Orders follow nnU-Net (Isensee et al., Nature Methods 2021, "resampling" in its methods):
third-order B-splines for images, each label mask linearly then thresholded at 0.5 (its
``resize_segmentation``); probabilities go back linearly. Two differences: nnU-Net
z-scores before it resamples, here the z-score follows (the one preprocessing code path
of :func:`submission.predict.preprocess.preprocess_case`), so :func:`resample_image`
interpolates the brain from brain voxels only to keep the statistics; and nnU-Net's
special case for axes over 3 times coarser than the others (nearest neighbour across
slices) is not copied: one rule everywhere.

Library: :mod:`scipy.ndimage` (``affine_transform`` with a diagonal matrix), chosen over
SimpleITK and scikit-image because it is already a runtime dependency (no new package in
the container), gives exact control of the output shape and of the voxel-coordinate map
(the inverse map below is exact, so image -> network grid -> input grid lands back on the
input's voxel centres), does order-3 B-spline interpolation with a proper prefilter, and
is the same call in training (torch-free cache) and at runtime.

Coordinate convention: voxel edges are aligned, so the field of view is kept. Along an
axis of ``n_in`` voxels resampled to ``n_out``, output voxel ``i`` samples input coordinate
``(i + 0.5) * n_in / n_out - 0.5`` (what ``skimage.transform.resize`` does for nnU-Net).
Samples up to half a voxel beyond the first and last centre take the edge value (mode
``nearest``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from submission.predict.preprocess import CropInfo

#: Relative difference of any voxel size beyond which a case is resampled: 1 % covers the
#: float32 rounding of headers (0.8999999762 mm) and scanners' 0.9375 vs 0.94 mm rounding
#: noise, while a 2 % change of voxel size already shifts a 200 mm brain by 4 mm.
SPACING_TOLERANCE = 0.01

Spacing = tuple[float, float, float]
Window = tuple[Sequence[int], Sequence[int]]


def voxel_spacing(affine: np.ndarray) -> Spacing:
    """Voxel sizes in mm along the three array axes: the norms of the affine's first three
    columns, so rotated, oblique or flipped (LPS) affines give the same as axis-aligned ones.

    The affine, not the header's pixdim, because it is what places the voxels in space and
    what the output copies.
    """
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(v) for v in np.sqrt((columns**2).sum(axis=0)))


def needs_resampling(
    spacing_in: Sequence[float], spacing_out: Sequence[float], tolerance: float = SPACING_TOLERANCE
) -> bool:
    """Whether any voxel size of ``spacing_in`` differs from ``spacing_out``'s by more than
    ``tolerance`` relative to ``spacing_out``."""
    return any(abs(a - b) > tolerance * b for a, b in zip(spacing_in, spacing_out, strict=True))


def target_shape(
    shape: Sequence[int], spacing_in: Sequence[float], spacing_out: Sequence[float]
) -> tuple[int, ...]:
    """The shape that covers the same field of view at ``spacing_out``:
    ``round(shape * spacing_in / spacing_out)`` per axis, at least 1 voxel."""
    return tuple(
        max(1, round(n * a / b)) for n, a, b in zip(shape, spacing_in, spacing_out, strict=True)
    )


def _resample(
    volume_dhw: np.ndarray, shape: Sequence[int], order: int, window: Window | None = None
) -> np.ndarray:
    """float32 ``volume_dhw`` sampled on a grid of ``shape`` spanning the same field of view
    (the module's convention); only the output voxels in ``window`` = (start, stop) when
    given."""
    scale = np.array([a / b for a, b in zip(volume_dhw.shape, shape, strict=True)])
    start, stop = (np.zeros(len(shape), int), np.asarray(shape)) if window is None else window
    offset = scale * (np.asarray(start) + 0.5) - 0.5
    return ndimage.affine_transform(
        volume_dhw,
        scale,  # 1-D: a diagonal matrix, scipy's fast zoom path
        offset=offset,
        output_shape=tuple(int(b - a) for a, b in zip(start, stop)),
        output=np.float32,
        order=order,
        mode="nearest",
    )


def resample_image(image_cdhw: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Third-order B-spline resampling of every channel to ``shape`` (float32 out), the
    brain interpolated from brain voxels only and the background kept exactly 0.

    A voxel at the brain's border overlaps the zero background: plain interpolation makes
    it darker (a 3 mm slice half outside the brain is half as bright), and those outliers
    shift the non-zero z-score (t2f's standard deviation rose by half on a smooth synthetic
    case resampled 1 mm -> 0.9 x 0.9 x 3 mm -> 1 mm). So each channel is divided by its
    non-zero mask interpolated the same way (normalised convolution, Knutsson and Westin,
    CVPR 1993), which restores the statistics. Cubic interpolation also rings into the
    background; the brain crop and the z-score read zeros as background, so voxels outside
    the channel's resampled mask (linear, > 0.5) are set to exactly 0. An all-zero channel
    stays all zero.
    """
    out = np.zeros((image_cdhw.shape[0], *shape), dtype=np.float32)
    last = None  # the channels usually share one mask: interpolate it once
    for c, channel in enumerate(image_cdhw):
        mask = channel != 0
        if last is None or not np.array_equal(mask, last[0]):
            weight = mask.astype(np.float32)
            keep = _resample(weight, shape, order=1) > 0.5
            # Cubic interpolation (64 taps a voxel) only inside the brain's bounding box.
            box = _bounding_box(keep)
            inner = tuple(slice(a, b) for a, b in zip(*box))
            # Where the linear mask is above 0.5 the cubic one is too, up to ringing of a
            # few per cent: the floor only guards against a division by (almost) zero.
            norm = np.maximum(_resample(weight, shape, order=3, window=box)[keep[inner]], 0.1)
            last = mask, box, inner, keep[inner], norm
        _, box, inner, keep, norm = last
        if keep.any():
            values = _resample(np.asarray(channel, dtype=np.float32), shape, order=3, window=box)
            out[c][inner][keep] = values[keep] / norm
    return out


def _bounding_box(mask: np.ndarray) -> Window:
    """(start, stop) of the True voxels of ``mask``; an empty box when there are none."""
    if not mask.any():
        return (0,) * mask.ndim, (0,) * mask.ndim
    start, stop = [], []
    for axis in range(mask.ndim):
        idx = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        start.append(int(idx[0]))
        stop.append(int(idx[-1]) + 1)
    return tuple(start), tuple(stop)


def resample_probabilities(
    probs_rdhw: np.ndarray, shape: Sequence[int], window: Window | None = None
) -> np.ndarray:
    """Linear (order 1) resampling of per-region probabilities to ``shape``, float32 out;
    with ``window`` = (start, stop), only that box of the output (shape ``stop - start``).

    Linear keeps probabilities in [0, 1] and is monotone, so nested regions stay nested.
    """
    return np.stack([_resample(p, shape, order=1, window=window) for p in probs_rdhw])


def resample_regions(regions_rdhw: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """bool region masks (R, D, H, W) resampled to ``shape``: each mask linearly, then
    > 0.5, as nnU-Net resamples each label's mask.

    Linear then 0.5 rather than nearest because it puts the border where the runtime puts
    it (linear probabilities thresholded at 0.5) and draws smooth borders when slices are
    thick; it is monotone, so WT >= TC >= ET stays nested.
    """
    return resample_probabilities(regions_rdhw.astype(np.float32), shape) > 0.5


def resample_labels(labels_dhw: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A label map resampled to ``shape`` by nearest neighbour (same dtype): to compare
    label maps across grids; training resamples region masks (:func:`resample_regions`)."""
    return _resample(labels_dhw.astype(np.float32), shape, order=0).astype(labels_dhw.dtype)


def resample_case(
    image_cdhw: np.ndarray,
    regions_rdhw: np.ndarray | None,
    spacing_in: Sequence[float],
    spacing_out: Sequence[float],
) -> tuple[np.ndarray, np.ndarray | None]:
    """A training case at ``spacing_out``: the image as :func:`resample_image`, the regions
    (if any) as :func:`resample_regions`.

    Within :data:`SPACING_TOLERANCE` (or when the shape would not change) both come back
    unchanged, the very arrays passed in, so caches of cases already at the training spacing
    are identical to caches built without resampling.
    """
    shape = target_shape(image_cdhw.shape[1:], spacing_in, spacing_out)
    if not needs_resampling(spacing_in, spacing_out) or shape == tuple(image_cdhw.shape[1:]):
        return image_cdhw, regions_rdhw
    regions = None if regions_rdhw is None else resample_regions(regions_rdhw, shape)
    return resample_image(image_cdhw, shape), regions


def covering_crop(crop: CropInfo, shape: Sequence[int]) -> CropInfo:
    """The window of a grid of ``shape``, spanning the field of view of ``crop``'s grid
    (``crop.in_shape``), that holds every voxel that :func:`resample_probabilities` of
    probabilities zero outside ``crop``'s window can make non-zero. No padding.

    Source voxels ``[a, b)`` are non-zero; linear interpolation is non-zero at source
    coordinates in ``(a - 1, b)``, which destination voxel ``x`` samples when
    ``(a - 0.5) * r - 0.5 < x < (b + 0.5) * r - 0.5`` (``r`` destination voxels per source
    voxel); the window rounds those bounds outwards.
    """
    start, stop = [], []
    for a, b, n_src, n in zip(crop.start, crop.stop, crop.in_shape, shape, strict=True):
        r = n / n_src
        start.append(max(0, math.floor((a - 0.5) * r - 0.5)))
        stop.append(min(n, math.ceil((b + 0.5) * r - 0.5)))
    return CropInfo(tuple(shape), tuple(start), tuple(stop), ((0, 0),) * len(shape))
