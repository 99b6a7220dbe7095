"""Geometry of the task pathologies of the synthetic cases of
:mod:`submission.workbench.synth_tasks`.

Each builder returns a :class:`Lesion`: region masks by region name (the scheme's WT, TC,
ET and RC, CC or GTV; :mod:`submission.brats` turns them into labels) and the tissue layers
:func:`submission.workbench.synth_render.layered_intensity` paints. Arrays span the whole
volume in nibabel voxel order; sizes are drawn in template millimetres and scaled by
:attr:`Head.scale`, as in :mod:`submission.workbench.synth_anatomy`. Only region masks are
built here, never label integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.special import expit

from submission.workbench.synth_anatomy import (
    Anatomy,
    Tumour,
    box_coords,
    rotated_radius,
    smooth_fields,
)

_EDGE = 0.6  # partial-volume width of a lesion border, voxels
_OUTSIDE = 9.0  # normalised brain radius given to voxels outside the anatomy box


@dataclass(frozen=True)
class Head:
    """An :class:`~submission.workbench.synth_anatomy.Anatomy` on the whole volume.

    Attributes:
        brain: bool (D, H, W) brain mask.
        tissue: float32 (3, D, H, W) white matter, grey matter and CSF fractions.
        rho: float32 (D, H, W) normalised brain radius (1 on the surface, large outside).
        scale: voxels per template millimetre.
    """

    brain: np.ndarray
    tissue: np.ndarray
    rho: np.ndarray
    scale: float

    @property
    def coords(self) -> list[np.ndarray]:
        """Open-grid float32 voxel coordinates of the volume."""
        return box_coords(tuple(slice(0, n) for n in self.brain.shape))


@dataclass(frozen=True)
class Lesion:
    """A pathology on the whole volume.

    Attributes:
        regions: region name -> bool (D, H, W) mask; a scheme region absent here is empty.
        layers: (tissue name, float32 weight 0..1) pairs painted in order over healthy tissue.
        foreground: bool (D, H, W) voxels with signal: the brain, plus any extra-axial mass.
    """

    regions: dict[str, np.ndarray]
    layers: tuple[tuple[str, np.ndarray], ...]
    foreground: np.ndarray


def embed(anatomy: Anatomy, shape: tuple[int, int, int]) -> Head:
    """The anatomy's box arrays placed in a volume of ``shape``."""
    brain = np.zeros(shape, dtype=bool)
    tissue = np.zeros((3, *shape), dtype=np.float32)
    rho = np.full(shape, _OUTSIDE, dtype=np.float32)
    brain[anatomy.box] = anatomy.brain
    tissue[(slice(None), *anatomy.box)] = anatomy.tissue
    rho[anatomy.box] = anatomy.rho
    return Head(brain, tissue, rho, anatomy.scale)


def glioma(anatomy: Anatomy, tumour: Tumour, shape: tuple[int, int, int]) -> Lesion:
    """The glioma of :func:`~submission.workbench.synth_anatomy.make_tumour` as a Lesion."""
    box = tuple(
        slice(a.start + t.start, a.start + t.stop)
        for a, t in zip(anatomy.box, tumour.box, strict=True)
    )

    def full(part: np.ndarray) -> np.ndarray:
        out = np.zeros(shape, dtype=part.dtype)
        out[box] = part
        return out

    wt, tc, et = (full(r) for r in tumour.regions)
    core = "necrosis" if tumour.necrotic else "solid"
    layers = (
        ("edema", full(tumour.edema)),
        (core, full(tumour.core)),
        ("enhancing", full(tumour.enhancing)),
    )
    brain = np.zeros(shape, dtype=bool)
    brain[anatomy.box] = anatomy.brain
    return Lesion({"WT": wt, "TC": tc, "ET": et}, layers, brain)


def _uniform_mm(rng: np.random.Generator, low: float, high: float, scale: float, least: float):
    """A length drawn in template millimetres, in voxels, at least ``least`` voxels."""
    return max(rng.uniform(low, high) * scale, least)


def _pick(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """A random voxel of ``allowed`` as float64 (3,)."""
    candidates = np.flatnonzero(allowed)
    pick = candidates[rng.integers(candidates.size)]
    return np.array(np.unravel_index(pick, allowed.shape), dtype=float)


def _direction(rng: np.random.Generator) -> np.ndarray:
    """A random unit vector."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _blob(rng, head: Head, centre, radius: float, aspect=0.2, rough=0.12, cell=5.0):
    """float32 (D, H, W) about the signed distance in voxels to the surface of a randomly
    rotated, smoothly deformed ellipsoid of mean radius ``radius``: positive inside."""
    semi_axes = radius * rng.uniform(1 - aspect, 1 + aspect, 3)
    rad = rotated_radius(rng, head.coords, centre, semi_axes) * radius
    field = np.clip(smooth_fields(rng, head.brain.shape, cell * head.scale)[0], -3, 3)
    return (radius * (1 + rough * field) - rad).astype(np.float32)


def _edema(rng, head: Head, d_inner: np.ndarray, spread: float):
    """Oedema beyond the surface where ``d_inner`` (signed distance, + inside) is 0, as in
    :func:`~submission.workbench.synth_anatomy.make_tumour`: further in white matter, never
    into CSF, fading towards its border. Returns its bool mask and float32 contrast weight."""
    s = head.scale
    f_wide = np.clip(smooth_fields(rng, head.brain.shape, 10 * s)[0], -2.5, 2.5)
    f_fine, f_tex = np.clip(smooth_fields(rng, head.brain.shape, 3 * s, 2), -3, 3)
    wm, csf = head.tissue[0], head.tissue[2]
    d_edema = d_inner + spread * (0.35 + 0.9 * wm) * (1 + 0.35 * f_wide) + 1.5 * s * f_fine
    mask = (d_edema > 0) & (csf < 0.5) & head.brain
    fade = 0.4 + 0.6 * np.clip(d_edema / (3 * s + 0.6 * spread), 0.0, 1.0)
    weight = expit(d_edema / max(s, 0.5)) * fade * (1 + 0.25 * f_tex) * (1 - csf)
    return mask, (np.clip(weight, 0.0, 1.0) * head.brain).astype(np.float32)


def _deep(head: Head, limit: float) -> np.ndarray:
    """Brain voxels, mostly not CSF, with normalised radius below ``limit``."""
    return (head.rho < limit) & (head.tissue[2] < 0.3) & head.brain


def cavity(rng: np.random.Generator, head: Head) -> Lesion:
    """A post-operative glioma: a fluid-filled resection cavity (radius 13-22 mm), residual
    tumour in patches along its wall (enhancing nodules and non-enhancing tumour, 3-7 mm
    thick) and oedema 4-14 mm beyond. RC is the cavity, outside TC and WT."""
    s, brain = head.scale, head.brain
    centre = _pick(rng, _deep(head, 0.55))
    d_cavity = _blob(rng, head, centre, _uniform_mm(rng, 13, 22, s, 5.0), rough=0.1)
    hole = (d_cavity > 0) & brain
    f_patch, f_enh, f_thick = np.clip(smooth_fields(rng, brain.shape, 6 * s, 3), -3, 3)
    thick = _uniform_mm(rng, 3.0, 7.0, s, 2.0) * (1 + 0.3 * f_thick)
    shell = (d_cavity <= 0) & (-d_cavity < thick) & brain & (head.tissue[2] < 0.5)
    residual = shell & (f_patch > rng.uniform(-0.8, 0.3))
    et = residual & (f_enh > rng.uniform(-1.0, 0.6))
    edema, weight = _edema(rng, head, d_cavity + thick, _uniform_mm(rng, 4, 14, s, 2.0))
    edema &= ~hole & ~residual
    layers = (
        ("edema", weight),
        ("fluid", (expit(d_cavity / _EDGE) * brain).astype(np.float32)),
        ("solid", (residual & ~et).astype(np.float32)),
        ("enhancing", et.astype(np.float32)),
    )
    regions = {"WT": residual | edema, "TC": residual, "ET": et, "RC": hole}
    return Lesion(regions, layers, brain)


def cystic_tumour(rng: np.random.Generator, head: Head, cyst: bool = True) -> Lesion:
    """A paediatric tumour: a solid core (radius 13-24 mm, T2-bright, enhancing in patches or,
    one case in six, not at all) holding one or two fluid cysts off its centre with a tumour
    wall around them (when ``cyst``), and a little oedema (2-9 mm). CC is inside TC."""
    s, brain = head.scale, head.brain
    centre = _pick(rng, _deep(head, 0.5))
    radius = _uniform_mm(rng, 13, 24, s, 5.0)
    d_core = _blob(rng, head, centre, radius)
    core = (d_core > 0) & brain
    wall = _uniform_mm(rng, 1.0, 2.0, s, 1.0)
    cysts, cyst_weight = np.zeros_like(core), np.zeros(core.shape, dtype=np.float32)
    for _ in range(2 if rng.uniform() < 0.3 else 1):
        where = centre + _direction(rng) * rng.uniform(0.05, 0.25) * radius
        d_cyst = _blob(rng, head, where, rng.uniform(0.6, 0.85) * radius, rough=0.06)
        inside = np.minimum(d_cyst, d_core - wall)
        if cyst:
            cysts |= (inside > 0) & brain
            cyst_weight = np.maximum(cyst_weight, expit(inside / _EDGE) * brain)
    f_enh = np.clip(smooth_fields(rng, brain.shape, 8 * s)[0], -3, 3)
    enhances = rng.uniform() >= 1 / 6
    et = core & ~cysts & (f_enh > rng.uniform(0.0, 1.0)) & enhances
    edema, weight = _edema(rng, head, d_core, _uniform_mm(rng, 2, 9, s, 1.5))
    layers = (
        ("edema", weight),
        ("solid", (expit(d_core / _EDGE) * brain).astype(np.float32)),
        ("cyst", cyst_weight),
        ("enhancing", et.astype(np.float32)),
    )
    regions = {"WT": core | edema, "TC": core, "ET": et, "CC": cysts}
    return Lesion(regions, layers, brain)


def metastases(rng: np.random.Generator, head: Head) -> Lesion:
    """Two to five metastases apart from each other near the grey-white junction: enhancing
    lesions of radius 5-11 mm, half of those above 7 mm (and 3.5 voxels) with a necrotic
    centre, each with its own oedema (5-16 mm, often wider than the lesion). No resection
    cavity."""
    s, brain = head.scale, head.brain
    allowed = (head.rho > 0.3) & (head.rho < 0.85) & (head.tissue[2] < 0.3) & brain
    lesions = np.zeros(brain.shape, dtype=bool)
    necrosis, edema = np.zeros_like(lesions), np.zeros_like(lesions)
    weights = {k: np.zeros(brain.shape, dtype=np.float32) for k in ("edema", "ET", "NCR")}
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(int(rng.integers(2, 6))):
        radius = _uniform_mm(rng, 5, 11, s, 2.0)
        for _try in range(30):  # keep lesions apart: each its own connected component
            centre = _pick(rng, allowed)
            gaps = [np.linalg.norm(centre - c) - 1.3 * (radius + r) - 6 * s for c, r in placed]
            if min(gaps, default=1.0) > 0:
                break
        placed.append((centre, radius))
        d_lesion = _blob(rng, head, centre, radius, aspect=0.15, rough=0.08, cell=3.0)
        d_necrosis = d_lesion - _uniform_mm(rng, 2.0, 3.5, s, 1.5)
        # A rim thinner than this breaks into pieces on a coarse grid: solid below it.
        necrotic = (rng.uniform() < 0.5) and radius > max(7 * s, 3.5)
        lesions |= (d_lesion > 0) & brain
        necrosis |= (d_necrosis > 0) & brain & necrotic
        mask, weight = _edema(rng, head, d_lesion, _uniform_mm(rng, 5, 16, s, 2.0))
        edema |= mask
        weights["edema"] = np.maximum(weights["edema"], weight)
        weights["ET"] = np.maximum(weights["ET"], expit(d_lesion / _EDGE) * brain)
        if necrotic:
            weights["NCR"] = np.maximum(weights["NCR"], expit(d_necrosis / _EDGE) * brain)
    layers = (
        ("edema", weights["edema"]),
        ("enhancing", weights["ET"]),
        ("necrosis", weights["NCR"]),
    )
    regions = {"WT": lesions | edema, "TC": lesions, "ET": lesions & ~necrosis}
    return Lesion(regions, layers, brain)


def meningioma(rng: np.random.Generator, head: Head) -> Lesion:
    """An extra-axial meningioma: a smooth, homogeneously enhancing mass (radius 8-20 mm)
    based on the brain surface, partly outside the brain (the image keeps it), indenting
    the cortex, with oedema in the brain beside it (2-12 mm) and, one case in three, a
    non-enhancing necrotic part. TC and GTV are the mass, ET the mass less that part."""
    s, brain = head.scale, head.brain
    radius = _uniform_mm(rng, 8, 20, s, 3.5)
    margin = int(np.ceil(1.6 * radius)) + 2
    inner = np.zeros_like(brain)
    inner[tuple(slice(margin, n - margin) for n in brain.shape)] = True
    surface = (head.rho > 0.9) & (head.rho < 0.97) & brain
    base = _pick(rng, surface & inner if (surface & inner).any() else surface)
    outward = base - np.argwhere(brain).mean(axis=0)
    centre = base + outward / np.linalg.norm(outward) * rng.uniform(0.0, 0.5) * radius
    d_mass = _blob(rng, head, centre, radius, aspect=0.15, rough=0.06, cell=8.0)
    mass = d_mass > 0
    where = centre + _direction(rng) * rng.uniform(0.0, 0.3) * radius
    d_part = _blob(rng, head, where, rng.uniform(0.25, 0.45) * radius, rough=0.1)
    d_part = np.minimum(d_part, d_mass - max(2 * s, 1.0))
    part = (d_part > 0) & (rng.uniform() < 1 / 3)
    edema, weight = _edema(rng, head, d_mass, _uniform_mm(rng, 2, 12, s, 1.5))
    edema &= ~mass
    layers = (
        ("edema", weight),
        ("meningioma", expit(d_mass / _EDGE).astype(np.float32)),
        ("necrosis", part.astype(np.float32)),
    )
    regions = {"WT": mass | edema, "TC": mass, "ET": mass & ~part, "GTV": mass}
    return Lesion(regions, layers, brain | mass)


def skull(
    rng: np.random.Generator, head: Head, foreground: np.ndarray
) -> tuple[tuple[tuple[str, np.ndarray], ...], np.ndarray]:
    """The head around ``foreground`` of an image that is not skull-stripped: a film of CSF
    (1.5-3 mm), the skull (5-8 mm, dark) and the scalp (4-7 mm, bright on T1), their
    thickness varying smoothly; cut where the volume ends, as at the neck.

    Returns:
        The layers to paint first, and the new foreground (head mask).
    """
    s = head.scale
    distance = distance_transform_edt(~foreground).astype(np.float32)
    f_bone, f_scalp = np.clip(smooth_fields(rng, foreground.shape, 20 * s, 2), -2.5, 2.5)
    csf_edge = _uniform_mm(rng, 1.5, 3.0, s, 1.0)
    bone_edge = csf_edge + _uniform_mm(rng, 5, 8, s, 1.5) * (1 + 0.15 * f_bone)
    scalp_edge = bone_edge + _uniform_mm(rng, 4, 7, s, 1.5) * (1 + 0.2 * f_scalp)
    outside = distance > 0

    def band(lo, hi) -> np.ndarray:
        return (expit((distance - lo) / 0.5) * expit((hi - distance) / 0.5) * outside).astype(
            np.float32
        )

    layers = (
        ("csf", band(0.0, csf_edge)),
        ("bone", band(csf_edge, bone_edge)),
        ("scalp", band(bone_edge, scalp_edge)),
    )
    return layers, foreground | (distance < scalp_edge)
