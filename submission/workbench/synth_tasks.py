"""What the synthetic cases of each BraTS task look like (``bratskit synth --task T``).

Every task's case is a synthetic brain (:mod:`submission.workbench.synth_anatomy`) in the
task's case-id convention, file naming, modalities and label scheme
(:mod:`submission.tasks`), with the task's pathology (:mod:`submission.workbench.synth_lesions`,
contrasts in :mod:`submission.workbench.synth_render`):

- ``gli-2021``, ``gli-2023``, ``ssa``, ``goat``: the adult glioma of
  :func:`submission.workbench.synth.synthesize_case` (necrosis in an enhancing rim, or
  solid non-enhancing tumour, and oedema).
- ``gli-post``: post-operative glioma, ids ``BraTS-GLI-NNNNN-100``: a resection cavity (RC)
  of fluid, dark on t1n and t1c, bright on t2w and grey on t2f (above CSF, far below
  oedema), radius 11-20 mm; residual tumour in patches along its wall (enhancing nodules
  and non-enhancing tumour) and oedema (SNFH) around. RC lies outside TC and WT. One case
  in six (:func:`is_pre_treatment`) is pre-treatment, ``-000``: the glioma, no cavity.
- ``ped``: a solid, T2-bright tumour holding one or two cysts (CC: dark t1n and t1c,
  brighter than the tumour on t2w, grey on t2f, never enhancing) with a tumour wall,
  patchy enhancement (none in one case in six), a little oedema (ED). One case in six
  (:data:`PED_CYST`) has no cyst. Not skull-stripped by default (CONTRACT.md section 7:
  2026 paediatric images are not): scalp, skull and CSF around the brain.
- ``met``: two to five separate metastases (enhancing, some with a necrotic centre), each
  with oedema; no RC. t2w is absent (not written) from a deterministic share of the cases
  (:func:`is_absent`, rate :data:`MET_T2W_ABSENT` by default).
- ``men``: an extra-axial meningioma on the brain surface: a homogeneous, strongly
  enhancing mass (ET; a necrotic part, NETC, in one case in three) and oedema beside it.
- ``men-rt``: the meningioma on t1c alone, its gross tumour volume (GTV), on an
  anisotropic native grid (:data:`MEN_RT_SPACINGS`, by case index): a real resampling of
  the 1 mm volume (:func:`resample`), the affine carrying the spacing.

Determinism as in :mod:`submission.workbench.synth`: case ``i`` draws from its own
``np.random.default_rng([seed, i])``; which modality is absent and which spacing is used
depend on the index alone.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter1d

from submission.brats import MODALITIES, get_scheme
from submission.tasks import Task
from submission.workbench.synth_anatomy import make_anatomy, make_tumour
from submission.workbench.synth_lesions import (
    cavity,
    cystic_tumour,
    embed,
    glioma,
    meningioma,
    metastases,
    skull,
)
from submission.workbench.synth_render import apply_bias, layered_intensity, quantise

#: The pathology of each task whose cases are not the plain glioma.
PATHOLOGY: dict[str, str] = {
    "gli-post": "cavity",
    "ped": "cyst",
    "met": "metastases",
    "men": "meningioma",
    "men-rt": "meningioma",
}
#: gli-post case ``i`` is pre-treatment (no cavity, id ``-000``) when ``i % 6`` is this.
PRE_TREATMENT_INDEX = 4
#: ped case ``i`` has a cyst when ``PED_CYST[i % 6]``.
PED_CYST: tuple[bool, ...] = (True, True, True, True, True, False)
#: Default share of met cases without t2w (2026: t2w may be absent).
MET_T2W_ABSENT = 0.25
#: Voxel sizes (mm) of men-rt case ``i``: ``MEN_RT_SPACINGS[i % 3]``; slices along the last axis.
MEN_RT_SPACINGS: tuple[tuple[float, float, float], ...] = (
    (1.0, 1.0, 2.5),
    (0.9, 0.9, 3.0),
    (1.0, 1.0, 2.0),
)
#: Tasks whose images are not skull-stripped by default.
UNSTRIPPED: tuple[str, ...] = ("ped",)

_ID_FORMAT = {
    "gli-2021": "BraTS2021_{index:05d}",
    "gli-2023": "BraTS-GLI-{index:05d}-000",
    "gli-post": "BraTS-GLI-{index:05d}-{timepoint}",
    "met": "BraTS-MET-{index:05d}-000",
    "ped": "BraTS-PED-{index:05d}-000",
    "men": "BraTS-MEN-{index:05d}-000",
    "men-rt": "BraTS-MEN-RT-{index:04d}-1",
    "ssa": "BraTS-SSA-{index:05d}-000",
    "goat": "BraTS-GoAT-{index:05d}-000",
}


def is_pre_treatment(task: Task, index: int) -> bool:
    """True for the gli-post cases without a cavity (timepoint ``000``)."""
    return task.name == "gli-post" and index % 6 == PRE_TREATMENT_INDEX


def has_pathology(task: Task, index: int) -> bool:
    """True when case ``index`` of ``task`` has the task's own pathology (:data:`PATHOLOGY`),
    False for the plain glioma (gli-2021, gli-2023, ssa, goat, pre-treatment gli-post)."""
    return task.name in PATHOLOGY and not is_pre_treatment(task, index)


def task_case_id(index: int, task: Task) -> str:
    """Case id of case ``index`` in the task's convention (``BraTS-MEN-RT-0003-1``); an
    index with more digits than the convention holds gives an id ``task.matches`` refuses."""
    timepoint = "000" if is_pre_treatment(task, index) else "100"
    return _ID_FORMAT[task.name].format(index=index, timepoint=timepoint)


def is_absent(index: int, rate: float) -> bool:
    """Whether case ``index`` lacks a modality absent at ``rate`` (0..1): evenly spread by
    index, ``floor((i + 1) * rate) > floor(i * rate)`` (rate 0.25: cases 3, 7, 11, ...)."""
    return math.floor((index + 1) * rate) > math.floor(index * rate)


def default_absent(task: Task) -> dict[str, float]:
    """Share of cases without each optional modality when none is given (met: t2w)."""
    return {"t2w": MET_T2W_ABSENT} if task.name == "met" else {}


def default_spacing(task: Task, index: int) -> tuple[float, float, float] | None:
    """Voxel size of case ``index`` when none is given: MEN-RT's, else None (1 mm)."""
    return MEN_RT_SPACINGS[index % len(MEN_RT_SPACINGS)] if task.name == "men-rt" else None


def synthesize_task_case(
    rng: np.random.Generator,
    task: Task,
    index: int,
    shape: tuple[int, int, int],
    with_skull: bool,
    et_kind: str = "normal",
) -> tuple[np.ndarray, np.ndarray]:
    """One case of ``task`` with its pathology, on the 1 mm grid.

    Args:
        rng: the case's random source.
        task: the task (its pathology, :data:`PATHOLOGY`, and label scheme).
        index: case index (pre-treatment and cyst patterns).
        shape: spatial shape, each side at least 32.
        with_skull: add scalp, skull and CSF around the brain (:func:`synth_lesions.skull`).
        et_kind: ET kind of a plain glioma case.

    Returns:
        ``image_cdhw``: int16 (4, *shape) in MODALITIES order, 0 outside the head.
        ``regions_rdhw``: bool (R, *shape) in the task scheme's region order.
    """
    anatomy = make_anatomy(rng, shape)
    head = embed(anatomy, shape)
    pathology = PATHOLOGY[task.name] if has_pathology(task, index) else None
    if pathology is None:
        lesion = glioma(anatomy, make_tumour(rng, anatomy, et_kind), shape)
    elif pathology == "cavity":
        lesion = cavity(rng, head)
    elif pathology == "cyst":
        lesion = cystic_tumour(rng, head, PED_CYST[index % len(PED_CYST)])
    elif pathology == "metastases":
        lesion = metastases(rng, head)
    else:
        lesion = meningioma(rng, head)
    layers, foreground = lesion.layers, lesion.foreground
    if with_skull:
        shell, foreground = skull(rng, head, foreground)
        layers = shell + layers
    intensity = layered_intensity(rng, head.tissue, layers, head.scale)
    apply_bias(rng, intensity, head.scale)
    return quantise(rng, intensity, foreground), scheme_regions(lesion.regions, task.scheme)


def scheme_regions(regions: dict[str, np.ndarray], scheme: str) -> np.ndarray:
    """bool (R, ...) masks of the scheme's regions in its order, from masks by region name;
    a region not given (RC of a pre-treatment or metastases case) is empty."""
    empty = np.zeros_like(next(iter(regions.values())), dtype=bool)
    return np.stack([regions.get(r, empty) for r in get_scheme(scheme).region_names])


def channels(task: Task, index: int, absent: dict[str, float]) -> tuple[str, ...]:
    """The modalities case ``index`` of ``task`` has, in MODALITIES order."""
    have = set(task.modalities) | set(task.optional)
    return tuple(
        m for m in MODALITIES if m in have and not (m in absent and is_absent(index, absent[m]))
    )


def resample(
    image_cdhw: np.ndarray,
    regions_rdhw: np.ndarray,
    affine: np.ndarray,
    spacing: tuple[float, float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 1 mm case on a grid of voxel size ``spacing`` covering the same field of view.

    The image is smoothed along each coarsened axis by a Gaussian slice profile (FWHM of the
    new voxel, as a thick slice averages) and interpolated with cubic splines; regions are
    interpolated linearly and kept where at least half covered, which keeps them nested.

    Args:
        image_cdhw: int16 (C, D, H, W) on the 1 mm grid of ``affine``.
        regions_rdhw: bool (R, D, H, W).
        affine: float64 (4, 4) voxel-to-world of the 1 mm grid.
        spacing: new voxel size in mm per voxel axis.

    Returns:
        int16 (C, d, h, w), bool (R, d, h, w) and the new float64 (4, 4) affine, whose column
        norms are ``spacing``.
    """
    spacing_ = np.asarray(spacing, dtype=float)
    old = np.asarray(image_cdhw.shape[1:])
    new = np.maximum(np.rint(old / spacing_).astype(int), 1)
    # New voxel j sits at old coordinate spacing * j + (spacing - 1) / 2: edges aligned.
    offset = (spacing_ - 1) / 2
    step = np.eye(4)
    step[:3, :3] = np.diag(spacing_)
    step[:3, 3] = offset

    def warp(volume: np.ndarray, order: int) -> np.ndarray:
        return affine_transform(
            volume, spacing_, offset, output_shape=tuple(new), order=order, mode="nearest"
        )

    image = np.zeros((len(image_cdhw), *new), dtype=np.int16)
    for c, volume in enumerate(image_cdhw):
        smooth = volume.astype(np.float32)
        for axis, size in enumerate(spacing_):
            if size > 1:
                smooth = gaussian_filter1d(smooth, size / 2.355, axis=axis)
        values = warp(smooth, 3) * (warp((volume > 0).astype(np.float32), 1) >= 0.5)
        image[c] = np.clip(np.rint(values), 0, np.iinfo(np.int16).max)
    regions = np.stack([warp(r.astype(np.float32), 1) >= 0.5 for r in regions_rdhw])
    return image, regions, affine @ step
