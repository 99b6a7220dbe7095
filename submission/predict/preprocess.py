"""Crop/pad policies and intensity normalisation, each invertible.

Policies:
    ``centre``  paper 002, section 2.1: fixed centre crop to 192 x 192 in-plane (the
                first two voxel axes), the slice axis kept and zero-padded to a
                multiple of 8 (155 -> 160).
    ``brain``   the better one: the bounding box of non-zero voxels over all channels,
                plus a margin, zero-padded to a multiple of a divisor (the network's
                total stride). It never cuts a brain voxel: BraTS-GLI-00001-000's brain
                spans 140 x 190 x 137 voxels, and the centre crop cuts 621 of them where
                this one keeps all in 160 x 208 x 160 (margin 4, divisor 16), and it is
                smaller than the centre crop on smaller heads.

Both produce a :class:`CropInfo` and :func:`uncrop` puts any per-voxel array back on
the original grid, filling what was cut with a constant.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

CROP_POLICIES = ("centre", "brain")


@dataclass(frozen=True)
class CropInfo:
    """What a crop did, per spatial axis: enough to invert it.

    Attributes:
        in_shape: spatial shape before the crop.
        start, stop: the kept window in input coordinates (clamped to the volume).
        pad: (before, after) zeros added around the window.
    """

    in_shape: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    pad: tuple[tuple[int, int], ...]

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Spatial shape after the crop."""
        return tuple(b - a + p0 + p1 for a, b, (p0, p1) in zip(self.start, self.stop, self.pad))


def _window(in_shape, lo, hi) -> CropInfo:
    """Crop info for the (possibly out-of-volume) window [lo, hi) on every axis."""
    start = tuple(max(0, int(a)) for a in lo)
    stop = tuple(min(n, int(b)) for n, b in zip(in_shape, hi))
    pad = tuple((s - int(a), int(b) - e) for a, b, s, e in zip(lo, hi, start, stop))
    return CropInfo(tuple(in_shape), start, stop, pad)


def centre_crop_info(
    in_shape: tuple[int, ...], size: tuple[int | None, ...] = (192, 192, None), multiple: int = 8
) -> CropInfo:
    """Paper 002 (section 2.1) crop: centre window of ``size`` (None keeps the axis), then
    each axis padded up to a multiple of ``multiple``. A size larger than the volume pads."""
    lo, hi = [], []
    for n, s in zip(in_shape, size):
        target = n if s is None else s
        target = -(-target // multiple) * multiple
        a = (n - target) // 2
        lo.append(a)
        hi.append(a + target)
    return _window(in_shape, lo, hi)


def brain_crop_info(
    image_cdhw: np.ndarray, margin: int = 4, divisor: int = 16, min_size: int = 0
) -> CropInfo:
    """Bounding box of the non-zero voxels of any channel, ``margin`` voxels wider, grown
    symmetrically to a multiple of ``divisor`` (and at least ``min_size``) per axis.

    An image with no non-zero voxel keeps its full extent.
    """
    in_shape = image_cdhw.shape[1:]
    nonzero = np.any(image_cdhw != 0, axis=0)
    lo, hi = [], []
    for axis, n in enumerate(in_shape):
        profile = np.any(nonzero, axis=tuple(a for a in range(len(in_shape)) if a != axis))
        idx = np.flatnonzero(profile)
        a, b = (int(idx[0]) - margin, int(idx[-1]) + 1 + margin) if idx.size else (0, n)
        a, b = max(a, 0), min(b, n)
        target = max(-(-(b - a) // divisor) * divisor, -(-min_size // divisor) * divisor)
        grow = target - (b - a)
        lo.append(a - grow // 2)
        hi.append(b + grow - grow // 2)
    return _window(in_shape, lo, hi)


def crop(array_xdhw: np.ndarray, info: CropInfo) -> np.ndarray:
    """Apply a crop to the last ``len(info.in_shape)`` axes of an array (zero padding)."""
    nd = len(info.in_shape)
    if tuple(array_xdhw.shape[-nd:]) != info.in_shape:
        raise ValueError(f"array spatial shape {array_xdhw.shape[-nd:]} != {info.in_shape}")
    window = array_xdhw[(...,) + tuple(slice(a, b) for a, b in zip(info.start, info.stop))]
    if not any(p0 or p1 for p0, p1 in info.pad):
        return np.ascontiguousarray(window)
    lead = ((0, 0),) * (array_xdhw.ndim - nd)
    return np.pad(window, lead + info.pad)


def uncrop(array_xdhw: np.ndarray, info: CropInfo, fill: float = 0) -> np.ndarray:
    """Put a cropped array back on the original grid; voxels outside the window get ``fill``."""
    nd = len(info.in_shape)
    if tuple(array_xdhw.shape[-nd:]) != info.out_shape:
        raise ValueError(f"array spatial shape {array_xdhw.shape[-nd:]} != {info.out_shape}")
    inner = tuple(slice(p0, p0 + b - a) for (p0, _), a, b in zip(info.pad, info.start, info.stop))
    out = np.full(array_xdhw.shape[:-nd] + info.in_shape, fill, dtype=array_xdhw.dtype)
    out[(...,) + tuple(slice(a, b) for a, b in zip(info.start, info.stop))] = array_xdhw[
        (...,) + inner
    ]
    return out


@dataclass(frozen=True)
class ZScoreStats:
    """Per-channel mean and standard deviation used by :func:`zscore_nonzero`."""

    mean: np.ndarray
    std: np.ndarray


def zscore_nonzero(image_cdhw: np.ndarray) -> tuple[np.ndarray, ZScoreStats]:
    """Per-channel z-score over the non-zero voxels; zero (background) voxels stay 0.

    Paper 004, section 3.4 ("zero mean and unit std, based on non-zero voxels only");
    paper 003, section 2.1 normalises to zero mean and unit variance as well. A channel
    whose non-zero voxels are constant is only centred (std taken as 1).

    Returns:
        float32 image of the same shape, and the statistics that invert it inside each
        channel's non-zero voxels (``z * std + mean``).
    """
    out = np.zeros(image_cdhw.shape, dtype=np.float32)
    means, stds = [], []
    for c, channel in enumerate(image_cdhw):
        mask = channel != 0
        values = channel[mask].astype(np.float64)
        mean = float(values.mean()) if values.size else 0.0
        std = float(values.std()) if values.size else 1.0
        std = std if std > 0 else 1.0
        out[c][mask] = ((values - mean) / std).astype(np.float32)
        means.append(mean)
        stds.append(std)
    return out, ZScoreStats(np.array(means), np.array(stds))


@dataclass(frozen=True)
class Preprocessing:
    """The whole preprocessing of one case, as a bundle manifest and a training cache state it.

    Attributes:
        crop: crop policy, ``brain`` or ``centre`` (see the module docstring).
        margin: brain policy: voxels kept around the brain's bounding box.
        divisor: every cropped axis is padded to a multiple of this (the network's stride).
        normalise: ``zscore_nonzero``: 003 (section 2.1, "zero mean and unit variance") and
            004 (section 3.4, "based on non-zero voxels only") state it; 002 states no
            normalisation, and its recipe uses the same z-score (MRI intensities have no
            common scale across scanners).
        spacing: voxel sizes in mm along the array's three voxel axes (as the NIfTI
            header's zooms give them) that the members were trained at, or None (every
            case taken at its own spacing, the BraTS-space 1 mm of GLI). When set, the engine
            and the training cache resample a case at another spacing to it first
            (:mod:`submission.predict.resample`); :func:`preprocess_case` itself does not
            resample (it has no grid). Native-space tasks need it (CONTRACT.md section 7:
            MET and MEN-RT come at any spacing).
    """

    crop: str = "brain"
    margin: int = 4
    divisor: int = 16
    normalise: str = "zscore_nonzero"
    spacing: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.crop not in CROP_POLICIES:
            raise ValueError(
                f"unknown crop policy {self.crop!r}; choose one of {', '.join(CROP_POLICIES)}"
            )
        if self.normalise != "zscore_nonzero":
            raise ValueError(f"unknown normalisation {self.normalise!r}; use zscore_nonzero")
        if self.margin < 0 or self.divisor < 1:
            raise ValueError(f"margin must be >= 0 and divisor >= 1, got {self}")
        if self.spacing is not None:
            # frozen: a list from JSON or YAML becomes the tuple that equality and hashing need
            object.__setattr__(self, "spacing", _checked_spacing(self.spacing))

    def to_dict(self) -> dict:
        """Plain dict, for JSON and YAML; ``spacing`` only when set, so the manifests and
        training-cache keys of bundles without it stay byte-identical."""
        out = {
            "crop": self.crop,
            "margin": self.margin,
            "divisor": self.divisor,
            "normalise": self.normalise,
        }
        if self.spacing is not None:
            out["spacing"] = list(self.spacing)
        return out


def _checked_spacing(spacing) -> tuple[float, float, float]:
    """Three positive finite voxel sizes in mm, as floats."""
    values = list(spacing) if isinstance(spacing, (list, tuple)) else None
    if (
        values is None
        or len(values) != 3
        or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in values
        )
    ):
        raise ValueError(
            f"preprocessing spacing must be three positive voxel sizes in mm, e.g. [1, 1, 1]; "
            f"got {spacing!r}"
        )
    return tuple(float(v) for v in values)


def preprocess_case(image_cdhw: np.ndarray, spec: Preprocessing) -> tuple[np.ndarray, CropInfo]:
    """Crop then normalise a case, the one code path of training, validation and the container.

    Args:
        image_cdhw: (4, D, H, W) raw intensities in MODALITIES order.
        spec: what to do.

    Returns:
        float32 (4, d, h, w) network input, and the crop to undo with :func:`uncrop`.
    """
    if spec.crop == "brain":
        info = brain_crop_info(image_cdhw, margin=spec.margin, divisor=spec.divisor)
    else:
        info = centre_crop_info(image_cdhw.shape[1:], multiple=spec.divisor)
    norm_cdhw, _ = zscore_nonzero(crop(image_cdhw, info))
    return norm_cdhw, info
