"""Fixed-size windows of a volume: placing them on the tumour, cutting and pasting them.

One code path for training patches and the runtime's localisation stage (paper 002,
section 2.3): a window of ``crop`` voxels is centred on the centre of the whole-tumour
bounding box and clamped to the volume along axes where the volume is at least as
large; along smaller axes it is centred on the volume and the cut is zero-padded.
Windows are given by their start (D, H, W), which may be negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_triple(value: int | Sequence[int], name: str, minimum: int | None) -> np.ndarray:
    """An int or 3 ints as an int64 array of 3, each at least ``minimum`` (if given)."""
    bound = "" if minimum is None else f", each >= {minimum}"
    message = f"{name} must be one int or 3 ints{bound}; got {value}"
    if np.size(value) not in (1, 3):
        raise ValueError(message)
    triple = np.broadcast_to(np.asarray(value, dtype=np.int64), (3,)).copy()
    if minimum is not None and (triple < minimum).any():
        raise ValueError(message)
    return triple


def centred_start(shape: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Start of a window centred on the volume (negative where the volume is smaller)."""
    return -((crop - shape) // 2)


def _bbox_centre_twice(mask_dhw: np.ndarray) -> np.ndarray:
    """Twice the bounding-box centre (lo + hi) per axis of a non-empty mask."""
    twice = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(np.any(mask_dhw, axis=other))
        twice.append(idx[0] + idx[-1])
    return np.asarray(twice, dtype=np.int64)


def tumour_window_start(
    mask: np.ndarray, crop_dhw: int | Sequence[int], offset: Sequence[int] = (0, 0, 0)
) -> tuple[int, int, int]:
    """Start of the window centred on the whole tumour, paper 002 section 2.3.

    The window is centred on the centre of the whole-tumour bounding box, shifted by
    ``offset`` voxels (training jitter), then clamped so it stays inside the volume
    along axes where the volume is at least as large as the window; along smaller axes
    it is centred on the volume (and padded by :func:`extract_window`). An empty mask
    falls back to the volume centre (the offset still applies).

    Args:
        mask: whole-tumour mask (D, H, W), or region masks (R, D, H, W) whose union is
            used (the union of nested regions is WT).
        crop_dhw: window size, one int or 3.
        offset: shift of the centre per axis.
    """
    if mask.ndim not in (3, 4):
        raise ValueError(f"expected a (D, H, W) or (R, D, H, W) mask, got shape {mask.shape}")
    wt_dhw = np.any(mask, axis=0) if mask.ndim == 4 else mask.astype(bool, copy=False)
    shape = np.asarray(wt_dhw.shape, dtype=np.int64)
    crop = as_triple(crop_dhw, "crop_dhw", 1)
    centre_twice = _bbox_centre_twice(wt_dhw) if wt_dhw.any() else shape - 1
    # A window [s, s + c) has centre s + (c - 1) / 2; solve for s and round down.
    start = (centre_twice + 1 - crop) // 2 + as_triple(offset, "offset", None)
    start = np.clip(start, 0, np.maximum(shape - crop, 0))
    start = np.where(shape >= crop, start, centred_start(shape, crop))
    return tuple(int(s) for s in start)


def extract_window(
    array_xdhw: np.ndarray,
    start: Sequence[int],
    crop_dhw: int | Sequence[int],
    fill: float = 0,
) -> np.ndarray:
    """Copy the window ``[start, start + crop)`` of the last 3 axes, padding with ``fill``.

    Works for any leading axes (C, R, none). The result has shape
    ``(*array_xdhw.shape[:-3], *crop_dhw)`` and the input's dtype, and never shares
    memory with the input.
    """
    if array_xdhw.ndim < 3:
        raise ValueError(f"expected at least 3 spatial axes, got shape {array_xdhw.shape}")
    crop = as_triple(crop_dhw, "crop_dhw", 1)
    begin = as_triple(start, "start", None)
    shape = array_xdhw.shape[-3:]
    lo = np.maximum(begin, 0)
    hi = np.minimum(begin + crop, shape)
    src = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    if (lo == begin).all() and (hi == begin + crop).all():
        return array_xdhw[(..., *src)].copy()
    out = np.full((*array_xdhw.shape[:-3], *crop), fill, dtype=array_xdhw.dtype)
    if (hi > lo).all():
        dst = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, begin))
        out[(..., *dst)] = array_xdhw[(..., *src)]
    return out


def paste_window(
    window_xdhw: np.ndarray, start: Sequence[int], shape_dhw: Sequence[int], fill: float = 0
) -> np.ndarray:
    """Inverse of :func:`extract_window`: the window placed at ``start`` in a new array of
    spatial shape ``shape_dhw`` filled with ``fill``; what falls outside is dropped."""
    shape = as_triple(tuple(shape_dhw), "shape_dhw", 1)
    begin = as_triple(start, "start", None)
    crop = np.asarray(window_xdhw.shape[-3:], dtype=np.int64)
    out = np.full((*window_xdhw.shape[:-3], *shape), fill, dtype=window_xdhw.dtype)
    lo = np.maximum(begin, 0)
    hi = np.minimum(begin + crop, shape)
    if (hi > lo).all():
        dst = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        src = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, begin))
        out[(..., *dst)] = window_xdhw[(..., *src)]
    return out
