"""Synthetic BraTS-like cases with ground truth, for tests, demos and pipeline smoke runs.

Each case is a skull-stripped brain (white matter, grey matter, CSF) holding one tumour: a
core (necrosis inside an enhancing rim, or solid non-enhancing tumour) and irregular oedema,
with MRI-like contrast per modality, smooth multiplicative bias fields and Gaussian noise.
The geometry is BraTS space (LPS affine, 1 mm voxels, qform code 2 and sform code 1 as in
released BraTS files); images are int16, label maps uint8 (CONTRACT.md section 2).

The data are learnable but not trivial: oedema fades into its border and overlaps grey matter
on FLAIR and CSF on T2 once noise and bias are added, and the necrosis is FLAIR-grey, so no
single threshold on one modality finds the whole tumour (best Dice about 0.4-0.87, median
0.7, on FLAIR), while the four modalities together with spatial context do.

Determinism: case ``i`` of ``seed`` draws from ``np.random.default_rng([seed, i])`` only, so
the same seed gives byte-identical arrays (on one platform: float32 matrix products may differ
in the last bit between CPU kernels) and adding cases never changes earlier ones. The
enhancing tumour follows the case index (:data:`ET_PATTERN`): one case in six has no ET and
one in six a tiny ET spot, which exercises ET minimum-size post-processing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from submission.brats import (
    LAYOUT_YEARS,
    MODALITIES,
    SEG_SUFFIX,
    modality_filename,
    regions_to_labels,
)
from submission.workbench.synth_anatomy import (
    BRATS_SHAPE,
    ET_KINDS,
    Anatomy,
    Tumour,
    make_anatomy,
    make_tumour,
    smooth_fields,
)

__all__ = [
    "BRATS_SHAPE",
    "ET_KINDS",
    "ET_PATTERN",
    "MIN_SIDE",
    "case_id",
    "et_kind_for_index",
    "lps_affine",
    "synthesize_case",
    "write_case",
    "write_synthetic_dataset",
]

logger = logging.getLogger(__name__)

#: ET kind of case ``i`` is ``ET_PATTERN[i % 6]``: 4/6 an enhancing rim (broken in places)
#: around necrosis, 1/6 no ET, 1/6 a tiny ET spot (30-300 voxels at full size).
ET_PATTERN: tuple[str, ...] = ("normal", "normal", "none", "normal", "normal", "tiny")
#: Smallest side of a synthetic volume (room for brain and tumour).
MIN_SIDE = 32

# Mean intensity of each tissue relative to white matter, per modality in MODALITIES order
# (t1n, t1c, t2w, t2f). Columns: WM, GM, CSF, oedema, necrosis, enhancing tumour, and solid
# non-enhancing tumour (the core of cases without an enhancing rim).
_CONTRAST = np.array(
    [
        [1.00, 0.74, 0.28, 0.80, 0.42, 0.82, 0.62],  # t1n: dark necrosis and CSF
        [1.00, 0.78, 0.30, 0.84, 0.45, 1.65, 0.66],  # t1c: bright enhancing rim
        [0.55, 0.78, 1.55, 1.20, 1.45, 1.05, 1.40],  # t2w: bright CSF, oedema and core
        [0.78, 0.98, 0.40, 1.42, 0.90, 1.20, 1.12],  # t2f: bright oedema, suppressed CSF
    ],
    dtype=np.float32,
)
_WM_INTENSITY = (350.0, 1800.0)  # white-matter level per modality, drawn per case
_NOISE = (0.03, 0.05)  # noise standard deviation relative to the white-matter level
_BIAS = (0.05, 0.025)  # log-amplitude of the shared and the per-modality bias field


def et_kind_for_index(index: int) -> str:
    """ET kind of case ``index`` (:data:`ET_PATTERN`)."""
    return ET_PATTERN[index % len(ET_PATTERN)]


def case_id(index: int, layout: str) -> str:
    """Synthetic case id: ``BraTS2021_00000`` (2021) or ``BraTS-GLI-00000-000`` (2023)."""
    _check_layout(layout)
    return f"BraTS2021_{index:05d}" if layout == "2021" else f"BraTS-GLI-{index:05d}-000"


def lps_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """float64 (4, 4) BraTS LPS affine of a 1 mm grid of ``shape``.

    At 240 x 240 x 155 this is CONTRACT.md's ``[[-1,0,0,0],[0,-1,0,239],[0,0,1,0],[0,0,0,1]]``;
    the 239 is the last index of the flipped second axis, so it becomes ``shape[1] - 1``.
    """
    return np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, shape[1] - 1], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])


def synthesize_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    et_kind: str = "normal",
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: four modalities and the tumour regions.

    Args:
        rng: the case's random source (consumed in a fixed order, so a seeded generator gives
            identical arrays).
        shape: spatial shape (nibabel voxel order; axial slices along the last axis).
        et_kind: ``normal`` (enhancing rim), ``none`` or ``tiny`` (see :data:`ET_KINDS`).

    Returns:
        ``image_cdhw``: int16 (4, *shape) in MODALITIES order (t1n, t1c, t2w, t2f); every
        modality is >= 1 inside the brain and 0 outside, so ``(image_cdhw > 0).all(0)`` is
        the brain mask.
        ``regions_rdhw``: bool (3, *shape) WT, TC, ET, nested and inside the brain (regions
        keep the code free of label integers); turn them into a label map with
        :func:`submission.brats.regions_to_labels`.

    Raises:
        ValueError: a side below :data:`MIN_SIDE`, or an unknown ``et_kind``.
    """
    shape = _checked_shape(shape)
    anatomy = make_anatomy(rng, shape)
    tumour = make_tumour(rng, anatomy, et_kind)
    intensity = _mean_intensity(rng, anatomy, tumour)
    _apply_bias(rng, intensity, anatomy.scale)

    brain = anatomy.brain
    level = rng.uniform(*_WM_INTENSITY, size=len(MODALITIES)).astype(np.float32)
    noise = rng.uniform(*_NOISE, size=len(MODALITIES)).astype(np.float32)
    image_cdhw = np.zeros((len(MODALITIES), *shape), dtype=np.int16)
    for c in range(len(MODALITIES)):
        values = intensity[c][brain] + noise[c] * rng.standard_normal(
            int(brain.sum()), dtype=np.float32
        )
        values = np.clip(np.rint(values * level[c]), 1, np.iinfo(np.int16).max)
        image_cdhw[(c, *anatomy.box)][brain] = values.astype(np.int16)

    regions_rdhw = np.zeros((3, *shape), dtype=bool)
    outer = tuple(
        slice(a.start + t.start, a.start + t.stop)
        for a, t in zip(anatomy.box, tumour.box, strict=True)
    )
    regions_rdhw[(slice(None), *outer)] = tumour.regions
    return image_cdhw, regions_rdhw


def _mean_intensity(rng: np.random.Generator, anatomy: Anatomy, tumour: Tumour) -> np.ndarray:
    """float32 (4, *anatomy box) noise-free intensity relative to white matter.

    Tissue fractions mix the tissue contrasts; oedema blends towards its contrast by its
    weight; the tumour core then replaces what lies under it (partial volume at its border).
    """
    contrast = _CONTRAST * rng.uniform(0.95, 1.05, _CONTRAST.shape).astype(np.float32)
    intensity = np.einsum("ck,k...->c...", contrast[:, :3], anatomy.tissue)
    lesion = intensity[(slice(None), *tumour.box)]  # a view: edits land in ``intensity``
    column = contrast[:, :, None, None, None]
    lesion += tumour.edema * (column[:, 3] - lesion)
    lesion *= 1 - tumour.core
    core = column[:, 4] if tumour.necrotic else column[:, 6]
    lesion += (tumour.core - tumour.enhancing) * core + tumour.enhancing * column[:, 5]
    texture = smooth_fields(rng, anatomy.brain.shape, 2.5 * anatomy.scale)[0]
    intensity *= 1 + 0.04 * texture
    return intensity


def _apply_bias(rng: np.random.Generator, intensity: np.ndarray, scale: float) -> None:
    """Multiply ``intensity`` (4, ...) in place by smooth bias fields: shared and per modality."""
    fields = smooth_fields(rng, intensity.shape[1:], 60 * scale, 1 + len(intensity))
    shared, own = _BIAS
    for c in range(len(intensity)):
        intensity[c] *= np.exp(shared * fields[0] + own * fields[1 + c])


def _checked_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < MIN_SIDE:
        raise ValueError(f"shape must be three sides of at least {MIN_SIDE} voxels, got {shape}")
    return shape


def _check_layout(layout: str) -> None:
    if layout not in LAYOUT_YEARS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUT_YEARS)}")


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI image with BraTS header codes: qform 2 (aligned), sform 1 (scanner), mm units."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 2)
    img.set_sform(affine, 1)
    img.header.set_xyzt_units(xyz="mm")
    return img


def write_case(
    case_dir: Path, case: str, image_cdhw: np.ndarray, seg_dhw: np.ndarray, layout: str
) -> list[Path]:
    """Write the four modalities and the label map of one case into ``case_dir``.

    Args:
        case_dir: the case folder (created if missing).
        case: case id, the file-name prefix.
        image_cdhw: int16 (4, D, H, W) in MODALITIES order.
        seg_dhw: uint8 (D, H, W) label map in the layout's scheme.
        layout: ``2021`` or ``2023`` file naming.

    Returns:
        The five paths written, modalities first and the label map last.
    """
    _check_layout(layout)
    case_dir = Path(case_dir)
    case_dir.mkdir(parents=True, exist_ok=True)
    affine = lps_affine(seg_dhw.shape)
    volumes = [(m, image_cdhw[c].astype(np.int16)) for c, m in enumerate(MODALITIES)]
    volumes.append((SEG_SUFFIX, seg_dhw.astype(np.uint8)))
    paths = []
    for name, data in volumes:
        path = case_dir / modality_filename(case, name, layout)
        nib.save(_nifti(data, affine), path)
        paths.append(path)
    return paths


def write_synthetic_dataset(
    out_dir: Path,
    cases: int,
    layout: str = "2021",
    seed: int = 0,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    progress: Callable[[str], None] | None = None,
    first: int = 0,
) -> list[str]:
    """Write ``cases`` synthetic cases, one folder ``<out_dir>/<case id>/`` each.

    Folders hold the four modalities and the ground truth (``_seg`` / ``-seg``) named by
    :func:`submission.brats.modality_filename`; labels use the 2021 scheme for layout 2021 and
    the 2023 scheme for layout 2023. Existing files of the same names are overwritten.

    Args:
        out_dir: dataset folder (created if missing).
        cases: number of cases, ids numbered from ``first``.
        layout: ``2021`` (``BraTS2021_00000``) or ``2023`` (``BraTS-GLI-00000-000``).
        seed: non-negative seed; case ``i`` depends only on ``(seed, i)``.
        shape: spatial shape, each side at least :data:`MIN_SIDE`.
        progress: called with one line per written case (id, count and seconds).
        first: index of the first case: ``first=20`` after a 20-case training set gives
            held-out cases with new ids and new contents.

    Returns:
        The case ids in order.
    """
    _check_layout(layout)
    shape = _checked_shape(shape)
    if cases < 0 or seed < 0 or first < 0:
        raise ValueError(
            f"cases, seed and first must be non-negative, got {cases}, {seed}, {first}"
        )
    out_dir = Path(out_dir)
    ids = []
    for n, index in enumerate(range(first, first + cases), 1):
        start = time.perf_counter()
        case = case_id(index, layout)
        rng = np.random.default_rng([seed, index])
        image_cdhw, regions_rdhw = synthesize_case(rng, shape, et_kind_for_index(index))
        seg_dhw = regions_to_labels(regions_rdhw, layout)
        write_case(out_dir / case, case, image_cdhw, seg_dhw, layout)
        ids.append(case)
        line = f"{case} ({n}/{cases}) written in {time.perf_counter() - start:.1f} s"
        logger.info(line)
        if progress is not None:
            progress(line)
    return ids
