"""``evaluate --task``: the official configuration and label scheme of each task, equal to
``brats-evaluate --config <task>`` then ``brats-parse-metrics seg`` on every group."""

from __future__ import annotations

import csv
import math
import subprocess

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from submission.evaluation import evaluate_folders
from submission.evaluation.evaluate import LabelSchemeError
from submission.evaluation.panoptica_2025 import PENALTY_HD95_2025
from submission.tasks import get_task
from tests.submission.evaluation.test_2025 import PARSER_COLUMNS, _cli

AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
#: task -> case ids in its own convention (the last one has no prediction).
CASE_IDS = {
    "gli-post": ["BraTS-GLI-02001-100", "BraTS-GLI-02002-101", "BraTS-GLI-02003-000"],
    "ped": ["BraTS-PED-00001-000", "BraTS-PED-00002-000", "BraTS-PED-00003-000"],
    "met": ["BraTS-MET-00001-000", "BraTS-MET-00002-000", "BraTS-MET-00003-000"],
    "men-rt": ["BraTS-MEN-RT-0001-1", "BraTS-MEN-RT-0002-1", "BraTS-MEN-RT-0003-1"],
}


@pytest.fixture(scope="module")
def eval_extra() -> None:
    for module in ("panoptica", "brats_evaluation"):
        pytest.importorskip(module, reason="the 2025 scheme needs bratskit[eval]")


def _label_map(task: str, rng: np.random.Generator) -> np.ndarray:
    """A 40^3 map in the task's labels: a few lesions, each an onion of the task's labels
    (outermost first), plus a separate cavity where the scheme has one."""
    scheme = get_task(task).label_scheme
    seg = np.zeros((40, 40, 40), dtype=np.uint8)
    grid = np.indices(seg.shape)
    onion = [label for _, label in scheme.paint_order if label != scheme.labels.get("RC")]
    for _ in range(int(rng.integers(1, 4))):
        centre = rng.integers(8, 32, size=3)[:, None, None, None]
        radius = float(rng.uniform(3, 7))
        distance = np.sqrt(((grid - centre) ** 2).sum(0))
        for depth, label in enumerate(onion):
            seg[distance <= radius * (1 - depth / (len(onion) + 1))] = label
    if "RC" in scheme.labels:
        seg[2:7, 2:9, 30:37] = scheme.labels["RC"]
    return seg


def _write(seg: np.ndarray, path) -> None:
    nib.Nifti1Image(seg.astype(np.uint8), AFFINE).to_filename(path)


def _folders(task: str, root):
    rng = np.random.default_rng(sum(map(ord, task)))
    pred, ref = root / "pred", root / "ref"
    pred.mkdir()
    ref.mkdir()
    for i, case_id in enumerate(CASE_IDS[task]):
        seg = _label_map(task, rng)
        _write(seg, ref / f"{case_id}.nii.gz")
        if i < len(CASE_IDS[task]) - 1:
            shifted = ndimage.shift(seg, (1, 0, int(i)), order=0)  # imperfect predictions
            _write(shifted, pred / f"{case_id}.nii.gz")
    return pred, ref


def official(task: str, pred, ref, root) -> dict[str, dict[str, str]]:
    """``brats-evaluate --config <task's config>`` then ``brats-parse-metrics seg``: the
    parsed rows by case id."""
    summary, table = root / "summary.json", root / "parsed.csv"
    config = get_task(task).config_2025
    for command in (
        [_cli("brats-evaluate"), "--ref_path", ref, "--pred_path", pred, "--config", config]
        + ["--summary_json", summary],
        [_cli("brats-parse-metrics"), "seg", "--json_path", summary, "--output_csv_path", table],
    ):
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=300)
    with table.open() as fh:
        return {row["subject_id"].removesuffix(".nii.gz"): row for row in csv.DictReader(fh)}


@pytest.mark.parametrize("task", list(CASE_IDS))
def test_evaluate_task_auto_equals_brats_evaluate_on_every_group(eval_extra, task, tmp_path):
    pred, ref = _folders(task, tmp_path)
    parsed = official(task, pred, ref, tmp_path)
    result = evaluate_folders(pred, ref, scheme="2025", task="auto")
    assert result.task == task  # recognised from the case ids
    assert result.labels == get_task(task).scheme
    assert set(result.regions) == set(get_task(task).scored)  # every group the config scores
    assert equal_to_official(result, parsed) == 3 * len(get_task(task).scored) * len(PARSER_COLUMNS)
    assert result.missing == [CASE_IDS[task][-1]]


def equal_to_official(result, parsed: dict[str, dict[str, str]]) -> int:
    """Assert every metric of every row of ``result`` equals the official parser's within
    1e-6 (NaN where it has NaN); returns how many were compared. An infinite lesion-wise
    HD95 of the parser is 373 here, the documented cap (panoptica_2025's docstring)."""
    compared = 0
    for row in result.rows:
        theirs = parsed[row["case"]]  # the parser fills a missing prediction too
        for prefix, metric in PARSER_COLUMNS.items():
            expected = float(theirs[prefix + row["region"].lower()] or "nan")
            if math.isinf(expected) and metric == "lesion_hd95":
                expected = PENALTY_HD95_2025
            ours = row[metric]
            assert (math.isnan(ours) and math.isnan(expected)) or abs(ours - expected) <= 1e-6, (
                row["case"],
                row["region"],
                metric,
            )
            compared += 1
    return compared


def test_paediatric_maps_without_the_task_are_refused_naming_the_task(eval_extra, tmp_path):
    pred, ref = _folders("ped", tmp_path)
    with pytest.raises(LabelSchemeError, match=r"outside the 2023 scheme.*--task .*ped"):
        evaluate_folders(pred, ref, scheme="2025")
    # With the task, the same folders score NETC (label 2 of the paediatric scheme).
    result = evaluate_folders(pred, ref, scheme="2025", task="ped")
    assert {"NETC", "CC", "ED"} <= set(result.regions)


def test_maps_of_a_task_read_in_the_default_labels_are_warned_about(eval_extra, tmp_path, caplog):
    # Paediatric maps holding only ET 1, NETC 2, CC 3 are valid 2023 values: the ids warn.
    pred, ref = _folders("ped", tmp_path)
    for path in [*pred.iterdir(), *ref.iterdir()]:
        seg = np.asarray(nib.load(path).dataobj)
        _write(np.where(seg == 4, 0, seg), path)
    evaluate_folders(pred, ref, scheme="2025")
    assert (
        "ids are those of task ped (labels 2024-ped) but the maps are read as 2023" in caplog.text
    )


def test_an_explicit_labels_or_cohort_overrides_the_task(eval_extra, tmp_path):
    pred, ref = _folders("gli-post", tmp_path)
    result = evaluate_folders(pred, ref, scheme="2025", task="gli-post", cohort="mets")
    assert result.cohort == "mets" and set(result.regions) == {"ET", "RC", "TC", "WT"}


def test_case_ids_of_two_tasks_are_refused(eval_extra, tmp_path):
    pred, ref = _folders("met", tmp_path)
    seg = _label_map("met", np.random.default_rng(0))
    _write(seg, ref / "BraTS-PED-00009-000.nii.gz")
    with pytest.raises(ValueError, match="several tasks.*pass --task"):
        evaluate_folders(pred, ref, scheme="2025", task="auto")
