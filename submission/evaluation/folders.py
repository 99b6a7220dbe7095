"""Match prediction files to reference label maps by case id (CONTRACT.md sections 3 and 5).

References may be named ``<id>_seg.nii.gz`` (2021), ``<id>-seg.nii.gz`` (2023+) or
``<id>.nii.gz``, lying flat in the reference folder or inside case folders
``DIR/<id>/``; inside a case folder only the label map of that folder's id counts, so
the modality images next to it are ignored. Predictions must be named exactly
``<id>.nii.gz`` (the only name the organisers accept) and lie flat in the prediction
folder; any other NIfTI file there is reported as unmatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from submission.brats import NIFTI_EXTENSIONS, SEG_SUFFIX, parse_filename


@dataclass(frozen=True)
class CasePair:
    """One reference and its prediction (None when the prediction is missing)."""

    case: str
    ref: Path
    pred: Path | None


def _strip_extension(name: str) -> str | None:
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and _strip_extension(p.name)
    )


def reference_case_id(name: str) -> str | None:
    """Case id of a reference file name, or None for a modality image or a non-NIfTI file."""
    stem = _strip_extension(name)
    if stem is None:
        return None
    parsed = parse_filename(name)
    if parsed is None:
        return stem
    return parsed.case_id if parsed.modality == SEG_SUFFIX else None


def _add(found: dict[str, Path], case: str, path: Path) -> None:
    if case in found:
        raise ValueError(
            f"two reference label maps for case {case}: {found[case]} and {path}; keep one of them"
        )
    found[case] = path


def find_references(ref_dir: Path) -> dict[str, Path]:
    """Reference label maps by case id, sorted by id.

    Raises:
        ValueError: the folder is missing, holds no label map, or holds two for one case.
    """
    ref_dir = Path(ref_dir)
    if not ref_dir.is_dir():
        raise ValueError(f"reference folder {ref_dir} does not exist")
    found: dict[str, Path] = {}
    for path in _nifti_files(ref_dir):
        case = reference_case_id(path.name)
        if case is not None:
            _add(found, case, path)
    for folder in sorted(p for p in ref_dir.iterdir() if p.is_dir()):
        for path in _nifti_files(folder):
            if reference_case_id(path.name) == folder.name:
                _add(found, folder.name, path)
    if not found:
        raise ValueError(
            f"no reference label maps in {ref_dir}: expected <id>_seg.nii.gz, "
            "<id>-seg.nii.gz or <id>.nii.gz, flat or in case folders <id>/"
        )
    return dict(sorted(found.items()))


def find_predictions(pred_dir: Path) -> dict[str, Path]:
    """Prediction files ``<id>.nii.gz`` (or ``.nii``) by file-name id, sorted by id."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise ValueError(f"prediction folder {pred_dir} does not exist")
    found: dict[str, Path] = {}
    for path in _nifti_files(pred_dir):
        case = _strip_extension(path.name)
        if case in found:
            raise ValueError(f"two predictions for case {case}: {found[case]} and {path}")
        found[case] = path
    return found


def match_cases(pred_dir: Path, ref_dir: Path) -> tuple[list[CasePair], list[str]]:
    """Pair every reference with its prediction.

    Returns:
        The pairs in case-id order (``pred`` None where missing), and the file names of
        predictions that match no reference.
    """
    references = find_references(ref_dir)
    predictions = find_predictions(pred_dir)
    pairs = [CasePair(case, ref, predictions.get(case)) for case, ref in references.items()]
    unmatched = sorted(p.name for case, p in predictions.items() if case not in references)
    return pairs, unmatched
