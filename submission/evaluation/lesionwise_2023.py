"""BraTS 2023 lesion-wise Dice and HD95 (CONTRACT.md section 5, "2023 lesion-wise").

Follows the organisers' script (Saluja et al., BraTS-2023-Metrics ``metrics.py``,
``get_LesionWiseScores`` / ``get_LesionWiseResults``) region by region (WT, TC, ET):

1. Ground-truth lesions are 26-connected components of the region; components whose
   dilations touch are merged: the region is dilated ``dilation`` times with
   ``generate_binary_structure(3, 2)``, the dilated mask split into 26-connected
   components, and each ground-truth voxel takes the id of its dilated component.
2. Predicted components (26-connected) that overlap a lesion's own dilated mask are
   that lesion's true positives; a component may serve several lesions. The lesion's
   Dice and HD95 compare the lesion with the union of those whole components. HD95 is
   DeepMind's area-weighted robust Hausdorff (:mod:`.surfel_distance`), exactly as the
   script calls it.
3. Lesions of volume (mm^3) at most ``min_volume`` are dropped from the score; a
   predicted component touching only such a lesion is not a false positive either.
4. Every kept missed lesion scores Dice 0 and HD95 374; every predicted component that
   touches no lesion is a false positive scoring Dice 0 and HD95 374. The region score
   is the mean over kept lesions plus false positives. An infinite distance becomes 374.
5. Nothing to average (the region is empty in both, or holds only dropped lesions and no
   false positive) gives Dice 1 and HD95 0.

Per-cohort parameters are those of the official script: dilation 3 and 50 mm^3 for
GLI, SSA and PED; dilation 1 and 50 mm^3 for MEN; dilation 1 and 2 mm^3 for MET.
Lesion volumes use the reference header's spacing (the script reads the prediction's;
they agree on any valid submission). A missing prediction is scored as an empty one,
so every kept lesion counts as missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from submission.brats import LabelScheme
from submission.evaluation.regions import tumour_region_pairs
from submission.evaluation.surfel_distance import robust_hausdorff

METRICS_2023: tuple[str, ...] = ("lesion_dice", "lesion_hd95")
#: HD95 of a missed lesion, a false-positive component, or an infinite distance.
PENALTY_HD95_2023 = 374.0

_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
_DILATION_STRUCTURE = ndimage.generate_binary_structure(3, 2)

Spacing = tuple[float, ...]


@dataclass(frozen=True)
class LesionParams:
    """Per-cohort settings of the 2023 lesion-wise script."""

    dilation: int
    min_volume: float  # mm^3; lesions at or below it are dropped


#: Official per-cohort parameters; ``mets`` and ``menpre`` are the 2025 spellings.
LESION_PARAMS_2023: dict[str, LesionParams] = {
    "gli": LesionParams(3, 50.0),
    "ssa": LesionParams(3, 50.0),
    "ped": LesionParams(3, 50.0),
    "men": LesionParams(1, 50.0),
    "met": LesionParams(1, 2.0),
}
_ALIASES = {"mets": "met", "menpre": "men"}


def lesion_params(cohort: str) -> LesionParams:
    """Parameters of a cohort (gli, ssa, ped, men, met), with an error naming the choices."""
    key = _ALIASES.get(cohort.lower(), cohort.lower())
    try:
        return LESION_PARAMS_2023[key]
    except KeyError:
        raise ValueError(
            f"unknown 2023 cohort {cohort!r}; choose one of {', '.join(LESION_PARAMS_2023)}"
        ) from None


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(box, shape, strict=True)
    )


def _union(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True)
    )


def merged_lesions(ref: np.ndarray, dilation: int) -> tuple[np.ndarray, int]:
    """Ground-truth lesions after merging components that touch once dilated.

    Args:
        ref: bool mask (D, H, W) of one region.
        dilation: iterations of the 18-connected dilation.

    Returns:
        int32 lesion ids (same shape, 0 outside the mask) and the number of lesions.
    """
    lesions = np.zeros(ref.shape, dtype=np.int32)
    if not ref.any():
        return lesions, 0
    box = _grow(ndimage.find_objects(ref.astype(np.uint8))[0], dilation, ref.shape)
    dilated = ndimage.binary_dilation(ref[box], structure=_DILATION_STRUCTURE, iterations=dilation)
    dilated_ids, count = ndimage.label(dilated, structure=_CONNECTIVITY_26)
    lesions[box] = np.where(ref[box], dilated_ids, 0)
    return lesions, int(count)


def _lesion_scores(
    lesions: np.ndarray,
    pred_ids: np.ndarray,
    spacing: Spacing,
    params: LesionParams,
) -> tuple[list[float], list[float], set[int]]:
    """Dice and HD95 of every kept lesion, and the ids of all matched predicted components."""
    voxel_volume = math.prod(float(s) for s in spacing)
    pred_boxes = ndimage.find_objects(pred_ids)
    dices: list[float] = []
    hd95s: list[float] = []
    matched: set[int] = set()
    for lesion_id, lesion_box in enumerate(ndimage.find_objects(lesions), start=1):
        if lesion_box is None:
            continue
        box = _grow(lesion_box, params.dilation, lesions.shape)
        lesion = lesions[box] == lesion_id
        reach = ndimage.binary_dilation(
            lesion, structure=_DILATION_STRUCTURE, iterations=params.dilation
        )
        hits = np.unique(pred_ids[box][reach])
        hits = hits[hits != 0]
        matched.update(int(h) for h in hits)
        if np.count_nonzero(lesion) * voxel_volume <= params.min_volume:
            continue
        if hits.size == 0:
            dices.append(0.0)
            hd95s.append(PENALTY_HD95_2023)
            continue
        for hit in hits:
            box = _union(box, pred_boxes[hit - 1])
        lesion = lesions[box] == lesion_id
        found = np.isin(pred_ids[box], hits)
        overlap = np.count_nonzero(lesion & found)
        dices.append(2.0 * overlap / (np.count_nonzero(lesion) + np.count_nonzero(found)))
        distance = robust_hausdorff(lesion, found, tuple(spacing))
        hd95s.append(distance if math.isfinite(distance) else PENALTY_HD95_2023)
    return dices, hd95s, matched


def score_region_2023(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Spacing = (1.0, 1.0, 1.0),
    params: LesionParams = LESION_PARAMS_2023["gli"],
) -> dict[str, float]:
    """Lesion-wise Dice and HD95 of one region (bool masks (D, H, W) of one shape)."""
    lesions, _ = merged_lesions(ref, params.dilation)
    pred_ids, n_pred = ndimage.label(pred, structure=_CONNECTIVITY_26)
    dices, hd95s, matched = _lesion_scores(lesions, pred_ids, spacing, params)
    n_false_positive = int(n_pred) - len(matched)
    denominator = len(dices) + n_false_positive
    if denominator == 0:
        return {"lesion_dice": 1.0, "lesion_hd95": 0.0}
    return {
        "lesion_dice": float(sum(dices) / denominator),
        "lesion_hd95": float((sum(hd95s) + PENALTY_HD95_2023 * n_false_positive) / denominator),
    }


def score_2023(
    pred_dhw: np.ndarray | None,
    ref_dhw: np.ndarray,
    spacing: Spacing = (1.0, 1.0, 1.0),
    labels: LabelScheme | str = "2023",
    cohort: str = "gli",
) -> dict[str, dict[str, float]]:
    """Score one case the way the BraTS 2023 lesion-wise script does.

    Args:
        pred_dhw: integer label map (D, H, W) in the ``labels`` scheme, or None for a
            missing prediction (scored as empty: every kept lesion missed).
        ref_dhw: reference label map, same shape and scheme.
        spacing: voxel size in mm along the array axes, from the reference header.
        labels: label scheme of both maps.
        cohort: gli, ssa, ped, men or met; selects dilation and volume threshold.

    Returns:
        ``{region: {"lesion_dice": ..., "lesion_hd95": ...}}`` for WT, TC, ET.
    """
    params = lesion_params(cohort)
    if pred_dhw is None:
        pred_dhw = np.zeros_like(ref_dhw)
    return {
        region: score_region_2023(pred, ref, spacing, params)
        for region, pred, ref in tumour_region_pairs(pred_dhw, ref_dhw, labels)
    }
