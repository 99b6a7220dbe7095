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

That is the default (layouts 2021 and 2023, the tasks gli-2021 and gli-2023). With a task
(``task=``, ``bratskit synth --task``) the cases follow the task's ids, file naming,
modalities and label scheme and hold its pathology: a resection cavity (gli-post), a cystic
paediatric tumour in an image that is not skull-stripped (ped), several metastases with t2w
absent from some cases (met), an extra-axial meningioma (men), and the meningioma's GTV on
t1c alone on an anisotropic native grid (men-rt); :mod:`submission.workbench.synth_tasks`
documents each, with their contrasts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from submission.brats import (
    LAYOUT_YEARS,
    MODALITIES,
    SEG_SUFFIX,
    TUMOUR_REGIONS,
    modality_filename,
    regions_to_labels,
)
from submission.exit_codes import BadValueError
from submission.tasks import AUTO, Task, get_task
from submission.workbench.synth_anatomy import (
    BRATS_SHAPE,
    ET_KINDS,
    make_anatomy,
    make_tumour,
)
from submission.workbench.synth_render import apply_bias, glioma_intensity, quantise
from submission.workbench.synth_tasks import (
    UNSTRIPPED,
    channels,
    default_absent,
    default_spacing,
    has_pathology,
    resample,
    scheme_regions,
    synthesize_task_case,
    task_case_id,
)

__all__ = [
    "BRATS_SHAPE",
    "ET_KINDS",
    "ET_PATTERN",
    "LAYOUT_TASK",
    "MIN_SIDE",
    "SynthError",
    "case_id",
    "et_kind_for_index",
    "lps_affine",
    "read_absent_rates",
    "synthesize_case",
    "synthesize_task",
    "task_case_id",
    "write_case",
    "write_synthetic_dataset",
]

logger = logging.getLogger(__name__)

#: ET kind of case ``i`` is ``ET_PATTERN[i % 6]``: 4/6 an enhancing rim (broken in places)
#: around necrosis, 1/6 no ET, 1/6 a tiny ET spot (30-300 voxels at full size).
ET_PATTERN: tuple[str, ...] = ("normal", "normal", "none", "normal", "normal", "tiny")
#: Smallest side of a synthetic volume (room for brain and tumour).
MIN_SIDE = 32
#: The task each file naming stands for when no task is given.
LAYOUT_TASK = {"2021": "gli-2021", "2023": "gli-2023", "men-rt": "men-rt"}


class SynthError(ValueError, BadValueError):
    """A value the user gave the generator is wrong (a layout, a shape, a share, a spacing)."""


def et_kind_for_index(index: int) -> str:
    """ET kind of case ``index`` (:data:`ET_PATTERN`)."""
    return ET_PATTERN[index % len(ET_PATTERN)]


def case_id(index: int, layout: str) -> str:
    """Synthetic case id: ``BraTS2021_00000`` (2021), ``BraTS-GLI-00000-000`` (2023) or
    ``BraTS-MEN-RT-0000-1`` (men-rt): that of the layout's task (:data:`LAYOUT_TASK`)."""
    _check_layout(layout)
    return task_case_id(index, get_task(LAYOUT_TASK[layout]))


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
    intensity = glioma_intensity(rng, anatomy, tumour)
    apply_bias(rng, intensity, anatomy.scale)
    image_cdhw = np.zeros((len(MODALITIES), *shape), dtype=np.int16)
    image_cdhw[(slice(None), *anatomy.box)] = quantise(rng, intensity, anatomy.brain)

    regions_rdhw = np.zeros((3, *shape), dtype=bool)
    outer = tuple(
        slice(a.start + t.start, a.start + t.stop)
        for a, t in zip(anatomy.box, tumour.box, strict=True)
    )
    regions_rdhw[(slice(None), *outer)] = tumour.regions
    return image_cdhw, regions_rdhw


def _checked_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < MIN_SIDE:
        raise SynthError(f"shape must be three sides of at least {MIN_SIDE} voxels, got {shape}")
    return shape


def _check_layout(layout: str) -> None:
    if layout not in LAYOUT_YEARS:
        raise SynthError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUT_YEARS)}")


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI image with BraTS header codes: qform 2 (aligned), sform 1 (scanner), mm units."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 2)
    img.set_sform(affine, 1)
    img.header.set_xyzt_units(xyz="mm")
    return img


def write_case(
    case_dir: Path,
    case: str,
    image_cdhw: np.ndarray,
    seg_dhw: np.ndarray,
    layout: str,
    modalities: tuple[str, ...] = MODALITIES,
    affine: np.ndarray | None = None,
) -> list[Path]:
    """Write the modalities and the label map of one case into ``case_dir``.

    Args:
        case_dir: the case folder (created if missing).
        case: case id, the file-name prefix.
        image_cdhw: int16 (C, D, H, W), channel ``c`` the modality ``modalities[c]``.
        seg_dhw: uint8 (D, H, W) label map in the layout's scheme.
        layout: file naming (:data:`submission.brats.LAYOUT_YEARS`): ``2021``, ``2023`` or
            ``men-rt``, whose label map is ``<id>_gtv.nii.gz``.
        modalities: the modality of each channel [all four, in MODALITIES order].
        affine: voxel-to-world of the grid [:func:`lps_affine` of the 1 mm grid].

    Returns:
        The paths written, modalities first and the label map last.
    """
    _check_layout(layout)
    if len(modalities) != len(image_cdhw):
        raise ValueError(f"{len(image_cdhw)} channels for modalities {', '.join(modalities)}")
    case_dir = Path(case_dir)
    case_dir.mkdir(parents=True, exist_ok=True)
    affine = lps_affine(seg_dhw.shape) if affine is None else affine
    volumes = [(m, image_cdhw[c].astype(np.int16)) for c, m in enumerate(modalities)]
    volumes.append((SEG_SUFFIX, seg_dhw.astype(np.uint8)))
    paths = []
    for name, data in volumes:
        path = case_dir / modality_filename(case, name, layout)
        nib.save(_nifti(data, affine), path)
        paths.append(path)
    return paths


def synthesize_task(
    rng: np.random.Generator,
    task: Task,
    index: int,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    skull: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Case ``index`` of ``task`` on the 1 mm grid (:mod:`submission.workbench.synth_tasks`).

    A glioma case without skull is :func:`synthesize_case` itself, so the tasks gli-2021 and
    gli-2023 give the same arrays as layouts 2021 and 2023 always did.

    Returns:
        ``image_cdhw``: int16 (4, *shape) in MODALITIES order, all four modalities.
        ``regions_rdhw``: bool (R, *shape) in ``task.scheme``'s region order.
    """
    shape = _checked_shape(shape)
    et_kind = et_kind_for_index(index)
    if skull or has_pathology(task, index):
        return synthesize_task_case(rng, task, index, shape, skull, et_kind)
    image_cdhw, regions_rdhw = synthesize_case(rng, shape, et_kind)
    return image_cdhw, scheme_regions(dict(zip(TUMOUR_REGIONS, regions_rdhw)), task.scheme)


def _resolve_task(layout: str | None, task: Task | str | None) -> Task:
    """The task to write: ``task``, else the one whose naming ``layout`` is (2021 when
    neither); a layout that is not the task's naming is refused."""
    if task is None:
        layout = "2021" if layout is None else layout
        _check_layout(layout)
        return get_task(LAYOUT_TASK[layout])
    if isinstance(task, str) and task.lower() == AUTO:
        raise SynthError("synth writes the cases of one named task; auto only recognises one")
    task = task if isinstance(task, Task) else get_task(task)
    if layout is not None and layout != task.naming:
        raise SynthError(
            f"layout {layout} disagrees with task {task.name}, whose files are named the "
            f"{task.naming} way; leave out the layout or give {task.naming}"
        )
    return task


def read_absent_rates(texts: Sequence[str]) -> dict[str, float] | None:
    """``MODALITY=RATE`` texts (``synth --absent``) as the ``absent`` of
    :func:`write_synthetic_dataset`; None when there are none.

    Raises:
        SynthError: a text whose rate is not a number.
    """
    if not texts:
        return None
    absent = {}
    for text in texts:
        modality, _, rate = text.partition("=")
        try:
            absent[modality.strip()] = float(rate)
        except ValueError:
            raise SynthError(f"MODALITY=RATE with RATE 0..1, got {text!r}") from None
    return absent


def _checked_absent(task: Task, absent: Mapping[str, float] | None) -> dict[str, float]:
    if absent is None:
        return default_absent(task)
    optional = ", ".join(task.optional) or "none"
    for modality, rate in absent.items():
        if modality not in MODALITIES:
            raise SynthError(f"unknown modality {modality!r}; {task.name}'s optional: {optional}")
        if modality not in task.optional:
            raise SynthError(
                f"{modality} cannot be absent from {task.name} cases: the task requires it "
                f"(optional modalities: {optional})"
            )
        if not 0 <= rate <= 1:
            raise SynthError(f"the share of cases without {modality} must be 0..1, got {rate}")
    return dict(absent)


def _checked_spacing(spacing) -> tuple[float, float, float] | None:
    if spacing is None:
        return None
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(0.25 <= s <= 8 for s in spacing):
        raise SynthError(f"spacing must be three voxel sizes of 0.25 to 8 mm, got {spacing}")
    return spacing


def write_synthetic_dataset(
    out_dir: Path,
    cases: int,
    layout: str | None = None,
    seed: int = 0,
    shape: tuple[int, int, int] = BRATS_SHAPE,
    progress: Callable[[str], None] | None = None,
    first: int = 0,
    task: Task | str | None = None,
    absent: Mapping[str, float] | None = None,
    skull: bool | None = None,
    spacing: tuple[float, float, float] | None = None,
) -> list[str]:
    """Write ``cases`` synthetic cases, one folder ``<out_dir>/<case id>/`` each.

    Without a task, folders hold the four modalities and the ground truth (``_seg`` /
    ``-seg``) named by :func:`submission.brats.modality_filename`, labels in the layout's
    scheme (2021 or 2023), exactly as before tasks existed. With a task (registry name,
    alias or :class:`~submission.tasks.Task`), cases follow its id convention, naming,
    modalities and label scheme, with its pathology (:mod:`submission.workbench.synth_tasks`).
    Existing files of the same names are overwritten.

    Args:
        out_dir: dataset folder (created if missing).
        cases: number of cases, ids numbered from ``first``.
        layout: file naming: ``2021`` (``BraTS2021_00000``), ``2023``
            (``BraTS-GLI-00000-000``) or ``men-rt`` (the MEN-RT task) [the task's, else 2021];
            with a task it must be the task's.
        seed: non-negative seed; case ``i`` depends only on ``(seed, i)``.
        shape: spatial shape of the 1 mm grid, each side at least :data:`MIN_SIDE`.
        progress: called with one line per written case (id, count and seconds).
        first: index of the first case: ``first=20`` after a 20-case training set gives
            held-out cases with new ids and new contents.
        task: the BraTS task [none: the layout's glioma].
        absent: optional modality -> share of cases (0..1) without it, chosen by index
            (:func:`~submission.workbench.synth_tasks.is_absent`) [met: t2w 0.25].
        skull: scalp and skull around the brain, not skull-stripped [ped only].
        spacing: voxel size in mm every case is resampled to [men-rt: per case, anisotropic;
            else 1 mm, BraTS space].

    Returns:
        The case ids in order.

    Raises:
        SynthError: a bad value (layout, shape, counts, absent, spacing, a layout that is not
            the task's naming); TaskError: an unknown task.
    """
    task = _resolve_task(layout, task)
    shape = _checked_shape(shape)
    if cases < 0 or seed < 0 or first < 0:
        raise SynthError(
            f"cases, seed and first must be non-negative, got {cases}, {seed}, {first}"
        )
    absent = _checked_absent(task, absent)
    skull = task.name in UNSTRIPPED if skull is None else bool(skull)
    spacing = _checked_spacing(spacing)
    ids = [task_case_id(index, task) for index in range(first, first + cases)]
    wrong = [case for case in ids if not task.matches(case)]
    if wrong:
        raise SynthError(f"case {wrong[0]} breaks the {task.name} id convention: fewer cases")
    out_dir = Path(out_dir)
    for n, (index, case) in enumerate(zip(range(first, first + cases), ids, strict=True), 1):
        start = time.perf_counter()
        rng = np.random.default_rng([seed, index])
        image_cdhw, regions_rdhw = synthesize_task(rng, task, index, shape, skull)
        modalities = channels(task, index, absent)
        image_cdhw = image_cdhw[[MODALITIES.index(m) for m in modalities]]
        affine = lps_affine(shape)
        size = default_spacing(task, index) if spacing is None else spacing
        if size is not None and size != (1.0, 1.0, 1.0):
            image_cdhw, regions_rdhw, affine = resample(image_cdhw, regions_rdhw, affine, size)
        seg_dhw = regions_to_labels(regions_rdhw, task.scheme)
        write_case(out_dir / case, case, image_cdhw, seg_dhw, task.naming, modalities, affine)
        line = f"{case} ({n}/{cases}) written in {time.perf_counter() - start:.1f} s"
        logger.info(line)
        if progress is not None:
            progress(line)
    return ids
