"""Folder matching, missing predictions, summaries and CSV/JSON/table output.

Which files are references is the one rule of ``submission.io.references.find_label_maps``,
tested in ``tests/submission/io/test_cases.py``.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import get_scheme
from submission.evaluation import EvaluationResult, evaluate_folders
from submission.evaluation.folders import match_cases

AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
SHAPE = (24, 24, 16)


def _label_map(seed: int, scheme: str = "2021") -> np.ndarray:
    """A small tumour: edema box with an enhancing core, shifted by ``seed``."""
    labels = get_scheme(scheme).labels
    seg = np.zeros(SHAPE, dtype=np.uint8)
    o = seed % 3
    seg[4 + o : 16 + o, 4:16, 3:12] = labels["ED" if scheme == "2021" else "SNFH"]
    seg[7 + o : 13 + o, 7:13, 5:10] = labels["ET"]
    return seg


def _write(seg: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(seg.astype(np.uint8), affine).to_filename(path)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """References in every accepted layout, predictions for all but one case, one stray file."""
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    _write(_label_map(0), ref / "BraTS2021_00001_seg.nii.gz")
    _write(_label_map(1), ref / "BraTS-GLI-00002-000-seg.nii.gz")
    _write(_label_map(2), ref / "case3.nii.gz")
    _write(_label_map(0), ref / "BraTS2021_00004" / "BraTS2021_00004_seg.nii.gz")
    _write(_label_map(1), ref / "BraTS2021_00004" / "BraTS2021_00004_flair.nii.gz")
    _write(_label_map(1), ref / "BraTS-GLI-00005-000" / "BraTS-GLI-00005-000-seg.nii.gz")
    _write(_label_map(2), ref / "BraTS-GLI-00005-000" / "BraTS-GLI-00005-000-t1c.nii.gz")
    _write(_label_map(2), ref / "case6" / "case6.nii.gz")
    for case, seed in [
        ("BraTS2021_00001", 0),
        ("BraTS-GLI-00002-000", 2),
        ("case3", 2),
        ("BraTS2021_00004", 1),
        ("case6", 2),
    ]:
        _write(_label_map(seed), pred / f"{case}.nii.gz")
    _write(_label_map(0), pred / "BraTS-GLI-00005-000-seg.nii.gz")  # wrong name: unmatched
    return pred, ref


def test_match_cases_flat_and_in_case_folders(folders):
    pred, ref = folders
    pairs, unmatched = match_cases(pred, ref)
    found = {p.case: (p.ref.relative_to(ref).as_posix(), p.pred) for p in pairs}
    assert {case: path for case, (path, _) in found.items()} == {
        "BraTS-GLI-00002-000": "BraTS-GLI-00002-000-seg.nii.gz",
        "BraTS-GLI-00005-000": "BraTS-GLI-00005-000/BraTS-GLI-00005-000-seg.nii.gz",
        "BraTS2021_00001": "BraTS2021_00001_seg.nii.gz",
        "BraTS2021_00004": "BraTS2021_00004/BraTS2021_00004_seg.nii.gz",
        "case3": "case3.nii.gz",
        "case6": "case6/case6.nii.gz",
    }
    assert found["BraTS-GLI-00005-000"][1] is None
    assert found["case3"][1] == pred / "case3.nii.gz"
    assert unmatched == ["BraTS-GLI-00005-000-seg.nii.gz"]


def test_evaluate_folders_2021_scores_missing_as_failed_and_lists_it(folders):
    pred, ref = folders
    result = evaluate_folders(pred, ref, scheme="2021")
    assert result.labels == "2021"
    assert result.missing == ["BraTS-GLI-00005-000"]
    assert result.unmatched == ["BraTS-GLI-00005-000-seg.nii.gz"]
    assert len(result.rows) == 6 * 3
    rows = {(r["case"], r["region"]): r for r in result.rows}
    assert rows[("BraTS-GLI-00005-000", "ET")] == {
        "case": "BraTS-GLI-00005-000",
        "region": "ET",
        "dice": 0.0,
        "hd95": 374.0,
        "sensitivity": 0.0,
        "specificity": 0.0,
    }
    assert rows[("BraTS2021_00001", "WT")]["dice"] == 1.0  # same map
    assert 0.0 < rows[("BraTS2021_00004", "WT")]["dice"] < 1.0


def test_evaluate_folders_2023_scores_missing_as_empty_prediction(folders):
    pred, ref = folders
    result = evaluate_folders(pred, ref, scheme="2023", labels="2021", cohort="gli")
    assert result.labels == "2021" and result.cohort == "gli"
    missing = [r for r in result.rows if r["case"] == "BraTS-GLI-00005-000"]
    assert [(r["lesion_dice"], r["lesion_hd95"]) for r in missing] == [(0.0, 374.0)] * 3


def test_prediction_on_another_grid_fails_in_2021_only(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    _write(_label_map(0), ref / "a_seg.nii.gz")
    _write(_label_map(0), pred / "a.nii.gz", affine=np.eye(4))  # flipped axes
    result = evaluate_folders(pred, ref, scheme="2021")
    assert "affine" in result.failed["a"]
    assert result.rows[0]["dice"] == 0.0 and result.rows[0]["hd95"] == 374.0
    # The 2023 script compares voxel arrays only (these maps are in the 2021 labels).
    assert evaluate_folders(pred, ref, scheme="2023", labels="2021").failed == {}


def test_unreadable_prediction_is_failed_not_fatal(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    _write(_label_map(0), ref / "a_seg.nii.gz")
    _write(_label_map(0), ref / "b_seg.nii.gz")
    _write(_label_map(0), pred / "a.nii.gz")
    pred.joinpath("b.nii.gz").write_bytes(b"not a nifti")
    result = evaluate_folders(pred, ref, scheme="2021")
    assert list(result.failed) == ["b"]
    assert result.cases == ["a", "b"]


def test_unknown_scheme_labels_or_cohort(folders):
    pred, ref = folders
    with pytest.raises(ValueError, match="2021, 2023, 2025"):
        evaluate_folders(pred, ref, scheme="2020")
    with pytest.raises(ValueError, match="unknown label scheme"):
        evaluate_folders(pred, ref, scheme="2021", labels="2022")
    with pytest.raises(ValueError, match="unknown 2023 cohort"):
        evaluate_folders(pred, ref, scheme="2023", cohort="brain")


def _result() -> EvaluationResult:
    result = EvaluationResult(scheme="2025", labels="2023")
    metrics = ("lesion_dice", "f1", "global_dice", "lesion_hd95", "global_hd95")
    for case, value in [("a", 0.2), ("b", 0.4), ("c", math.nan), ("d", 0.9)]:
        result.add_case(case, {"WT": dict.fromkeys(metrics, value)})
        result.add_case(case, {"RC": dict.fromkeys(metrics, math.nan)})
    return result


def test_summary_statistics_skip_nan():
    summary = _result().summary()
    wt = summary["WT"]["lesion_dice"]
    values = np.array([0.2, 0.4, 0.9])
    assert wt["mean"] == pytest.approx(0.5)
    assert wt["std"] == pytest.approx(np.std(values, ddof=1))
    assert wt["median"] == pytest.approx(0.4)
    assert wt["q25"] == pytest.approx(0.3)
    assert wt["q75"] == pytest.approx(0.65)
    assert all(math.isnan(v) for v in summary["RC"]["f1"].values())


def test_json_has_nulls_not_nan(tmp_path):
    path = _result().to_json(tmp_path / "scores.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["scheme"] == "2025"
    assert data["rows"][0] == {
        "case": "a",
        "region": "WT",
        "lesion_dice": 0.2,
        "f1": 0.2,
        "global_dice": 0.2,
        "lesion_hd95": 0.2,
        "global_hd95": 0.2,
    }
    assert data["rows"][1]["f1"] is None
    assert data["summary"]["RC"]["f1"]["mean"] is None
    assert data["summary"]["WT"]["f1"]["mean"] == pytest.approx(0.5)


def test_json_of_a_real_run_is_valid(folders, tmp_path):
    pred, ref = folders
    result = evaluate_folders(pred, ref, scheme="2021")
    data = json.loads(result.to_json(tmp_path / "r.json").read_text())
    assert data["missing"] == ["BraTS-GLI-00005-000"]
    assert set(data["summary"]) == {"WT", "TC", "ET"}
    assert set(data["summary"]["WT"]["dice"]) == {"mean", "std", "median", "q25", "q75"}


def test_csv_and_table(tmp_path):
    result = _result()
    path = result.to_csv(tmp_path / "scores.csv")
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["case", "region", "lesion_dice", "f1", "global_dice"] + [
        "lesion_hd95",
        "global_hd95",
    ]
    assert rows[1][:3] == ["a", "WT", "0.2"]
    assert rows[2][2:] == [""] * 5  # NaN as an empty cell
    table = result.format_table()
    lines = table.splitlines()
    assert "mean" in lines[1] and "25%" in lines[1] and "75%" in lines[1]
    wt = next(line for line in lines if line.startswith("WT") and "lesion_dice" in line)
    assert wt.split()[2:] == ["0.5000", "0.3606", "0.4000", "0.3000", "0.6500", "3"]


def test_package_imports_without_panoptica_or_torch():
    code = (
        "import sys, submission.evaluation\n"
        "bad = [m for m in ('panoptica', 'brats_evaluation', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_scheme_2025_without_panoptica_names_the_install_command(folders):
    pred, ref = folders
    # A real interpreter in which importing panoptica fails, as on an install without [eval].
    code = (
        "import sys\n"
        "sys.modules['panoptica'] = None\n"
        "from submission.evaluation import evaluate_folders\n"
        "try:\n"
        f"    evaluate_folders({str(pred)!r}, {str(ref)!r}, scheme='2025')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    assert "pip install bratskit[eval]" in out.stdout


@pytest.mark.parametrize("wrong_side", ["pred", "ref"])
def test_label_maps_of_another_scheme_are_refused_with_the_fix(tmp_path, wrong_side):
    # Issue 13, failure 7: 2021 maps (ET = 4) scored with --scheme 2023 (ET = 3) gave ET
    # Dice 1.0 on every case, both ETs read as empty, with no warning.
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    for i in range(2):
        scheme = {"pred": "2023", "ref": "2023", wrong_side: "2021"}
        _write(_label_map(i, scheme["ref"]), ref / f"c{i}-seg.nii.gz")
        _write(_label_map(i, scheme["pred"]), pred / f"c{i}.nii.gz")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "submission",
            "evaluate",
            "--pred",
            str(pred),
            "--ref",
            str(ref),
            "--scheme",
            "2023",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and f"{wrong_side}/c0" in message
    assert "labels [4] outside the 2023 scheme" in message and "--labels 2021" in message
    # Told the files' scheme, the same command scores them.
    both_2021 = tmp_path / "both-2021"
    for i in range(2):
        _write(_label_map(i), both_2021 / f"c{i}.nii.gz")
    scores = evaluate_folders(both_2021, both_2021, "2023", labels="2021")
    assert scores.failed == {} and all(row["lesion_dice"] == 1.0 for row in scores.rows)
