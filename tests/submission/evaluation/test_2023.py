"""BraTS 2023 lesion-wise scores: the organisers' conventions on hand-made masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from submission.brats import get_scheme
from submission.evaluation import score_2023
from submission.evaluation.lesionwise_2023 import (
    LESION_PARAMS_2023,
    LesionParams,
    lesion_params,
    merged_lesions,
    score_region_2023,
)
from submission.evaluation.surfel_distance import robust_hausdorff, surfel_area_table

GLI = LESION_PARAMS_2023["gli"]  # dilation 3, lesions of at most 50 mm^3 dropped
MET = LESION_PARAMS_2023["met"]  # dilation 1, lesions of at most 2 mm^3 dropped
SHAPE = (40, 40, 40)


def _cube(mask: np.ndarray, corner: tuple[int, int, int], size: int = 4) -> np.ndarray:
    x, y, z = corner
    mask[x : x + size, y : y + size, z : z + size] = True
    return mask


def _empty() -> np.ndarray:
    return np.zeros(SHAPE, dtype=bool)


def test_cohort_parameters_follow_the_official_script():
    assert lesion_params("gli") == LesionParams(3, 50.0)
    assert lesion_params("SSA") == LesionParams(3, 50.0)
    assert lesion_params("ped") == LesionParams(3, 50.0)
    assert lesion_params("men") == LesionParams(1, 50.0)
    assert lesion_params("met") == lesion_params("mets") == LesionParams(1, 2.0)
    with pytest.raises(ValueError, match="gli, ssa, ped, men, met"):
        lesion_params("goat")


def test_region_empty_in_both_scores_dice_1_hd95_0():
    assert score_region_2023(_empty(), _empty()) == {"lesion_dice": 1.0, "lesion_hd95": 0.0}


def test_perfect_match_scores_dice_1_hd95_0():
    ref = _cube(_empty(), (5, 5, 5))  # 64 voxels, kept
    assert score_region_2023(ref.copy(), ref) == {"lesion_dice": 1.0, "lesion_hd95": 0.0}


def test_missed_lesion_counts_dice_0_hd95_374():
    ref = _cube(_cube(_empty(), (2, 2, 2)), (30, 30, 30))
    pred = _cube(_empty(), (2, 2, 2))
    # Lesion A: Dice 1, HD95 0; lesion B missed: Dice 0, HD95 374.
    assert score_region_2023(pred, ref, params=GLI) == {"lesion_dice": 0.5, "lesion_hd95": 187.0}


def test_false_positive_component_counts_dice_0_hd95_374():
    ref = _cube(_empty(), (2, 2, 2))
    pred = _cube(_cube(_empty(), (2, 2, 2)), (30, 30, 30))
    assert score_region_2023(pred, ref, params=GLI) == {"lesion_dice": 0.5, "lesion_hd95": 187.0}
    # Reference empty: every predicted component is a false positive.
    assert score_region_2023(pred, _empty(), params=GLI) == {
        "lesion_dice": 0.0,
        "lesion_hd95": 374.0,
    }


def test_prediction_touching_only_the_dilated_lesion_is_a_true_positive():
    ref = _cube(_empty(), (10, 10, 10))  # x 10..13
    pred = _cube(_empty(), (16, 10, 10))  # x 16..19: a 2-voxel gap, inside 3 dilations
    scores = score_region_2023(pred, ref, params=GLI)
    assert scores["lesion_dice"] == 0.0  # matched, so not a false positive, but no overlap
    assert scores["lesion_hd95"] == pytest.approx(robust_hausdorff(ref, pred))
    assert scores["lesion_hd95"] < 374.0


def test_close_lesions_merge_after_dilation():
    # Two 64-voxel cubes with a 3-voxel gap: merged by 3 dilations (GLI), not by 1 (MET).
    a = _cube(_empty(), (5, 5, 5))  # x 5..8
    b = _cube(_empty(), (12, 5, 5))  # x 12..15
    ref = a | b
    assert merged_lesions(ref, GLI.dilation)[1] == 1
    assert merged_lesions(ref, MET.dilation)[1] == 2
    merged = score_region_2023(a, ref, params=GLI)
    # One lesion of 128 voxels against the 64 predicted: Dice 2*64/(128+64).
    assert merged["lesion_dice"] == pytest.approx(2 / 3)
    assert merged["lesion_hd95"] == pytest.approx(robust_hausdorff(ref, a))
    separate = score_region_2023(a, ref, params=MET)
    # Lesion A found (1, 0), lesion B missed (0, 374).
    assert separate == {"lesion_dice": 0.5, "lesion_hd95": 187.0}


def test_volume_threshold_drops_tiny_lesions():
    big = _cube(_empty(), (5, 5, 5))  # 64 voxels
    tiny = _cube(_empty(), (30, 30, 30), size=2)  # 8 voxels: dropped for GLI, kept for MET
    ref = big | tiny
    assert score_region_2023(big, ref, params=GLI) == {"lesion_dice": 1.0, "lesion_hd95": 0.0}
    assert score_region_2023(big, ref, params=MET) == {"lesion_dice": 0.5, "lesion_hd95": 187.0}
    # A component on a dropped lesion is no false positive; the big lesion is missed.
    assert score_region_2023(tiny, ref, params=GLI) == {"lesion_dice": 0.0, "lesion_hd95": 374.0}
    # Only dropped lesions and nothing predicted: nothing to average.
    assert score_region_2023(_empty(), tiny, params=GLI) == {
        "lesion_dice": 1.0,
        "lesion_hd95": 0.0,
    }


def test_lesion_volume_uses_the_voxel_spacing():
    tiny = _cube(_empty(), (5, 5, 5), size=2)  # 8 voxels
    # At 2 mm the 8 voxels hold 64 mm^3 > 50: kept and missed.
    assert score_region_2023(_empty(), tiny, (2.0, 2.0, 2.0), GLI)["lesion_dice"] == 0.0
    assert score_region_2023(_empty(), tiny, (1.0, 1.0, 1.0), GLI)["lesion_dice"] == 1.0


def test_score_2023_reads_regions_from_labels_and_treats_missing_as_empty():
    scheme = get_scheme("2023")
    ref = np.zeros(SHAPE, dtype=np.uint8)
    ref[5:15, 5:15, 5:15] = scheme.labels["SNFH"]
    ref[8:12, 8:12, 8:12] = scheme.labels["ET"]  # 64 voxels of ET, also TC
    scores = score_2023(ref.copy(), ref, labels="2023", cohort="gli")
    assert scores == {r: {"lesion_dice": 1.0, "lesion_hd95": 0.0} for r in ("WT", "TC", "ET")}
    missing = score_2023(None, ref, labels="2023", cohort="gli")
    assert missing == {r: {"lesion_dice": 0.0, "lesion_hd95": 374.0} for r in ("WT", "TC", "ET")}


def test_surfel_area_table():
    table = surfel_area_table((1.0, 1.0, 1.0))
    assert table[0] == 0.0 and table[255] == 0.0
    assert table[1] == pytest.approx(math.sqrt(3) / 8)  # one corner: a small triangle
    assert table[0b00001111] == pytest.approx(1.0)  # a flat face across the cell
    # The flat face is normal to the first axis: its area scales with the other two.
    assert surfel_area_table((1.0, 2.0, 3.0))[0b00001111] == pytest.approx(6.0)


def test_robust_hausdorff_conventions():
    a = _cube(_empty(), (5, 5, 5))
    assert robust_hausdorff(a, a) == 0.0
    assert robust_hausdorff(a, _empty()) == math.inf
    b = np.roll(a, 3, axis=1)
    assert robust_hausdorff(a, b, (2.0, 2.0, 2.0)) == pytest.approx(2 * robust_hausdorff(a, b))
