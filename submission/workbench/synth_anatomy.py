"""Healthy anatomy and tumour geometry of the synthetic cases of :mod:`submission.workbench.synth`.

Arrays keep nibabel's voxel axis order (:mod:`submission.io.nifti`); lengths are in voxels.
Millimetre figures are converted with :func:`length_scale`, so a smaller volume holds a
proportionally smaller brain and tumour (1 voxel = 1 mm at the BraTS shape 240 x 240 x 155).
Only region masks are built here; label integers are assembled in :mod:`submission.brats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)

#: What the enhancing tumour of a case looks like: a full rim around the necrosis, none at
#: all (non-enhancing tumour core), or a tiny spot of a few dozen to a few hundred voxels.
ET_KINDS: tuple[str, ...] = ("normal", "none", "tiny")
#: Tiny ET size range in voxels at the BraTS shape (scaled by volume at other shapes).
TINY_ET_VOXELS: tuple[int, int] = (30, 300)

# Brain centre and semi-axes as fractions of the volume, fitted to skull-stripped BraTS brains
# (about 145 x 187 x 132 voxels, 1.6 million voxels).
_BRAIN_CENTRE = np.array([0.49, 0.51, 0.48])
_BRAIN_AXES = np.array([0.295, 0.385, 0.40])
_WOBBLE = 0.05  # relative radial deformation of the brain per unit of a smooth field
_WOBBLE_CLIP = 2.2

# Oedema contrast weight at the WT border (it reaches 1 inwards over a few millimetres plus a
# share of the oedema's width) and the amplitude of its texture: a fuzzy, uneven border that
# a threshold cannot follow but spatial context can.
_EDEMA_EDGE = 0.4
_EDEMA_FADE_MM = 3.0
_EDEMA_TEXTURE = 0.25
_RIM_GAP = -1.3  # the enhancing rim breaks where a unit smooth field falls below this

Box = tuple[slice, slice, slice]


def length_scale(shape: tuple[int, ...]) -> float:
    """Voxels per template millimetre: 1.0 at 240 x 240 x 155, the cube root of the volume ratio."""
    return float(np.cbrt(np.prod(shape, dtype=float) / np.prod(BRATS_SHAPE, dtype=float)))


def _bspline_weights(n_out: int, cell: float) -> np.ndarray:
    """float32 (n_coef, n_out) cubic B-spline weights from coarse coefficients to voxels."""
    n_coef = int(np.ceil((n_out - 1) / cell)) + 4
    u = np.arange(n_out) / cell + 1.5
    t = np.abs(np.arange(n_coef)[:, None] - u[None, :])
    weights = np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))
    return weights.astype(np.float32)


# Mean over positions of the squared B-spline weights of one axis, the integral of B(t)^2 dt:
# it turns unit-variance coefficients into a unit-variance field without a pass over the field.
_BSPLINE_POWER = 151 / 315


def smooth_fields(
    rng: np.random.Generator, shape: tuple[int, ...], cell: float, count: int = 1
) -> np.ndarray:
    """Smooth Gaussian random fields: white noise on a coarse grid, cubic B-spline upsampled.

    The upsampling is separable (three small matrix products), far cheaper than filtering at
    full resolution.

    Args:
        rng: random source.
        shape: spatial shape (three sides) of each field.
        cell: coarse grid spacing in voxels (about the correlation length); at least 1.
        count: number of independent fields.

    Returns:
        float32 (count, *shape), each field of mean 0 and variance 1 (in expectation).
    """
    mats = [_bspline_weights(n, max(float(cell), 1.0)) for n in shape]
    gain = np.float32(_BSPLINE_POWER ** (-len(shape) / 2))
    field = rng.standard_normal((count, *(m.shape[0] for m in mats)), dtype=np.float32) * gain
    # Contracting the first spatial axis appends the new one last: after three steps the
    # axes are back in order and the result is contiguous.
    for mat in mats:
        field = np.tensordot(field, mat, axes=([1], [0]))
    return field


def box_coords(box: Box) -> list[np.ndarray]:
    """Open-grid float32 voxel coordinates of ``box``, broadcastable to its shape."""
    axes = [np.arange(s.start, s.stop, dtype=np.float32) for s in box]
    return [x.reshape([-1 if a == i else 1 for a in range(3)]) for i, x in enumerate(axes)]


def _ellipsoid_radius(coords: list[np.ndarray], centre, semi_axes) -> np.ndarray:
    """float32 normalised ellipsoidal radius: 1 on the surface of the axis-aligned ellipsoid."""
    squares = sum(
        ((x - float(c)) / float(a)) ** 2 for x, c, a in zip(coords, centre, semi_axes, strict=True)
    )
    return np.sqrt(squares)


def _shape_of(box: Box) -> tuple[int, int, int]:
    return tuple(s.stop - s.start for s in box)


@dataclass(frozen=True)
class Anatomy:
    """A healthy skull-stripped brain on its bounding box.

    Attributes:
        box: slices of the full volume holding the brain; one voxel of margin stays empty.
        brain: bool (d, h, w) brain mask on the box.
        tissue: float32 (3, d, h, w) white matter, grey matter and CSF fractions on the box,
            summing to 1 inside the brain and 0 outside.
        rho: float32 (d, h, w) normalised brain radius: 0 at the centre, 1 on the surface.
        scale: voxels per template millimetre (:func:`length_scale`).
    """

    box: Box
    brain: np.ndarray
    tissue: np.ndarray
    rho: np.ndarray
    scale: float


def make_anatomy(rng: np.random.Generator, shape: tuple[int, int, int]) -> Anatomy:
    """A smoothly deformed ellipsoidal brain with cortex, sulci, ventricles and deep grey matter."""
    scale = length_scale(shape)
    size = np.asarray(shape, dtype=float)
    centre = _BRAIN_CENTRE * size
    semi_axes = _BRAIN_AXES * size * rng.uniform(0.96, 1.04, 3)
    reach = semi_axes / (1 - _WOBBLE * _WOBBLE_CLIP) + 1
    lo = np.maximum(np.floor(centre - reach).astype(int), 1)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, np.asarray(shape) - 1)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    coords = box_coords(box)
    wobble = np.clip(smooth_fields(rng, _shape_of(box), 40 * scale)[0], -_WOBBLE_CLIP, _WOBBLE_CLIP)
    rho = _ellipsoid_radius(coords, centre, semi_axes) * (1 + _WOBBLE * wobble)
    brain = rho < 1
    tissue = _tissue_fractions(rng, coords, rho, centre, semi_axes, scale)
    tissue *= brain
    return Anatomy(box, brain, tissue, rho, scale)


def _paired_blobs(coords, centre, semi_axes, offset, size, wobble, width) -> np.ndarray:
    """float32 fraction of two mirror-image ellipsoids left and right of the midline."""
    out = None
    for side in (-1.0, 1.0):
        where = centre + np.array([side, 1.0, 1.0]) * np.asarray(offset) * semi_axes
        radius = _ellipsoid_radius(coords, where, np.asarray(size) * semi_axes)
        radius *= 1 + 0.15 * wobble
        blob = expit((1 - radius) / width)
        out = blob if out is None else np.maximum(out, blob)
    return out


def _tissue_fractions(rng, coords, rho, centre, semi_axes, scale) -> np.ndarray:
    """float32 (3, ...) WM, GM, CSF fractions from smooth fields (soft partial volume)."""
    gyri = smooth_fields(rng, rho.shape, 7 * scale)[0]
    sulci = smooth_fields(rng, rho.shape, 4 * scale)[0]
    cortex = expit((rho - 0.86 - 0.045 * gyri) / 0.012)
    outer_csf = expit((rho - 0.975) / 0.008)
    sulcal_csf = expit((sulci - 1.0) / 0.2) * expit((rho - 0.86) / 0.015)
    vent_size = np.array([0.09, 0.36, 0.16]) * rng.uniform(0.7, 1.3)
    blobs = (coords, centre, semi_axes)
    ventricles = _paired_blobs(*blobs, (0.13, -0.05, 0.12), vent_size, gyri, 0.1)
    deep_gm = _paired_blobs(*blobs, (0.27, 0.02, 0.0), (0.1, 0.18, 0.14), gyri, 0.15)
    csf = np.maximum(np.maximum(outer_csf, sulcal_csf), ventricles)
    gm = np.maximum(cortex, deep_gm) * (1 - csf)
    return np.stack([1 - csf - gm, gm, csf]).astype(np.float32)


@dataclass(frozen=True)
class Tumour:
    """A tumour on a sub-box of :attr:`Anatomy.box`.

    Attributes:
        box: slices relative to the anatomy box.
        regions: bool (3, d, h, w) WT, TC, ET: nested (ET in TC in WT) and inside the brain.
        core: float32 (d, h, w) tumour-core fraction (partial volume at the TC border).
        enhancing: float32 (d, h, w) enhancing fraction, never above ``core``.
        edema: float32 (d, h, w) weight 0..1 of the oedema contrast; it fades towards the WT
            border and spares CSF.
        necrotic: whether the non-enhancing core is necrosis (T2-bright, FLAIR-grey, the case
            with an enhancing rim) or solid non-enhancing tumour (T2- and FLAIR-bright).
    """

    box: Box
    regions: np.ndarray
    core: np.ndarray
    enhancing: np.ndarray
    edema: np.ndarray
    necrotic: bool


def make_tumour(rng: np.random.Generator, anatomy: Anatomy, et_kind: str = "normal") -> Tumour:
    """A tumour core (necrosis and enhancing rim, per ``et_kind``) and irregular oedema around it.

    Sizes are drawn in template millimetres: core radius 7-18, rim 2.5-5, oedema reaching 4-16
    beyond the core, further in white matter than in grey matter, never into CSF.
    """
    if et_kind not in ET_KINDS:
        raise ValueError(f"unknown et_kind {et_kind!r}; choose one of {', '.join(ET_KINDS)}")
    s = anatomy.scale
    centre = _pick_centre(rng, anatomy)
    radius = max(rng.uniform(7.0, 18.0) * s, 3.0)
    semi_axes = radius * rng.uniform(0.8, 1.25, 3)
    spread = max(rng.uniform(4.0, 16.0) * s, 2.0)
    # Fields are clipped so this reach bounds the oedema: the box never truncates it.
    reach = semi_axes.max() / radius * (1.36 * radius + 2.35 * spread + 4.5 * s) + 2
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, anatomy.brain.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shape = _shape_of(box)
    rad = rotated_radius(rng, box_coords(box), centre, semi_axes) * radius

    f_core, f_ncr, f_rim, f_tex = np.clip(smooth_fields(rng, shape, 5 * s, 4), -3, 3)
    f_wide = np.clip(smooth_fields(rng, shape, 10 * s)[0], -2.5, 2.5)
    f_fine = np.clip(smooth_fields(rng, shape, 3 * s)[0], -3, 3)
    outline = radius * (1 + 0.12 * f_core)
    d_core = outline - rad  # about the signed distance to the TC border in voxels, + inside
    d_necrosis = (outline - max(rng.uniform(2.5, 5.0) * s, 1.0)) * (1 + 0.08 * f_ncr) - rad
    brain, wm, csf = anatomy.brain[box], anatomy.tissue[0][box], anatomy.tissue[2][box]
    extent = spread * (0.35 + 0.9 * wm) * (1 + 0.35 * f_wide) + 1.5 * s * f_fine
    d_edema = outline + extent - rad

    tc = (d_core > 0) & brain
    et = _enhancing_mask(rng, tc & (d_necrosis <= 0), et_kind, f_rim, s)
    wt = (tc | ((d_edema > 0) & (csf < 0.5))) & brain
    core = expit(d_core / 0.6)
    if et_kind == "normal":
        enhancing = core * expit(-d_necrosis / 0.6) * expit((f_rim - _RIM_GAP) / 0.15)
    else:
        enhancing = core * et
    fade = np.clip(d_edema / (_EDEMA_FADE_MM * s + 0.6 * spread), 0.0, 1.0)
    fade = _EDEMA_EDGE + (1 - _EDEMA_EDGE) * fade
    edema = expit(d_edema / max(s, 0.5)) * fade * (1 + _EDEMA_TEXTURE * f_tex) * (1 - csf)
    return Tumour(
        box=box,
        regions=np.stack([wt, tc, et]),
        core=core.astype(np.float32),
        enhancing=enhancing.astype(np.float32),
        edema=(np.clip(edema, 0.0, 1.0) * brain).astype(np.float32),
        necrotic=et_kind == "normal",
    )


def _pick_centre(rng: np.random.Generator, anatomy: Anatomy) -> np.ndarray:
    """A random deep (rho < 0.55), non-CSF voxel of the anatomy box, as float64 (3,)."""
    candidates = np.flatnonzero((anatomy.rho < 0.55) & (anatomy.tissue[2] < 0.3) & anatomy.brain)
    pick = candidates[rng.integers(candidates.size)]
    return np.array(np.unravel_index(pick, anatomy.brain.shape), dtype=float)


def rotated_radius(rng, coords, centre, semi_axes) -> np.ndarray:
    """float32 normalised radius of a randomly rotated ellipsoid (1 on its surface)."""
    rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    offsets = [x - float(c) for x, c in zip(coords, centre, strict=True)]
    along = [
        sum(float(rotation[j, i] / semi_axes[i]) * offsets[j] for j in range(3)) for i in range(3)
    ]
    return np.sqrt(sum(a**2 for a in along))


def _enhancing_mask(rng, rim, et_kind, f_rim, scale) -> np.ndarray:
    """bool ET mask inside ``rim`` (the tumour core outside the necrosis) for ``et_kind``."""
    if et_kind == "none" or not rim.any():
        return np.zeros_like(rim)
    if et_kind == "normal":
        return rim & (f_rim > _RIM_GAP)
    # Tiny: the k rim voxels nearest a random rim voxel, a compact spot of known size.
    points = np.argwhere(rim)
    low, high = TINY_ET_VOXELS
    count = int(np.clip(round(rng.uniform(low, high) * scale**3), 3, len(points)))
    anchor = points[rng.integers(len(points))]
    nearest = np.argsort(((points - anchor) ** 2).sum(axis=1), kind="stable")[:count]
    et = np.zeros_like(rim)
    et[tuple(points[nearest].T)] = True
    return et
