"""Case discovery in the three input layouts of CONTRACT.md section 1 and case loading
(reference label maps are found by :mod:`submission.io.references`).

Layouts:
    2021 flat     the four ``<id>_<mod>.nii.gz`` files directly in the input folder
    2021 folders  one sub-folder per case, ``<id>_<mod>.nii.gz`` inside
    2023+ folders one sub-folder per case, ``<id>-<mod>.nii.gz`` inside
    MEN-RT        one sub-folder per case, ``<id>_t1c.nii.gz`` inside

A case needs the modalities its task requires (all four by default; t1c alone for
MEN-RT, :mod:`submission.tasks`); :func:`load_channels` loads the ones a bundle reads and
fills an absent optional one (MET 2026's t2w) with zeros, as modality dropout trained it.

In folder layouts the case id is the folder name (the orchestrator renames cases, so
nothing depends on a real id); in the flat layout it is the file prefix. Discovery ignores
``seg`` files silently and unrelated files with a warning.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from submission.brats import (
    MODALITIES,
    SEG_SUFFIX,
    is_valid_case_id,
    parse_filename,
    prediction_filename,
)
from submission.exit_codes import UnusableError
from submission.io.nifti import NAME_MAX, Grid, NiftiError, grid_of, read_nifti
from submission.tasks import AUTO, Task, resolve_task

log = logging.getLogger(__name__)

AFFINE_TOLERANCE = 1e-3
FLOAT32_MAX = float(np.finfo(np.float32).max)


class InputError(ValueError, UnusableError):
    """The input folder as a whole is unusable (missing, not a folder, no cases)."""


class CaseError(ValueError, UnusableError):
    """One case is unusable; the message names the case, the file and the problem."""

    def __init__(self, case_id: str, problem: str, path: Path | None = None):
        self.case_id, self.problem, self.path = case_id, problem, path
        where = f" ({path})" if path is not None else ""
        super().__init__(f"case {case_id}: {problem}{where}")


@dataclass(frozen=True)
class Case:
    """A discovered case: its id, naming convention and one file per modality it has (at
    least the required ones), in :data:`MODALITIES` order."""

    case_id: str
    year: str
    files: dict[str, Path]
    folder: Path


@dataclass
class Discovery:
    """Everything found in an input folder."""

    cases: list[Case] = field(default_factory=list)
    errors: list[CaseError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def case_ids(self) -> list[str]:
        """Ids of every case found, usable or not, sorted."""
        return sorted({c.case_id for c in self.cases} | {e.case_id for e in self.errors})


def discover_cases(input_dir: Path, required: tuple[str, ...] = MODALITIES) -> Discovery:
    """Find the cases in ``input_dir`` whatever its layout; a case without one of the
    ``required`` modalities is an error of that case.

    Raises:
        InputError: the folder is missing or holds no case at all.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    found = Discovery()
    flat: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    hidden: list[Path] = []
    for entry in _visible(input_dir, hidden):
        if entry.is_dir():
            _discover_folder(entry, found, hidden, required)
            continue
        parsed = parse_filename(entry.name)
        if parsed is None:
            found.warnings.append(f"ignored unrelated file {entry}")
        elif parsed.modality != SEG_SUFFIX:
            flat[parsed.case_id][parsed.modality].append(entry)
    for case_id, by_modality in flat.items():
        _add_case(found, case_id, by_modality, input_dir, required)
    _refuse_duplicate_ids(found)
    if hidden:
        found.warnings.append(
            f"ignored {len(hidden)} hidden file(s) or folder(s) (names starting with '.', such "
            f"as macOS '._' files, and __MACOSX folders), e.g. {hidden[0]}"
        )
    if not found.cases and not found.errors:
        raise InputError(_no_case(input_dir))
    found.cases.sort(key=lambda c: c.case_id)
    return found


def discover_task_cases(input_dir: Path, task: str | None) -> tuple[Discovery, Task | None]:
    """:func:`discover_cases` requiring the modalities of ``task`` (a registry name, or
    ``auto``: recognised from the case ids, whatever modalities they have; None: all four).

    Returns:
        The discovery and the task (None when none was given).

    Raises:
        InputError: as :func:`discover_cases`.
        TaskError: an unknown task, or ids ``auto`` cannot recognise.
    """
    if task is None:
        return discover_cases(input_dir), None
    # Only ``auto`` needs the ids first (a folder walk); a named task is looked up.
    ids = discover_cases(input_dir, required=()).case_ids if str(task).lower() == AUTO else ()
    rules = resolve_task(task, ids)
    return discover_cases(input_dir, rules.modalities), rules


def _no_case(input_dir: Path) -> str:
    """Why an input folder holds no case: empty, only hidden or unrelated entries, or cases
    one folder too deep (``/input/data/<case>/``, which an archive often leaves)."""
    expected = (
        "expected case folders or files named like <id>_t1ce.nii.gz (2021), "
        "<id>-t1c.nii.gz (2023+) or <id>_t1c.nii.gz (MEN-RT)"
    )
    entries = list(input_dir.iterdir())
    if not entries:
        return f"no BraTS case in {input_dir}: the folder is empty; {expected}"
    for sub in sorted(e for e in entries if e.is_dir() and not e.name.startswith(".")):
        for inner in sorted(sub.iterdir()):
            images = [inner] if inner.is_file() else list(inner.glob("*.nii*"))
            if any(_is_image(p) for p in images):
                return (
                    f"no BraTS case in {input_dir}: the cases sit one folder too deep, in "
                    f"{sub}; give {sub} as the input or move its contents up"
                )
    if all(e.name.startswith(".") or e.name == "__MACOSX" for e in entries):
        return f"no BraTS case in {input_dir}: it holds only hidden entries; {expected}"
    return f"no BraTS case in {input_dir}: {expected}"


def _is_image(path: Path) -> bool:
    parsed = parse_filename(path.name)
    return parsed is not None and parsed.modality != SEG_SUFFIX


def _refuse_duplicate_ids(found: Discovery) -> None:
    """A case folder and flat files of the same id would both write ``<id>.nii.gz``, one
    over the other: neither is a case, and the conflict is an error of that id."""
    folders: dict[str, list[Path]] = defaultdict(list)  # where each id's files lie
    for case in found.cases:
        folders[case.case_id].append(case.folder)
    for error in found.errors:
        if error.path is not None:
            folders[error.case_id].append(error.path)
    twice = {case_id: where for case_id, where in folders.items() if len(where) > 1}
    if not twice:
        return
    found.cases = [c for c in found.cases if c.case_id not in twice]
    found.errors = [e for e in found.errors if e.case_id not in twice]
    for case_id, where in sorted(twice.items()):
        places = " and ".join(str(p) for p in sorted(where))
        found.errors.append(
            CaseError(
                case_id,
                f"two cases have this id, in {places} (a case folder and flat files): neither "
                "is predicted; keep one",
                where[0],
            )
        )


def _visible(folder: Path, hidden: list[Path]) -> list[Path]:
    """``folder``'s entries, sorted, less the hidden ones, which go to ``hidden``: names
    starting with a dot (macOS AppleDouble ``._<name>.nii.gz`` files would otherwise be a
    second file of a modality, or in the flat layout a phantom case) and ``__MACOSX``
    folders, which archives made on macOS carry."""
    visible = []
    for entry in sorted(folder.iterdir()):
        is_hidden = entry.name.startswith(".") or entry.name == "__MACOSX"
        (hidden if is_hidden else visible).append(entry)
    return visible


def _discover_folder(
    folder: Path, found: Discovery, hidden: list[Path], required: tuple[str, ...]
) -> None:
    by_modality: dict[str, list[Path]] = defaultdict(list)
    unrelated, notes = [], []
    for entry in _visible(folder, hidden):
        parsed = parse_filename(entry.name)
        if parsed is not None and parsed.modality != SEG_SUFFIX and not entry.is_file():
            found.errors.append(CaseError(folder.name, _not_a_file(parsed.modality, entry)))
            return
        if parsed is None:
            unrelated.append(f"ignored unrelated entry {entry}")
        elif parsed.modality != SEG_SUFFIX:
            by_modality[parsed.modality].append(entry)
            if parsed.case_id != folder.name:
                notes.append(
                    f"{entry}: file prefix {parsed.case_id!r} differs from its folder; "
                    f"the case id is the folder name {folder.name!r}"
                )
    if by_modality:
        found.warnings += unrelated + notes
        _add_case(found, folder.name, by_modality, folder, required)
    else:
        found.warnings.append(f"ignored folder {folder}: no BraTS image files in it")


def _not_a_file(modality: str, entry: Path) -> str:
    """What is wrong with an entry named like a modality image that is not a file."""
    if entry.is_symlink() and not entry.exists():
        return (
            f"{modality}: {entry}: a symbolic link to {os.readlink(entry)}, which does not "
            "exist; copy the image itself into the case folder"
        )
    return f"{modality}: {entry}: a folder, not a file; put the image file itself here"


def _add_case(
    found: Discovery,
    case_id: str,
    by_modality: dict[str, list[Path]],
    folder: Path,
    required: tuple[str, ...],
) -> None:
    if not is_valid_case_id(case_id):
        found.errors.append(
            CaseError(
                case_id,
                "case id must be letters, digits, '.', '_' or '-' (no spaces or path "
                "separators), or the output name breaks the organisers' patterns; rename it",
                folder,
            )
        )
        return
    output_name = prediction_filename(case_id)
    if len(output_name.encode()) > NAME_MAX:
        found.errors.append(
            CaseError(
                case_id,
                f"the output name {output_name[:24]}... would be {len(output_name.encode())} "
                f"bytes, over the {NAME_MAX} a file name may hold; shorten the case id",
                folder,
            )
        )
        return
    missing = [m for m in required if m not in by_modality]
    if missing:
        have = ", ".join(m for m in MODALITIES if m in by_modality)
        expected = f"{len(required)} modalities" if len(required) > 1 else required[0]
        found.errors.append(
            CaseError(
                case_id, f"expected {expected}, missing {', '.join(missing)} (found {have})", folder
            )
        )
        return
    for modality, paths in by_modality.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            found.errors.append(
                CaseError(case_id, f"{len(paths)} files for {modality}: {names}; keep one", folder)
            )
            return
    years = {parse_filename(p[0].name).year for p in by_modality.values()}
    found.cases.append(
        Case(
            case_id,
            years.pop() if len(years) == 1 else "2023",
            {m: by_modality[m][0] for m in MODALITIES if m in by_modality},
            folder,
        )
    )


def read_case_grid(case: Case) -> Grid:
    """Grid of a case's first modality, from its header alone (no voxel data read)."""
    path = next(iter(case.files.values()))
    try:
        return grid_of(nib.load(path))
    except Exception as exc:
        raise CaseError(case.case_id, f"cannot read header ({exc})", path) from None


def load_case(case: Case) -> tuple[np.ndarray, Grid]:
    """Load and check the four modalities of a case (:func:`load_channels` of
    :data:`MODALITIES`, none optional): ``image_cdhw`` (4, D, H, W) and its grid."""
    image_cdhw, grid, _ = load_channels(case, MODALITIES)
    return image_cdhw, grid


def load_channels(
    case: Case, modalities: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[np.ndarray, Grid, list[str]]:
    """Load and check ``modalities`` of a case, in that order.

    An ``optional`` modality the case lacks, or whose image is all zeros, is returned as
    zeros (what z-scoring leaves of it, and what modality dropout trained the members
    with) and named in the third value.

    Returns:
        ``image_cdhw``: float32 (C, D, H, W) in ``modalities`` order, voxel axes as stored
        in the files; the grid of the first modality read, copied onto outputs; and the
        absent optional modalities.

    Raises:
        CaseError: a required modality absent or all zeros, a file unreadable, not 3-D,
            with NaN/inf, or a shape or affine (tolerance 1e-3) differing from the first
            modality's.
    """
    channels: dict[str, np.ndarray] = {}
    grid, first = None, None
    for modality in modalities:
        path = case.files.get(modality)
        if path is None:
            if modality not in optional:
                raise CaseError(case.case_id, f"{modality} is missing, and the models need it")
            continue
        image, img = _read_channel(case, modality, path)
        if grid is None:
            grid, first = grid_of(img), modality
        elif tuple(image.shape) != grid.shape:
            raise CaseError(
                case.case_id, f"{modality} has shape {image.shape}, {first} has {grid.shape}", path
            )
        elif not np.allclose(img.affine, grid.affine, atol=AFFINE_TOLERANCE):
            raise CaseError(
                case.case_id,
                f"{modality} affine differs from {first}'s by more than "
                f"{AFFINE_TOLERANCE}; co-register the modalities",
                path,
            )
        if not image.any():
            if modality in optional:
                continue
            raise CaseError(
                case.case_id,
                f"{modality} is all zeros: a missing modality, and the bundle has no "
                "missing-modality policy for it (members trained with modality dropout), so "
                "the case is not predicted; supply the image",
                path,
            )
        channels[modality] = image
    if grid is None:
        raise CaseError(case.case_id, f"none of {', '.join(modalities)} holds an image")
    absent = [m for m in modalities if m not in channels]
    zeros = np.zeros(grid.shape, dtype=np.float32)
    return np.stack([channels.get(m, zeros) for m in modalities]), grid, absent


def _read_channel(case: Case, modality: str, path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """One modality's float32 voxels and its image, after the per-file checks."""
    try:
        img, data = read_nifti(path)
    except NiftiError as exc:
        raise CaseError(case.case_id, f"{modality}: {exc}") from None
    if data.ndim != 3:
        raise CaseError(case.case_id, f"{modality} must be 3-D, got shape {data.shape}", path)
    if not np.all(np.isfinite(data)):
        raise CaseError(
            case.case_id,
            f"{modality} holds NaN or infinite voxels; fix the conversion that wrote it",
            path,
        )
    if np.issubdtype(data.dtype, np.floating) and np.abs(data).max() > FLOAT32_MAX:
        raise CaseError(
            case.case_id,
            f"{modality} holds values of up to {np.abs(data).max():.3g}, beyond float32 "
            f"({FLOAT32_MAX:.3g}); the header's scaling or the conversion is broken",
            path,
        )
    return np.asarray(data, dtype=np.float32), img
