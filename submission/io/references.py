"""The one rule that finds reference label maps (:func:`find_label_maps`), used by
training, ``tune``, ``evaluate`` and ``view`` so they agree on which cases are labelled."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from submission.brats import (
    LAYOUT_YEARS,
    NIFTI_EXTENSIONS,
    SEG_SUFFIX,
    modality_filename,
    parse_filename,
)
from submission.io.cases import Case, CaseError
from submission.io.nifti import nifti_stem


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
