"""Case discovery in the three input layouts of CONTRACT.md section 1 and case loading
(reference label maps are found by :mod:`submission.io.references`).

Layouts:
    2021 flat     the four ``<id>_<mod>.nii.gz`` files directly in the input folder
    2021 folders  one sub-folder per case, ``<id>_<mod>.nii.gz`` inside
    2023+ folders one sub-folder per case, ``<id>-<mod>.nii.gz`` inside

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
        raise InputError(_no_case(input_dir))
    found.cases.sort(key=lambda c: c.case_id)
    return found


def _no_case(input_dir: Path) -> str:
    """Why an input folder holds no case: empty, only hidden or unrelated entries, or cases
    one folder too deep (``/input/data/<case>/``, which an archive often leaves)."""
    expected = (
        "expected case folders or files named like <id>_t1ce.nii.gz (2021) or "
        "<id>-t1c.nii.gz (2023+)"
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


def _discover_folder(folder: Path, found: Discovery, hidden: list[Path]) -> None:
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
        _add_case(found, folder.name, by_modality, folder)
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
        image = np.asarray(data, dtype=np.float32)
        if not image.any():
            # The task issue's missing-modality policy would predict such a case; this
            # version has none, and says so.
            raise CaseError(
                case.case_id,
                f"{modality} is all zeros: a missing modality, and this version has no "
                "missing-modality policy, so the case is not predicted; supply the image",
                path,
            )
        channels.append(image)
    return np.stack(channels), grid
