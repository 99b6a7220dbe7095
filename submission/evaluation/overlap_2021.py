"""BraTS 2021 (CaPTk) scores: Dice, HD95, sensitivity and specificity (CONTRACT.md section 5).

The organisers' 2021 pipeline (CaPTk) follows medpy's definitions, reproduced here with
scipy only (medpy is the test reference, never a run-time dependency):

- Dice ``2|P & R| / (|P| + |R|)``; both masks empty gives 1.
- HD95: the 95th percentile (``numpy.percentile``, linear) of the pooled symmetric
  distances between the two surfaces, where a surface is ``mask XOR
  binary_erosion(mask, generate_binary_structure(3, 1))`` (scipy's default border, so a
  mask touching the volume edge has a surface there) and distances come from
  ``distance_transform_edt`` with the voxel spacing in mm. Both empty gives 0; exactly
  one empty gives the image diagonal in mm (373.13 for 240 x 240 x 155 at 1 mm).
- Sensitivity ``TP / (TP + FN)`` and specificity ``TN / (TN + FP)`` over all voxels.
  Both masks empty gives 1 and 1. Any other zero denominator gives 0, as medpy does:
  only the reference empty (a false-positive region) scores sensitivity 0, and a
  reference covering the whole volume scores specificity 0.

A case the organisers could not score (no prediction, unreadable file, wrong grid)
gets :data:`FAILED_2021`: Dice 0, HD95 374, sensitivity 0, specificity 0.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from submission.brats import TUMOUR_REGIONS, LabelScheme
from submission.evaluation.regions import tumour_region_pairs

METRICS_2021: tuple[str, ...] = ("dice", "hd95", "sensitivity", "specificity")
#: Scores of a case that failed to score (CONTRACT.md section 5, 2021).
FAILED_2021: dict[str, float] = {"dice": 0.0, "hd95": 374.0, "sensitivity": 0.0, "specificity": 0.0}

Spacing = tuple[float, ...]


def image_diagonal(shape: tuple[int, ...], spacing: Spacing) -> float:
    """Length in mm of the volume's diagonal, the HD95 when exactly one mask is empty."""
    return math.sqrt(sum((n * float(s)) ** 2 for n, s in zip(shape, spacing, strict=True)))


def _padded_box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask, grown by ``pad`` voxels and clamped to the volume."""
    box = []
    for axis, size in enumerate(mask.shape):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, size)))
    return tuple(box)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two bool masks of one shape; 1 when both are empty."""
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & ref)) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    footprint = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0)) -> float:
    """medpy's ``hd95`` with the CaPTk empty-mask conventions.

    Args:
        pred: bool mask (D, H, W).
        ref: bool mask of the same shape.
        spacing: voxel size in mm along the array axes (from the reference header).

    Returns:
        HD95 in mm; 0 when both masks are empty, the image diagonal when exactly one is.
    """
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if not has_pred or not has_ref:
        return image_diagonal(pred.shape, spacing)
    # Cropping to the union's box plus one voxel changes nothing: every surface voxel
    # and its nearest counterpart lie inside, and where the box meets the volume edge
    # the erosion still sees scipy's zero border exactly as on the full volume.
    box = _padded_box(pred | ref, pad=1)
    pred_surface, ref_surface = _surface(pred[box]), _surface(ref[box])
    sampling = tuple(float(s) for s in spacing)
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=sampling)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)[ref_surface]
    return float(np.percentile(np.hstack((to_ref, to_pred)), 95))


def sensitivity_specificity(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Voxel-wise sensitivity and specificity; 1 and 1 when both masks are empty.

    A zero denominator otherwise gives 0 (medpy's convention; see the module docstring).
    """
    tp = int(np.count_nonzero(pred & ref))
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    if n_pred == 0 and n_ref == 0:
        return 1.0, 1.0
    fn, fp = n_ref - tp, n_pred - tp
    tn = pred.size - (n_pred + n_ref - tp)
    sensitivity = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    return sensitivity, specificity


def score_region_2021(
    pred: np.ndarray, ref: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """All four 2021 metrics of one region (bool masks of one shape)."""
    sensitivity, specificity = sensitivity_specificity(pred, ref)
    return {
        "dice": dice(pred, ref),
        "hd95": hd95(pred, ref, spacing),
        "sensitivity": sensitivity,
        "specificity": specificity,
    }


def score_2021(
    pred_dhw: np.ndarray,
    ref_dhw: np.ndarray,
    spacing: Spacing = (1.0, 1.0, 1.0),
    labels: LabelScheme | str = "2021",
) -> dict[str, dict[str, float]]:
    """Score one case the way the BraTS 2021 evaluator does.

    Args:
        pred_dhw: integer label map (D, H, W) in the ``labels`` scheme.
        ref_dhw: reference label map, same shape and scheme.
        spacing: voxel size in mm along the array axes, from the reference header.
        labels: label scheme of both maps (labels outside it count as background).

    Returns:
        ``{region: {metric: value}}`` for WT, TC, ET and metrics :data:`METRICS_2021`.
    """
    return {
        region: score_region_2021(pred, ref, spacing)
        for region, pred, ref in tumour_region_pairs(pred_dhw, ref_dhw, labels)
    }


def failed_2021() -> dict[str, dict[str, float]]:
    """Scores of a case that could not be scored: :data:`FAILED_2021` for every region."""
    return {region: dict(FAILED_2021) for region in TUMOUR_REGIONS}
