"""Match prediction files to reference label maps by case id (CONTRACT.md sections 3 and 5).

References are found by the rule training and ``tune`` use too,
:func:`submission.io.references.find_label_maps`: ``<id>_seg.nii.gz`` (2021),
``<id>-seg.nii.gz`` (2023+) or ``<id>.nii.gz``, lying flat in the reference folder or
inside case folders ``DIR/<id>/``. Predictions must be named exactly
``<id>.nii.gz`` (the only name the organisers accept) and lie flat in the prediction
folder; any other NIfTI file there is reported as unmatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from submission.io.nifti import nifti_stem
from submission.io.references import find_label_maps


@dataclass(frozen=True)
class CasePair:
    """One reference and its prediction (None when the prediction is missing)."""

    case: str
    ref: Path
    pred: Path | None


def find_predictions(pred_dir: Path) -> dict[str, Path]:
    """Prediction files ``<id>.nii.gz`` (or ``.nii``) by file-name id, sorted by id."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise ValueError(f"prediction folder {pred_dir} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(p for p in pred_dir.iterdir() if p.is_file()):
        case = nifti_stem(path.name)
        if case is None or path.name.startswith("."):
            continue
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
    references = find_label_maps(ref_dir)
    predictions = find_predictions(pred_dir)
    pairs = [CasePair(case, ref, predictions.get(case)) for case, ref in references.items()]
    unmatched = sorted(p.name for case, p in predictions.items() if case not in references)
    return pairs, unmatched
