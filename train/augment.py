"""Training-time augmentation and crop sampling (numpy in, numpy out).

Every random number comes from the caller's ``np.random.Generator``, never from numpy's
global state or MONAI's own random transforms: parameters are drawn here and applied
with MONAI's deterministic :class:`~monai.transforms.AffineGrid` / ``Resample``, so a
seed reproduces a run. Each call draws the same count of numbers whichever transforms
fire, so changing a probability does not reshuffle the other draws.

Arrays: ``image_cdhw`` float32 (C, D, H, W), already z-scored on non-zero voxels;
``regions_rdhw`` bool or uint8 (R, D, H, W) region masks (WT, TC, ET). Augmented masks
are always returned as uint8 0/1, images as float32, never as views of the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import AffineGrid, Resample

from submission.predict.tumour_window import (
    as_triple,
    centred_start,
    tumour_window_start,
)

SPATIAL_AXES = (1, 2, 3)

#: Degree of the bias field's 3D Legendre polynomials (that of MONAI's ``RandBiasField``,
#: after Van Leemput et al., IEEE TMI 1999): a few smooth lobes across the patch.
BIAS_DEGREE = 3
#: The field's terms: Legendre index triples of total degree 1 to :data:`BIAS_DEGREE` (the
#: constant term is left out: a global factor is the intensity transform's).
_BIAS_TERMS = np.array(
    [
        (i, j, k)
        for i in range(BIAS_DEGREE + 1)
        for j in range(BIAS_DEGREE + 1 - i)
        for k in range(BIAS_DEGREE + 1 - i - j)
        if i + j + k > 0
    ]
).T
#: A channel's brain mean over its standard deviation before z-scoring, drawn per channel:
#: 1.7 (t2w) to 4.9 (FLAIR) measured on ``../shared/data/real`` and the synthetic cases.
_MEAN_OVER_STD = (1.5, 5.0)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings.

    Paper 004 section 3.4 is the only paper that augments: "a random axis mirror flip (for
    all 3 axes) with a probability 0.5. After this we copy the image, and apply the
    intensity and spatial transforms". It names the transforms but gives no magnitudes or
    probabilities: the intensity and affine magnitudes below are bratskit's choices
    (those of MONAI's BraTS tutorial, the framework paper 004 used: intensity scale and
    shift 0.1, always applied). Papers 002 and 003 state no augmentation; their recipes
    say what they add.

    Attributes:
        flip_p: probability of a mirror flip, drawn for each of the 3 spatial axes
            independently (004 section 3.4, as quoted).
        intensity_p: probability of the intensity transform (scale then shift).
        scale_intensity: each channel is multiplied by ``1 + U(-s, s)``.
        shift_intensity: ``U(-s, s)`` added per channel, in standard deviations since the
            data are z-scored; only inside the brain (non-zero voxels), see :func:`augment`.
        affine_p: probability of a rotation plus isotropic scaling; 0 (the default)
            skips MONAI entirely, which matters on CPU.
        rotate_deg: rotation angle per axis drawn from ``U(-r, r)`` degrees.
        scale_range: isotropic sampling-grid scale ``1 + U(-s, s)`` (MONAI convention:
            a factor above 1 shrinks the content).
        modality_dropout: probability that one of the task's optional modalities (MET
            2026: t2w) is zeroed in a training patch (:func:`drop_modality`), so the
            members learn to segment without it; the bundle then declares the modality
            optional and the runtime fills an absent one with the same zeros. No paper
            of ``../shared/seeds`` drops modalities: this serves the 2026 MET rule.
        bias_p: probability of a smooth multiplicative bias field per channel
            (:func:`_bias`). No paper of ``../shared/seeds`` uses one; MRI bias fields
            that survive into BraTS data make FLAIR-bright spots that look like oedema.
        bias_field: bound of the shared field's Legendre coefficients, drawn from
            ``U(-b, b)`` (the log-field; MONAI's ``RandBiasField`` default magnitude
            0.1); each channel adds its own from ``U(-b/2, b/2)``.
    """

    flip_p: float = 0.5
    intensity_p: float = 1.0
    scale_intensity: float = 0.1
    shift_intensity: float = 0.1
    affine_p: float = 0.0
    rotate_deg: float = 15.0
    scale_range: float = 0.1
    modality_dropout: float = 0.0
    bias_p: float = 0.0
    bias_field: float = 0.1

    def __post_init__(self) -> None:
        for name in ("flip_p", "intensity_p", "affine_p", "modality_dropout", "bias_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name}={value} is not a probability in [0, 1]")
        for name in (
            "scale_intensity",
            "shift_intensity",
            "rotate_deg",
            "scale_range",
            "bias_field",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name}={getattr(self, name)} must be >= 0")
        if self.scale_range >= 1:
            raise ValueError(f"AugmentConfig.scale_range={self.scale_range} must be below 1")


def random_crop_start(
    shape_dhw: Sequence[int], crop_dhw: int | Sequence[int], rng: np.random.Generator
) -> tuple[int, int, int]:
    """Uniformly random window start, per axis in ``[0, size - crop]``.

    Along an axis where the volume is smaller than the crop, the window is centred on the
    volume instead (start ``-((crop - size) // 2)``, zero or negative) and
    :func:`extract_window` pads it.
    """
    shape = as_triple(tuple(shape_dhw)[-3:], "shape_dhw", 1)
    crop = as_triple(crop_dhw, "crop_dhw", 1)
    drawn = rng.integers(0, np.maximum(shape - crop, 0) + 1)
    start = np.where(shape >= crop, drawn, centred_start(shape, crop))
    return tuple(int(s) for s in start)


def tumour_crop_start(
    mask: np.ndarray,
    crop_dhw: int | Sequence[int],
    jitter: int | Sequence[int],
    rng: np.random.Generator,
) -> tuple[int, int, int]:
    """Window start centred on the whole tumour, paper 002 section 2.3 (localisation).

    The window is centred on the centre of the whole-tumour bounding box, shifted by a
    uniform integer jitter in ``[-jitter, jitter]`` per axis, then clamped so it stays
    inside the volume along axes where the volume is at least as large as the crop; along
    smaller axes it is centred on the volume (and padded by :func:`extract_window`). An
    empty whole-tumour mask falls back to the volume centre (jitter still applies).

    Args:
        mask: whole-tumour mask (D, H, W), or region masks (R, D, H, W) whose union is
            used (the union of nested regions is WT).
        crop_dhw: window size, one int or 3.
        jitter: maximum shift in voxels, one int or 3, >= 0.
        rng: source of the jitter.
    """
    jit = as_triple(jitter, "jitter", 0)
    offset = rng.integers(-jit, jit + 1)
    return tumour_window_start(mask, crop_dhw, offset)


def apply_affine(
    image_cdhw: np.ndarray,
    regions_rdhw: np.ndarray,
    rotate_rad: Sequence[float],
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the volume centre and scale isotropically, with MONAI's deterministic grid.

    One sampling grid for both arrays: the image is resampled bilinearly, the masks with
    nearest neighbour; both are zero outside the source volume.

    Returns:
        float32 (C, D, H, W) image and uint8 0/1 (R, D, H, W) masks, same spatial shape.
    """
    affine_grid = AffineGrid(
        rotate_params=tuple(float(a) for a in rotate_rad),
        scale_params=(float(scale),) * 3,
        dtype=torch.float32,
    )
    grid, _ = affine_grid(spatial_size=image_cdhw.shape[1:])
    resample = Resample(dtype=np.float32)
    image = resample(
        torch.from_numpy(np.ascontiguousarray(image_cdhw, dtype=np.float32)),
        grid=grid,
        mode="bilinear",
        padding_mode="zeros",
    )
    regions = resample(
        torch.from_numpy(regions_rdhw.astype(np.float32)),
        grid=grid,
        mode="nearest",
        padding_mode="zeros",
    )
    return np.asarray(image, dtype=np.float32), (np.asarray(regions) > 0.5).astype(np.uint8)


def _check_pair(image_cdhw: np.ndarray, regions_rdhw: np.ndarray) -> None:
    if image_cdhw.ndim != 4 or regions_rdhw.ndim != 4:
        raise ValueError(
            f"expected image (C, D, H, W) and regions (R, D, H, W), "
            f"got shapes {image_cdhw.shape} and {regions_rdhw.shape}"
        )
    if image_cdhw.shape[1:] != regions_rdhw.shape[1:]:
        raise ValueError(
            f"image spatial shape {image_cdhw.shape[1:]} differs from regions "
            f"{regions_rdhw.shape[1:]}; crop or resample them together"
        )


def _flip(
    image_cdhw: np.ndarray, regions_rdhw: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same random mirror flips on image and masks (each axis with ``flip_p``)."""
    flips = rng.random(3) < cfg.flip_p
    axes = tuple(a for a, flip in zip(SPATIAL_AXES, flips) if flip)
    if not axes:
        return image_cdhw, regions_rdhw
    return (
        np.ascontiguousarray(np.flip(image_cdhw, axes)),
        np.ascontiguousarray(np.flip(regions_rdhw, axes)),
    )


def _spatial(
    image_cdhw: np.ndarray, regions_rdhw: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation and isotropic scaling with probability ``affine_p``."""
    fire = rng.random() < cfg.affine_p
    angles = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg, size=3))
    scale = 1.0 + rng.uniform(-cfg.scale_range, cfg.scale_range)
    if not fire:
        return image_cdhw, regions_rdhw
    return apply_affine(image_cdhw, regions_rdhw, angles, scale)


def _intensity(image_cdhw: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-channel random scale, then per-channel shift on brain voxels only.

    The brain is where any channel is non-zero, so the zero background of the
    z-score-on-non-zero preprocessing stays exactly zero.
    """
    channels = image_cdhw.shape[0]
    fire = rng.random() < cfg.intensity_p
    factors = 1.0 + rng.uniform(-cfg.scale_intensity, cfg.scale_intensity, size=channels)
    shifts = rng.uniform(-cfg.shift_intensity, cfg.shift_intensity, size=channels)
    if not fire:
        return image_cdhw
    brain_1dhw = np.any(image_cdhw != 0, axis=0, keepdims=True)
    out = image_cdhw * factors.astype(np.float32).reshape(-1, 1, 1, 1)
    np.add(out, shifts.astype(np.float32).reshape(-1, 1, 1, 1), out=out, where=brain_1dhw)
    return out


def _bias(image_cdhw: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative bias field per channel with probability ``bias_p``, acting on
    the intensities the z-scores came from.

    Each channel's log-field is a sum of 3D Legendre polynomials over the patch, the basis
    of MONAI's ``RandBiasField``: a field shared by the channels, coefficients from
    ``U(-bias_field, bias_field)``, plus the channel's own, from half that range. The
    modalities of a case come from one session and one receive coil, whose sensitivity
    they share; the sequences add smaller differences of their own. A shared field is also
    what tells a bias apart from oedema: it brightens T1 with FLAIR, oedema darkens T1.
    (MONAI draws its coefficients from ``[0, 0.1)``, which only brightens; a scanner's
    field has no sign.) MONAI multiplies the array it gets, but these arrays are z-scores:
    a field ``b`` on the raw intensity ``mu + sigma z`` gives, z-scored with the same
    statistics, ``z' = (z + k) b - k`` with ``k = mu / sigma``, so a 20 % brighter patch of
    FLAIR rises by about one standard deviation, like oedema. ``k`` is drawn per channel
    from :data:`_MEAN_OVER_STD`. The background stays zero.
    """
    channels = image_cdhw.shape[0]
    fire = rng.random() < cfg.bias_p
    terms = _BIAS_TERMS.shape[1]
    shared = rng.uniform(-cfg.bias_field, cfg.bias_field, size=terms)
    own = rng.uniform(-cfg.bias_field / 2, cfg.bias_field / 2, size=(channels, terms))
    ratios = rng.uniform(*_MEAN_OVER_STD, size=channels)
    if not fire:
        return image_cdhw
    coords = [np.linspace(-1.0, 1.0, n) for n in image_cdhw.shape[1:]]
    brain_dhw = np.any(image_cdhw != 0, axis=0)
    out = np.array(image_cdhw, dtype=np.float32, copy=True)
    for c in range(channels):
        matrix = np.zeros((BIAS_DEGREE + 1,) * 3)
        matrix[tuple(_BIAS_TERMS)] = shared + own[c]
        field = np.exp(np.polynomial.legendre.leggrid3d(*coords, matrix)).astype(np.float32)
        k = np.float32(ratios[c])
        np.copyto(out[c], (out[c] + k) * field - k, where=brain_dhw)
    return out


def _spatial_and_intensity(
    image_cdhw: np.ndarray, regions_rdhw: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    image_cdhw, regions_rdhw = _spatial(image_cdhw, regions_rdhw, cfg, rng)
    return _bias(_intensity(image_cdhw, cfg, rng), cfg, rng), regions_rdhw


def augment(
    image_cdhw: np.ndarray,
    regions_rdhw: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips, optional rotation/scaling, intensity scale and shift, then an optional
    bias field.

    Paper 004 section 3.4 (the bias field is bratskit's, :func:`_bias`). Flips and the
    affine transform act identically on image and masks; the intensity shift and the bias
    field only touch voxels non-zero in some channel (after the spatial transforms), so the
    background stays zero.

    Returns:
        float32 (C, D, H, W) image and uint8 0/1 (R, D, H, W) masks, new arrays.
    """
    _check_pair(image_cdhw, regions_rdhw)
    image = np.asarray(image_cdhw, dtype=np.float32)
    regions = np.asarray(regions_rdhw, dtype=np.uint8)
    image, regions = _flip(image, regions, cfg, rng)
    image, regions = _spatial_and_intensity(image, regions, cfg, rng)
    if np.may_share_memory(image, image_cdhw):
        image = image.copy()
    if np.may_share_memory(regions, regions_rdhw):
        regions = regions.copy()
    return image, regions


def two_views(
    image_cdhw: np.ndarray,
    regions_rdhw: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Two independently perturbed copies of one case, paper 004 sections 3.1 and 3.4.

    One shared random flip, then each copy gets its own spatial (``affine_p``) and
    intensity transforms, forming the batch of 2 the Barlow-Twins loss compares.

    Returns:
        float32 (2, C, D, H, W) images and uint8 (2, R, D, H, W) masks.
    """
    _check_pair(image_cdhw, regions_rdhw)
    image = np.asarray(image_cdhw, dtype=np.float32)
    regions = np.asarray(regions_rdhw, dtype=np.uint8)
    image, regions = _flip(image, regions, cfg, rng)
    views = [_spatial_and_intensity(image, regions, cfg, rng) for _ in range(2)]
    return np.stack([v[0] for v in views]), np.stack([v[1] for v in views])


def drop_modality(
    image_cdhw: np.ndarray, optional: Sequence[int], rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Modality dropout: with probability ``rate``, one of the ``optional`` channels
    (chosen uniformly) becomes zeros, what the runtime feeds for an absent modality (the
    z-scored image of a missing file). Draws two numbers whatever happens.

    Returns:
        float32 (C, D, H, W), a new array when a channel was dropped, else ``image_cdhw``.
    """
    fire, pick = rng.random(), rng.random()
    if not optional or fire >= rate:
        return image_cdhw
    out = np.array(image_cdhw, dtype=np.float32, copy=True)
    out[optional[int(pick * len(optional))]] = 0.0
    return out
