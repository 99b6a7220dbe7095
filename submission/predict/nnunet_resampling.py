"""nnU-Net v2's resampling (``preprocessing/resampling/default_resampling.py``, nnunetv2
2.8.1) with numpy and scipy, for images before the network and logits after it.

nnU-Net resizes with scikit-image's ``resize``, which is scipy's ``ndimage.zoom`` plus a
clip; the runtime image has no scikit-image, so :func:`skimage_resize` makes that call
itself. Values are bit-identical to nnU-Net's (the tests compare them): the same float64
arithmetic, the same scipy calls, the same casts.

Arrays are (C, a0, a1, a2) in nnU-Net's axis order; spacings in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: ``nnunetv2/configuration.py``: ANISO_THRESHOLD.
ANISO_THRESHOLD = 3.0


def compute_new_shape(
    old_shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """``preprocessing/resampling/default_resampling.py``: ``compute_new_shape``."""
    return tuple(int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape))


def _lowres_axes(spacing: Sequence[float]) -> np.ndarray:
    """``get_lowres_axis``."""
    return np.where(max(spacing) / np.array(spacing) == 1)[0]


def _anisotropic(spacing: Sequence[float], threshold: float) -> bool:
    """``get_do_separate_z``."""
    return bool((np.max(spacing) / np.min(spacing)) > threshold)


def separate_z_axis(
    force_separate_z: bool | None,
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    threshold: float = ANISO_THRESHOLD,
) -> int | None:
    """``determine_do_sep_z_and_axis``: the axis resampled on its own (nearest neighbour
    by default), or None for one 3-D interpolation."""
    if force_separate_z is not None:
        axes = _lowres_axes(current_spacing) if force_separate_z else None
    elif _anisotropic(current_spacing, threshold):
        axes = _lowres_axes(current_spacing)
    elif _anisotropic(new_spacing, threshold):
        axes = _lowres_axes(new_spacing)
    else:
        axes = None
    if axes is None or len(axes) != 1:  # 2 or 3 equally coarse axes: no separate z
        return None
    return int(axes[0])


def skimage_resize(image: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``skimage.transform.resize(image, shape, order, mode='edge', anti_aliasing=False)``
    (scikit-image 0.26) for a float64 image: ``scipy.ndimage.zoom`` with ``grid_mode=True``
    and mode ``nearest`` (``edge``'s ndimage name), clipped to the input's range."""
    factors = np.divide(image.shape, tuple(shape))
    out = ndimage.zoom(
        image, [1 / f for f in factors], order=order, mode="nearest", cval=0, grid_mode=True
    )
    lo = np.min(image)
    if np.isnan(lo):
        lo, hi = np.nanmin(image), np.nanmax(image)
    else:
        hi = np.max(image)
    np.clip(out, np.asarray(lo), np.asarray(hi), out=out)
    return out


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Input index each output voxel of nnU-Net's order-0 ``map_coordinates`` (mode
    ``nearest``) takes along one axis: the same call on ``arange(n_in)``, whose value at
    a coordinate is the index it rounds to."""
    coords = float(n_in) / n_out * (np.arange(n_out) + 0.5) - 0.5
    picked = ndimage.map_coordinates(
        np.arange(n_in, dtype=np.float64), coords[None], order=0, mode="nearest"
    )
    return picked.astype(np.intp)


def _resample_across(volume: np.ndarray, shape: tuple[int, ...], order_z: int) -> np.ndarray:
    """The across-slice step of ``resample_data_or_seg`` (``is_seg=False``):
    ``map_coordinates(order=order_z, mode='nearest')`` on the align-corners=False grid.

    Order 0 selects voxels, and a grid's order-0 selection is separable, so it is done with
    one index array per axis (the full coordinate map nnU-Net builds is 3 float64 volumes);
    other orders use nnU-Net's exact call.
    """
    if order_z == 0:
        index = [_nearest_index(a, b) for a, b in zip(volume.shape, shape)]
        return volume[np.ix_(*index)]
    grid = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float64)
    for axis in range(3):
        grid[axis] = float(volume.shape[axis]) / shape[axis] * (grid[axis] + 0.5) - 0.5
    return ndimage.map_coordinates(volume, grid, order=order_z, mode="nearest")


def resample_to_shape(
    data_c3d: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 3,
    order_z: int = 0,
    force_separate_z: bool | None = False,
    threshold: float = ANISO_THRESHOLD,
) -> np.ndarray:
    """``preprocessing/resampling/default_resampling.py``: ``resample_data_or_seg_to_shape``
    (``is_seg=False``), which nnU-Net uses for images (order 3) and logits (order 1).

    Unchanged when the shape is (``data_c3d`` itself). Else every channel is interpolated
    in float64 and stored in ``data_c3d``'s dtype, as nnU-Net does; with a separate z axis
    (anisotropic spacing) each slice is resized in-plane with ``order`` and the slices are
    then combined across with ``order_z``. nnU-Net casts the whole array to float64 first;
    here one channel at a time is (same values, a quarter of the memory).
    """
    shape = tuple(int(s) for s in data_c3d.shape[1:])
    new_shape = tuple(int(s) for s in new_shape)
    if shape == new_shape:
        return data_c3d
    axis = separate_z_axis(force_separate_z, current_spacing, new_spacing, threshold)
    out = np.zeros((data_c3d.shape[0], *new_shape), dtype=data_c3d.dtype)
    for c in range(data_c3d.shape[0]):
        channel = data_c3d[c].astype(np.float64)
        if axis is None:
            out[c] = skimage_resize(channel, new_shape, order)
            continue
        inplane = tuple(s for a, s in enumerate(new_shape) if a != axis)
        mid_shape = tuple(shape[a] if a == axis else new_shape[a] for a in range(3))
        mid = np.zeros(mid_shape)
        for k in range(shape[axis]):
            index = (slice(None),) * axis + (k,)
            mid[index] = skimage_resize(channel[index], inplane, order)
        out[c] = mid if mid_shape == new_shape else _resample_across(mid, new_shape, order_z)
    return out
