"""Case discovery in the three input layouts of CONTRACT.md section 1, case loading, and
the one rule that finds reference label maps (:func:`find_label_maps`).

Layouts:
    2021 flat     the four ``<id>_<mod>.nii.gz`` files directly in the input folder
    2021 folders  one sub-folder per case, ``<id>_<mod>.nii.gz`` inside
    2023+ folders one sub-folder per case, ``<id>-<mod>.nii.gz`` inside

In folder layouts the case id is the folder name (the orchestrator renames cases, so
nothing depends on a real id); in the flat layout it is the file prefix. Discovery ignores
``seg`` files silently and unrelated files with a warning; training, ``tune`` and
``evaluate`` find label maps with :func:`find_label_maps` and :func:`label_file`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from submission.brats import (
    LAYOUT_YEARS,
    MODALITIES,
    NIFTI_EXTENSIONS,
    SEG_SUFFIX,
    is_valid_case_id,
    modality_filename,
    parse_filename,
    prediction_filename,
)
from submission.exit_codes import UnusableError
from submission.io.nifti import NAME_MAX, Grid, NiftiError, grid_of, nifti_stem, read_nifti

log = logging.getLogger(__name__)

AFFINE_TOLERANCE = 1e-3


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
    """A discovered case: its id, naming convention and one file per canonical modality."""

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


def discover_cases(input_dir: Path) -> Discovery:
    """Find the cases in ``input_dir`` whatever its layout.

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
            _discover_folder(entry, found, hidden)
            continue
        parsed = parse_filename(entry.name)
        if parsed is None:
            found.warnings.append(f"ignored unrelated file {entry}")
        elif parsed.modality != SEG_SUFFIX:
            flat[parsed.case_id][parsed.modality].append(entry)
    for case_id, by_modality in flat.items():
        _add_case(found, case_id, by_modality, input_dir)
    _refuse_duplicate_ids(found)
    if hidden:
        found.warnings.append(
            f"ignored {len(hidden)} hidden file(s) or folder(s) (names starting with '.', such "
            f"as macOS '._' files, and __MACOSX folders), e.g. {hidden[0]}"
        )
    if not found.cases and not found.errors:
        raise InputError(
            f"no BraTS case in {input_dir}: expected case folders or files named like "
            "<id>_t1ce.nii.gz (2021) or <id>-t1c.nii.gz (2023+)"
        )
    found.cases.sort(key=lambda c: c.case_id)
    return found


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


def _discover_folder(folder: Path, found: Discovery, hidden: list[Path]) -> None:
    by_modality: dict[str, list[Path]] = defaultdict(list)
    unrelated, notes = [], []
    for entry in _visible(folder, hidden):
        parsed = parse_filename(entry.name) if entry.is_file() else None
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
        _add_case(found, folder.name, by_modality, folder)
    else:
        found.warnings.append(f"ignored folder {folder}: no BraTS image files in it")


def _add_case(
    found: Discovery, case_id: str, by_modality: dict[str, list[Path]], folder: Path
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
    missing = [m for m in MODALITIES if m not in by_modality]
    if missing:
        have = ", ".join(m for m in MODALITIES if m in by_modality)
        found.errors.append(
            CaseError(
                case_id,
                f"expected 4 modalities, missing {', '.join(missing)} (found {have})",
                folder,
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
            "2021" if years == {"2021"} else "2023",
            {m: by_modality[m][0] for m in MODALITIES},
            folder,
        )
    )


def label_map_case_id(name: str) -> str | None:
    """Case id of a reference label map's file name, or None when the name is not one.

    ``<id>_seg.nii.gz`` (2021), ``<id>-seg.nii.gz`` (2023+) and a bare ``<id>.nii.gz``
    (the name predictions carry) name a label map of ``<id>``; ``.nii`` works too. Modality
    images, hidden files and non-NIfTI files name none.
    """
    stem = nifti_stem(name)
    if stem is None or name.startswith("."):
        return None
    parsed = parse_filename(name)
    if parsed is None:
        return stem
    return parsed.case_id if parsed.modality == SEG_SUFFIX else None


def _label_maps_in(folder: Path, case_id: str | None = None) -> dict[str, list[Path]]:
    """Label maps among ``folder``'s files by case id; only ``case_id``'s when given."""
    found: dict[str, list[Path]] = defaultdict(list)
    for entry in sorted(folder.iterdir()):
        case = label_map_case_id(entry.name) if entry.is_file() else None
        if case is not None and case_id in (None, case):
            found[case].append(entry)
    return found


def _flat_names(case_id: str) -> list[str]:
    """Every file name that :func:`label_map_case_id` may read as ``case_id``."""
    stems = [modality_filename(case_id, SEG_SUFFIX, y)[: -len(".nii.gz")] for y in LAYOUT_YEARS]
    return [stem + ext for stem in [*stems, case_id] for ext in NIFTI_EXTENSIONS]


def _two_maps(paths: list[Path]) -> str:
    return f"two reference label maps, {' and '.join(map(str, paths))}; keep one of them"


def find_label_maps(folder: Path) -> dict[str, Path]:
    """Reference label maps in a folder by case id, sorted by id: the one rule.

    Training (:func:`label_file`), ``bratskit tune`` and ``bratskit evaluate`` all use it,
    so they agree on which cases are labelled. A label map of case ``<id>`` is a file
    named as :func:`label_map_case_id` says, lying either flat in ``folder`` or in the case
    folder ``folder/<id>/``. Inside a case folder only that folder's id counts, so the
    images beside it and another case's label map are ignored. As the BraTS training
    data is released: ``BraTS2021_00000/BraTS2021_00000_seg.nii.gz``,
    ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-seg.nii.gz``.

    Raises:
        ValueError: the folder is missing, holds no label map, or holds two for one case.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"reference folder {folder} does not exist")
    found = _label_maps_in(folder)
    for case_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        found[case_folder.name] += _label_maps_in(case_folder, case_folder.name)[case_folder.name]
    for case, paths in sorted(found.items()):
        if len(paths) > 1:
            raise ValueError(f"case {case}: {_two_maps(paths)}")
    labelled = {case: paths[0] for case, paths in sorted(found.items()) if paths}
    if not labelled:
        raise ValueError(
            f"no reference label maps in {folder}: expected <id>_seg.nii.gz, "
            "<id>-seg.nii.gz or <id>.nii.gz, flat or in case folders <id>/"
        )
    return labelled


def label_file(case: Case) -> Path | None:
    """The reference label map of a discovered case, by :func:`find_label_maps`'s rule.

    It lies beside the case's images, or, for a case in its own folder, flat beside that
    folder. Training data only: the organisers' ``/input`` holds no label maps.

    Raises:
        CaseError: two label maps name the case.
    """
    paths = []
    if case.folder.name == case.case_id:  # a case folder: beside it, by name (no listing)
        paths = [
            path
            for path in (case.folder.parent / n for n in _flat_names(case.case_id))
            if path.is_file() and label_map_case_id(path.name) == case.case_id
        ]
    paths += _label_maps_in(case.folder, case.case_id)[case.case_id]
    if len(paths) > 1:
        raise CaseError(case.case_id, _two_maps(paths))
    return paths[0] if paths else None


def read_case_grid(case: Case) -> Grid:
    """Grid of a case's first modality, from its header alone (no voxel data read)."""
    path = case.files[MODALITIES[0]]
    try:
        return grid_of(nib.load(path))
    except Exception as exc:
        raise CaseError(case.case_id, f"cannot read header ({exc})", path) from None


def load_case(case: Case) -> tuple[np.ndarray, Grid]:
    """Load and check the four modalities of a case.

    Returns:
        ``image_cdhw``: float32 (4, D, H, W) in :data:`MODALITIES` order, voxel axes as
        stored in the files; and the grid of the first modality, copied onto outputs.

    Raises:
        CaseError: a file unreadable, not 3-D, with NaN/inf or all zeros, or a shape or
            affine (tolerance 1e-3) differing from the first modality.
    """
    channels, grid = [], None
    for modality in MODALITIES:
        path = case.files[modality]
        try:
            img, data = read_nifti(path)
        except NiftiError as exc:
            raise CaseError(case.case_id, f"{modality}: {exc}") from None
        if data.ndim != 3:
            raise CaseError(case.case_id, f"{modality} must be 3-D, got shape {data.shape}", path)
        if grid is None:
            grid = grid_of(img)
        elif tuple(data.shape) != grid.shape:
            raise CaseError(
                case.case_id,
                f"{modality} has shape {data.shape}, {MODALITIES[0]} has {grid.shape}",
                path,
            )
        elif not np.allclose(img.affine, grid.affine, atol=AFFINE_TOLERANCE):
            raise CaseError(
                case.case_id,
                f"{modality} affine differs from {MODALITIES[0]}'s by more than "
                f"{AFFINE_TOLERANCE}; co-register the modalities",
                path,
            )
        image = np.asarray(data, dtype=np.float32)
        if not np.all(np.isfinite(image)):
            raise CaseError(case.case_id, f"{modality} holds NaN or infinite voxels", path)
        if not image.any():
            raise CaseError(case.case_id, f"{modality} is all zeros", path)
        channels.append(image)
    return np.stack(channels), grid
