"""BraTS 2025 scores: parity with the official ``brats-evaluate`` / ``brats-parse-metrics`` CLIs."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import get_scheme
from submission.evaluation import evaluate_folders, score_2025
from submission.evaluation.panoptica_2025 import convert_labels, missing_2025
from submission.io.nifti import read_label_map
from tests.conftest import REAL_DATA

REAL = REAL_DATA
SEGMENTATIONS = REAL / "TCGA-FG-6692" / "segmentations"
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
# (prediction, reference) per synthetic case id; the third case has no prediction.
CASES = {
    "BraTS-GLI-00001-000": ("isen-20", "scan-20"),
    "BraTS-GLI-00002-000": ("sanet0-20", "yixinmpl-20"),
    "BraTS-GLI-00003-000": (None, "hnfnetv1-20"),
}
# brats-parse-metrics column prefix -> our metric name
PARSER_COLUMNS = {
    "lesionwise_dsc_mean_": "lesion_dice",
    "all_instance_f1_": "f1",
    "global_dsc_": "global_dice",
    "lesionwise_hd95_mean_": "lesion_hd95",
    "global_hd95_": "global_hd95",
}


@pytest.fixture(scope="module")
def eval_extra() -> None:
    """Skip where bratskit[eval] (panoptica, brats-evaluation) is not installed."""
    for module in ("panoptica", "brats_evaluation"):
        pytest.importorskip(module, reason="the 2025 scheme needs bratskit[eval]")


def _cli(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} (brats-evaluation's CLI) is not on PATH")
    return found


def _write(seg: np.ndarray, path: Path) -> None:
    nib.Nifti1Image(seg.astype(np.uint8), AFFINE).to_filename(path)


def _same(a: float, b: float, tol: float = 1e-6) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


@pytest.fixture(scope="module")
def official(eval_extra, tmp_path_factory) -> tuple[Path, Path, dict[str, dict[str, str]]]:
    """Folders in the 2021 labels, and brats-parse-metrics' rows for their 2023 copies."""
    if not SEGMENTATIONS.is_dir():
        pytest.skip(f"real label maps not found at {SEGMENTATIONS} (shared data absent)")
    root = tmp_path_factory.mktemp("brats2025")
    dirs = {name: root / name for name in ("pred", "ref", "pred23", "ref23")}
    for folder in dirs.values():
        folder.mkdir()
    for case, (pred_name, ref_name) in CASES.items():
        for name, kind in ((pred_name, "pred"), (ref_name, "ref")):
            if name is None:
                continue
            seg, _ = read_label_map(SEGMENTATIONS / f"{name}.nii.gz")
            _write(seg, dirs[kind] / f"{case}.nii.gz")
            # The gli config reads the 2023+ labels (ET = 3): convert for the CLI.
            _write(convert_labels(seg, "2021", "2023"), dirs[f"{kind}23"] / f"{case}.nii.gz")
    summary, table = root / "summary.json", root / "parsed.csv"
    for command in (
        [_cli("brats-evaluate"), "--ref_path", dirs["ref23"], "--pred_path", dirs["pred23"]]
        + ["--config", "gli", "--summary_json", summary],
        [_cli("brats-parse-metrics"), "seg", "--json_path", summary] + ["--output_csv_path", table],
    ):
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=300)
    with table.open() as fh:
        rows = {row["subject_id"].removesuffix(".nii.gz"): row for row in csv.DictReader(fh)}
    return dirs["pred"], dirs["ref"], rows


def test_evaluate_folders_2025_equals_brats_evaluate(official):
    pred_dir, ref_dir, parsed = official
    result = evaluate_folders(pred_dir, ref_dir, scheme="2025", labels="2021", cohort="gli")
    assert result.missing == ["BraTS-GLI-00003-000"]
    assert result.regions == ["WT", "TC", "ET", "SNFH", "NETC", "RC"]
    compared = 0
    for row in result.rows:
        theirs = parsed[row["case"]]
        for prefix, metric in PARSER_COLUMNS.items():
            expected = float(theirs[prefix + row["region"].lower()] or "nan")
            assert _same(row[metric], expected), (row["case"], row["region"], metric)
            compared += 1
    assert compared == 3 * 6 * 5
    # Summary means agree with the parser's own "mean" and "median" rows (NaN skipped).
    summary = result.summary()
    for statistic in ("mean", "median", "std"):
        for region in ("WT", "TC", "ET"):
            for prefix in ("global_dsc_", "lesionwise_dsc_mean_", "all_instance_f1_"):
                expected = float(parsed[statistic][prefix + region.lower()])
                got = summary[region][PARSER_COLUMNS[prefix]][statistic]
                assert _same(got, expected), (statistic, region, prefix)


def test_region_empty_in_both_is_nan_and_empty_prediction_scores_0_and_373(eval_extra):
    scheme = get_scheme("2023")
    ref = np.zeros((30, 30, 30), dtype=np.uint8)
    ref[5:15, 5:15, 5:15] = scheme.labels["SNFH"]
    scores = score_2025(np.zeros_like(ref), ref, labels="2023", cohort="gli")
    assert scores["WT"] == {
        "lesion_dice": 0.0,
        "f1": 0.0,
        "global_dice": 0.0,
        "lesion_hd95": 373.0,
        "global_hd95": 373.0,
    }
    assert all(math.isnan(v) for v in scores["ET"].values())  # empty in both
    assert all(math.isnan(v) for v in scores["RC"].values())


def test_missing_prediction_scores_0_and_373_in_every_region(eval_extra):
    scores = missing_2025("gli")
    assert list(scores) == ["WT", "TC", "ET", "SNFH", "NETC", "RC"]
    for values in scores.values():
        assert values == {
            "lesion_dice": 0.0,
            "f1": 0.0,
            "global_dice": 0.0,
            "lesion_hd95": 373.0,
            "global_hd95": 373.0,
        }


def test_convert_labels_through_regions():
    s21, s23, s24 = get_scheme("2021"), get_scheme("2023"), get_scheme("2024-gli")
    seg = np.array([0, s21.labels["NCR"], s21.labels["ED"], s21.labels["ET"]], dtype=np.uint8)
    expected = [0, s23.labels["NETC"], s23.labels["SNFH"], s23.labels["ET"]]
    assert convert_labels(seg, "2021", "2023").tolist() == expected
    assert convert_labels(seg, "2021", "2024-gli").tolist() == expected
    with_cavity = np.array([0, s24.labels["RC"], s24.labels["ET"]], dtype=np.uint8)
    # 2023 has no resection cavity: RC becomes background.
    assert convert_labels(with_cavity, "2024-gli", "2023").tolist() == [0, 0, s23.labels["ET"]]


def test_unknown_cohort_names_the_choices():
    with pytest.raises(ValueError, match="gli, mets, ped, menpre, menrt, goat"):
        score_2025(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), cohort="ssa")
