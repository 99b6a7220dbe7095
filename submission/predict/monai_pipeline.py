"""A MONAI bundle's inference, reproduced without torch or MONAI (manifest ``pipelines``
of kind ``monai``, issue 15).

The MONAI model zoo's ``brats_mri_segmentation`` runs, per case (``configs/inference.json``):
``LoadImaged`` (the four files stacked as channels, nibabel voxel order), optionally
``Orientationd`` and ``Spacingd``, ``NormalizeIntensityd(nonzero, channel_wise)``, the
network inside ``SlidingWindowInferer``, then ``Activationsd(sigmoid)``, ``Invertd`` (the
spatial transforms undone on the probabilities) and ``AsDiscreted(threshold=0.5)``.
:func:`predict_group` does the same steps in numpy, following MONAI 1.6's source:
``Orientation`` (:func:`orientation_transform`, :func:`reorient`), ``Spacing``
(:func:`spacing_plan`, :func:`resample_linear`), ``NormalizeIntensity``
(:func:`normalize_intensity`), ``sliding_window_inference``
(:func:`submission.predict.monai_window.sliding_window`), the sigmoid, then the inverses,
spatial ones on the probabilities as ``Invertd`` does.

Differences, each small: the z-score's statistics are taken in float64 (MONAI: float32
torch reductions, equal to about 1e-7 relative); windows go through the network one at a
time whatever ``sw_batch_size`` (the networks have no batch coupling in eval mode); the
network runs in float32 (the zoo's evaluator uses CUDA autocast when ``amp`` is on);
MONAI's bundle inference has no test-time augmentation, so ``tta`` changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any, ClassVar

import nibabel as nib
import numpy as np
from scipy.special import expit

from submission.brats import MODALITIES
from submission.predict.monai_window import MIN_WEIGHT as MIN_WEIGHT
from submission.predict.monai_window import PADDING_MODES, Forward, sliding_window
from submission.predict.monai_window import importance_map as importance_map
from submission.predict.monai_window import scan_interval as scan_interval
from submission.predict.monai_window import window_starts as window_starts

MODES = ("constant", "gaussian")
#: ``monai.data.utils.AFFINE_TOL``: a resampling this close to the identity is skipped.
AFFINE_TOL = 1e-3
MAX_ROI = 1024


@dataclass(frozen=True)
class Normalization:
    """``NormalizeIntensityd``'s ``nonzero`` and ``channel_wise`` (no subtrahend/divisor)."""

    nonzero: bool = True
    channel_wise: bool = True


@dataclass(frozen=True)
class MonaiPipeline:
    """The ``monai`` record of the manifest's ``pipelines``: what a MONAI bundle's inference
    config says.

    Attributes:
        source: provenance, e.g. ``brats_mri_segmentation 0.5.2``.
        channels: the network's input channels, bratskit modality names, in order.
        roi: ``SlidingWindowInferer.roi_size``, in the network's (oriented) axis order.
        orientation: ``Orientationd.axcodes`` (``RAS``), or None without Orientationd.
        spacing: ``Spacingd.pixdim`` in mm, or None without Spacingd.
        normalization: ``NormalizeIntensityd``'s options.
        overlap, mode, sigma_scale, sw_batch_size, padding_mode, cval: the inferer's.
        nonlinearity: ``sigmoid`` (``Activationsd(sigmoid=True)``).
        fold_average: ``none``: each member is its own output (one network per bundle).
    """

    kind: ClassVar[str] = "monai"

    source: str
    channels: tuple[str, ...]
    roi: tuple[int, int, int]
    orientation: str | None = None
    spacing: tuple[float, float, float] | None = None
    normalization: Normalization = Normalization()
    overlap: float = 0.25
    mode: str = "constant"
    sigma_scale: float = 0.125
    sw_batch_size: int = 1
    padding_mode: str = "constant"
    cval: float = 0.0
    nonlinearity: str = "sigmoid"
    fold_average: str = "none"

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MonaiPipeline:
        """Parse a manifest record (every key of :meth:`to_dict`, no other).

        Raises:
            ValueError: naming the field, the value and what it must be.
        """
        raw = dict(raw)
        expected = {"kind", *(f.name for f in fields(cls))}
        missing, unknown = sorted(expected - set(raw)), sorted(set(raw) - expected)
        if missing or unknown:
            raise ValueError(f"missing keys {missing}, unknown keys {unknown}")
        if raw.pop("kind") != cls.kind:
            raise ValueError(f"kind: expected {cls.kind!r}")
        norm = raw.pop("normalization")
        if not isinstance(norm, Mapping) or set(norm) != {"nonzero", "channel_wise"}:
            raise ValueError(f"normalization: expected {{nonzero, channel_wise}}, got {norm!r}")
        for name in ("channels", "roi", "spacing"):
            if isinstance(raw[name], list):
                raw[name] = tuple(raw[name])
        return cls(normalization=Normalization(**norm), **raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as the manifest lists it."""
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {"kind": self.kind, **plain}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any, low: int, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check(p: MonaiPipeline) -> None:
    """Raise ValueError naming the first field of ``p`` that is out of range."""
    channels, roi, spacing, norm = p.channels, p.roi, p.spacing, p.normalization
    rules = {
        "source": (isinstance(p.source, str), "a string"),
        "channels": (
            isinstance(channels, tuple)
            and all(c in MODALITIES for c in channels)
            and 0 < len(set(channels)) == len(channels),
            f"distinct modalities of {list(MODALITIES)}",
        ),
        "roi": (
            isinstance(roi, tuple) and len(roi) == 3 and all(_integer(r, 1, MAX_ROI) for r in roi),
            f"three integers 1..{MAX_ROI}",
        ),
        "orientation": (p.orientation is None or _valid_axcodes(p.orientation), "axcodes"),
        "spacing": (
            spacing is None
            or (isinstance(spacing, tuple) and len(spacing) == 3)
            and all(_number(s) and s > 0 for s in spacing),
            "null or three positive voxel sizes in mm",
        ),
        "normalization": (type(norm.nonzero) is type(norm.channel_wise) is bool, "booleans"),
        "overlap": (_number(p.overlap) and 0 <= p.overlap < 1, "a number in [0, 1)"),
        "mode": (p.mode in MODES, f"one of {list(MODES)}"),
        "sigma_scale": (_number(p.sigma_scale) and p.sigma_scale > 0, "a positive number"),
        "sw_batch_size": (_integer(p.sw_batch_size, 1), "a positive integer"),
        "padding_mode": (p.padding_mode in PADDING_MODES, f"one of {list(PADDING_MODES)}"),
        "cval": (_number(p.cval), "a number"),
        "nonlinearity": (p.nonlinearity == "sigmoid", "'sigmoid'"),
        "fold_average": (p.fold_average == "none", "'none'"),
    }
    for name, (ok, what) in rules.items():
        if not ok:
            raise ValueError(f"{name}: expected {what}, got {getattr(p, name)!r}")


def _valid_axcodes(codes: Any) -> bool:
    """Three letters, one of each pair L/R, P/A, I/S (nibabel's default labels)."""
    if not isinstance(codes, str):
        return False
    pairs = [next((i for i, p in enumerate(("LR", "PA", "IS")) if c in p), -1) for c in codes]
    return sorted(pairs) == [0, 1, 2]


# --- the steps ------------------------------------------------------------------------


def orientation_transform(affine: np.ndarray, axcodes: str) -> np.ndarray:
    """nibabel ornt (3, 2) from the affine's voxel axes to ``axcodes``, as
    ``monai.transforms.Orientation.__call__`` computes it: row ``i`` says where input
    axis ``i`` goes and whether it is flipped."""
    src = nib.io_orientation(np.asarray(affine, dtype=np.float64))
    return nib.orientations.ornt_transform(src, nib.orientations.axcodes2ornt(tuple(axcodes)))


def reorient(array_cxyz: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Flip, then permute the spatial axes (``monai.transforms.spatial.functional.orientation``)."""
    flips = [1 + i for i in range(3) if ornt[i, 1] == -1]
    out = np.flip(array_cxyz, axis=flips) if flips else array_cxyz
    return out.transpose(0, *(1 + np.argsort(ornt[:, 0]).astype(int)))


def unorient(array_cxyz: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """The inverse of :func:`reorient` (``Orientation.inverse``)."""
    out = array_cxyz.transpose(0, *(1 + ornt[:, 0].astype(int)))
    flips = [1 + i for i in range(3) if ornt[i, 1] == -1]
    return np.flip(out, axis=flips) if flips else out


def spacing_plan(affine: np.ndarray, shape: Sequence[int], pixdim: Sequence[float]):
    """``monai.transforms.Spacing`` (defaults) of an image of ``shape`` and ``affine``,
    MONAI's float64 numpy steps: None where ``spatial_resample`` skips (voxel map within
    ``AFFINE_TOL`` of the identity, same shape), else (shape, forward scale, inverse
    scale), the scales the diagonals of MONAI's voxel maps (``Invertd``'s is solved
    afresh). Axes within ``AFFINE_TOL`` of the pixdim keep their spacing; the rotation
    stays (``zoom_affine(diagonal=False)``); ``compute_shape_offset`` spans the corner
    voxel centres, the first corner fixed. The maps are diagonal for axis-aligned
    affines; an oblique one's rounding-level off-diagonal terms are dropped."""
    a = np.asarray(affine, dtype=np.float64)
    old = np.sqrt(np.sum(a[:3, :3] * a[:3, :3], axis=0))
    target = np.asarray(pixdim, dtype=np.float64)
    out_d = np.where((target - AFFINE_TOL <= old) & (old <= target + AFFINE_TOL), old, target)
    rzs = a[:3, :3]
    zs = np.linalg.cholesky(rzs.T @ rzs).T
    new = np.eye(4)
    new[:3, :3] = (rzs @ np.linalg.inv(zs)) @ np.diag(np.sign(np.diag(zs)) * np.abs(out_d))
    corners = np.asarray(np.meshgrid(*[(0.0, n - 1.0) for n in shape], indexing="ij"))
    corners = np.concatenate([corners.reshape(3, -1), np.ones((1, 8))])
    mapped = np.linalg.solve(new, a) @ corners
    out_shape = tuple(int(v) for v in np.round(np.ptp(mapped[:3] / mapped[3], axis=1) + 1.0))
    new[:3, 3] = a[:3, 3]  # the first corner is the smallest: it keeps its place
    xform = np.linalg.solve(a, new)
    if tuple(shape) == out_shape and np.allclose(xform, np.eye(4), rtol=1e-5, atol=AFFINE_TOL):
        return None
    return out_shape, np.diag(xform)[:3], np.diag(np.linalg.solve(a @ xform, a))[:3]


def _torch_linspace(n: int) -> np.ndarray:
    """``torch.linspace(-1, 1, n)`` in float64, element for element: ATen's kernel takes
    the first half from the start, the second from the end, each a fused multiply-add
    (as torch's x86 builds compute it; checked against torch 2.13 for n up to 1000)."""
    step = 2.0 / (n - 1) if n > 1 else 0.0
    exact = [
        Fraction(step) * i - 1 if i < n // 2 else 1 - Fraction(step) * (n - 1 - i) for i in range(n)
    ]
    return np.array([float(v) for v in exact])  # one rounding each, as an FMA


def grid_coordinates(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """The float64 input coordinates MONAI's CPU resampling samples along one axis,
    ``i * scale`` with its rounding (``AffineTransform``: ``to_norm_affine``,
    ``F.affine_grid``, ``grid_sample``'s unnormalisation and border clip, align_corners
    False). The rounding matters: a coordinate 1e-15 off a voxel centre gives a
    background voxel a 1e-13 share of its brain neighbour, and NormalizeIntensity(nonzero)
    then z-scores it as brain."""
    s_kk, s_k3 = 2.0 / n_in, 1.0 / n_in - 1.0
    dst = np.eye(4)
    dst[0, 0], dst[0, 3] = 2.0 / n_out, 1.0 / n_out - 1.0
    dst_inv = np.linalg.inv(dst)
    sx = s_kk * scale
    theta_kk, theta_k3 = sx * dst_inv[0, 0], sx * dst_inv[0, 3] + s_k3
    base = _torch_linspace(n_out) if n_out > 1 else np.zeros(1)  # linspace_from_neg_one
    coords = (base * (n_out - 1) / n_out) * theta_kk + theta_k3
    return np.clip(((coords + 1.0) * n_in - 1.0) / 2.0, 0.0, n_in - 1.0)


def resample_linear(array_cxyz: np.ndarray, shape: Sequence[int], scale: Sequence[float]):
    """Trilinear resampling (``grid_sample`` bilinear, border padding, float64) of every
    channel to ``shape`` at :func:`grid_coordinates`, one axis at a time; float32 out."""
    out = []
    for channel in array_cxyz:
        values = np.asarray(channel, dtype=np.float64)
        for axis, (n, m, f) in enumerate(zip(channel.shape, shape, scale)):
            u = grid_coordinates(n, m, float(f))
            low = np.floor(u).astype(np.intp)
            w_high = (u - low).reshape([-1 if a == axis else 1 for a in range(3)])
            w_low = (low + 1 - u).reshape(w_high.shape)
            high = np.minimum(low + 1, n - 1)
            values = np.take(values, low, axis) * w_low + np.take(values, high, axis) * w_high
        out.append(values.astype(np.float32))
    return np.stack(out)


def normalize_intensity(image_cxyz: np.ndarray, nonzero: bool, channel_wise: bool) -> np.ndarray:
    """``monai.transforms.NormalizeIntensity`` without subtrahend or divisor, float32 out.

    Per channel (``channel_wise``) or over the whole image: mean and population standard
    deviation of the non-zero voxels (``nonzero``; zeros stay 0 and an all-zero input is
    returned as it is) or of all; a standard deviation of 0 divides by 1. Statistics in
    float64, then ``(x - mean) / std`` in float32 as torch does with its float32 tensor.
    """
    out = np.array(image_cxyz, dtype=np.float32, copy=True)
    for part in out if channel_wise else [out]:
        mask = part != 0 if nonzero else np.ones(part.shape, dtype=bool)
        if not mask.any():
            continue
        values = part[mask].astype(np.float64)
        mean = np.float32(values.mean())
        std = np.float32(values.std())
        part[mask] = (part[mask] - mean) / (std if std != 0 else np.float32(1.0))
    return out


def predict_group(
    pipeline: MonaiPipeline,
    image_cxyz: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    affine: np.ndarray | None,
    forwards: Sequence[Forward],
    tta: bool = False,
) -> list[np.ndarray]:
    """Run each network of a MONAI bundle on a raw case as MONAI's inference config does.

    ``image_cxyz``: float32 raw intensities, ``pipeline.channels`` order, nibabel voxel
    order (what ``LoadImaged`` gives); ``spacing_xyz``: its voxel sizes in mm;
    ``affine``: its NIfTI affine (None: diagonal, MONAI's guess for a plain tensor).
    Each forward (one per member) maps float32 (1, C, *roi), network axis order, to
    float32 logits (1, K, *roi). ``tta`` is ignored: MONAI's bundle inference has none.

    Returns:
        One float32 (K, X, Y, Z) probability array per forward, on the input grid.

    Raises:
        ValueError: a wrong channel count or a network output of the wrong shape.
    """
    del tta
    if image_cxyz.ndim != 4 or image_cxyz.shape[0] != len(pipeline.channels):
        raise ValueError(
            f"the monai pipeline takes ({len(pipeline.channels)}, X, Y, Z) "
            f"({','.join(pipeline.channels)}), got {image_cxyz.shape}"
        )
    image = np.asarray(image_cxyz, dtype=np.float32)
    affine = np.diag([*map(float, spacing_xyz), 1.0]) if affine is None else affine
    affine, ornt, plan = np.asarray(affine, dtype=np.float64), None, None
    if pipeline.orientation is not None:
        ornt = orientation_transform(affine, pipeline.orientation)
        image = reorient(image, ornt)
        # Orientation's new affine: the old one times nibabel's inverse ornt affine.
        affine = affine @ nib.orientations.inv_ornt_aff(ornt, image_cxyz.shape[1:])
    oriented_shape = image.shape[1:]
    if pipeline.spacing is not None:
        plan = spacing_plan(affine, oriented_shape, pipeline.spacing)
        if plan is not None:
            image = resample_linear(image, plan[0], plan[1])
    image = normalize_intensity(image, **vars(pipeline.normalization))
    results = []
    for forward in forwards:
        probs = expit(sliding_window(image, forward, pipeline)).astype(np.float32)
        if plan is not None:
            probs = resample_linear(probs, oriented_shape, plan[2])
        if ornt is not None:
            probs = unorient(probs, ornt)
        results.append(np.ascontiguousarray(probs, dtype=np.float32))
    return results
