"""BraTS 2021 (CaPTk) scores: parity with medpy and the empty-mask conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from submission.brats import get_scheme, labels_to_regions
from submission.evaluation import score_2021
from submission.evaluation.overlap_2021 import (
    FAILED_2021,
    dice,
    failed_2021,
    hd95,
    image_diagonal,
    sensitivity_specificity,
)
from submission.io.nifti import read_label_map
from tests.conftest import REAL_DATA

REAL = REAL_DATA
SEGMENTATIONS = REAL / "TCGA-FG-6692" / "segmentations"
PAIRS = [("isen-20", "scan-20"), ("sanet0-20", "hnfnetv1-20"), ("yixinmpl-20", "isen-20")]


@pytest.fixture(scope="module")
def medpy_binary():
    return pytest.importorskip("medpy.metric.binary", reason="medpy is the 2021 reference")


@pytest.fixture(scope="module")
def real_maps() -> dict[str, tuple[np.ndarray, tuple[float, ...]]]:
    if not SEGMENTATIONS.is_dir():
        pytest.skip(f"real label maps not found at {SEGMENTATIONS} (shared data absent)")
    maps = {}
    for path in sorted(SEGMENTATIONS.glob("*.nii.gz")):
        seg, grid = read_label_map(path)
        maps[path.name.removesuffix(".nii.gz")] = (seg, grid.spacing)
    return maps


def _medpy_scores(medpy_binary, pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, float]:
    return {
        "dice": medpy_binary.dc(pred, ref),
        "hd95": medpy_binary.hd95(pred, ref, voxelspacing=spacing),
        "sensitivity": medpy_binary.sensitivity(pred, ref),
        "specificity": medpy_binary.specificity(pred, ref),
    }


@pytest.mark.parametrize(("pred_name", "ref_name"), PAIRS)
def test_score_2021_equals_medpy_on_real_label_maps(medpy_binary, real_maps, pred_name, ref_name):
    pred, spacing = real_maps[pred_name]
    ref, _ = real_maps[ref_name]
    scores = score_2021(pred, ref, spacing, labels="2021")
    assert list(scores) == ["WT", "TC", "ET"]
    scheme = get_scheme("2021")
    pred_rdhw, ref_rdhw = labels_to_regions(pred, scheme), labels_to_regions(ref, scheme)
    for i, region in enumerate(scheme.region_names):
        expected = _medpy_scores(medpy_binary, pred_rdhw[i], ref_rdhw[i], spacing)
        got = scores[region]
        for metric in ("dice", "sensitivity", "specificity"):
            assert got[metric] == pytest.approx(expected[metric], abs=1e-6), (region, metric)
        assert got["hd95"] == pytest.approx(expected["hd95"], abs=1e-3), region


def _blob(shape, seed, threshold=0.55) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 1.5) > threshold


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.9, 1.3, 2.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_equals_medpy_with_anisotropic_spacing_and_masks_touching_the_edge(
    medpy_binary, spacing, seed
):
    # Random blobs fill the whole small volume, so the crop meets the volume edge.
    pred, ref = _blob((24, 20, 16), seed), _blob((24, 20, 16), seed + 10)
    assert pred.any() and ref.any()
    assert pred[0].any() or pred[-1].any()
    expected = medpy_binary.hd95(pred, ref, voxelspacing=spacing)
    assert hd95(pred, ref, spacing) == pytest.approx(expected, abs=1e-9)


def test_hd95_of_a_small_shift_is_the_shift():
    ref = np.zeros((20, 20, 20), dtype=bool)
    ref[5:10, 5:10, 5:10] = True
    pred = np.roll(ref, 2, axis=0)
    assert hd95(pred, ref, (1.0, 1.0, 1.0)) == pytest.approx(2.0)
    assert hd95(pred, ref, (3.0, 1.0, 1.0)) == pytest.approx(6.0)


def test_image_diagonal_of_brats_space():
    assert image_diagonal((240, 240, 155), (1.0, 1.0, 1.0)) == pytest.approx(373.13, abs=5e-3)
    assert image_diagonal((10, 10, 10), (2.0, 2.0, 2.0)) == pytest.approx(math.sqrt(1200))


def test_both_masks_empty():
    empty = np.zeros((8, 8, 8), dtype=bool)
    assert dice(empty, empty) == 1.0
    assert hd95(empty, empty) == 0.0
    assert sensitivity_specificity(empty, empty) == (1.0, 1.0)


def test_prediction_empty_reference_not():
    empty = np.zeros((8, 9, 10), dtype=bool)
    ref = empty.copy()
    ref[2:4, 2:4, 2:4] = True
    assert dice(empty, ref) == 0.0
    assert hd95(empty, ref, (1.0, 1.0, 2.0)) == pytest.approx(math.sqrt(8**2 + 9**2 + 20**2))
    # Nothing found: sensitivity 0; no false positive: specificity 1.
    assert sensitivity_specificity(empty, ref) == (0.0, 1.0)


def test_reference_empty_prediction_not():
    """Pinned: sensitivity 0 as medpy (0/0 counts as nothing found); specificity TN/(TN+FP)."""
    empty = np.zeros((10, 10, 10), dtype=bool)
    pred = empty.copy()
    pred[0:2, 0:5, 0:10] = True  # 100 false-positive voxels out of 1000
    assert dice(pred, empty) == 0.0
    assert hd95(pred, empty) == pytest.approx(math.sqrt(300))
    sensitivity, specificity = sensitivity_specificity(pred, empty)
    assert sensitivity == 0.0
    assert specificity == pytest.approx(0.9)


def test_score_2021_regions_and_label_schemes():
    ref = np.zeros((12, 12, 12), dtype=np.uint8)
    scheme = get_scheme("2021")
    ref[2:8, 2:8, 2:8] = scheme.labels["ED"]
    ref[3:6, 3:6, 3:6] = scheme.labels["ET"]
    scores = score_2021(ref, ref)
    assert {r: s["dice"] for r, s in scores.items()} == {"WT": 1.0, "TC": 1.0, "ET": 1.0}
    assert all(s["hd95"] == 0.0 for s in scores.values())
    # Read as 2023 labels, the 2021 ET label means nothing: ET is empty in both maps.
    as_2023 = score_2021(ref, ref, labels="2023")
    assert as_2023["ET"] == {"dice": 1.0, "hd95": 0.0, "sensitivity": 1.0, "specificity": 1.0}


def test_failed_case_scores():
    assert FAILED_2021 == {"dice": 0.0, "hd95": 374.0, "sensitivity": 0.0, "specificity": 0.0}
    assert failed_2021() == {r: FAILED_2021 for r in ("WT", "TC", "ET")}
