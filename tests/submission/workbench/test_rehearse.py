"""The checks ``bratskit rehearse`` makes of an output folder and the diagnosis of a failed
run, on real NIfTI files (the container runs are in tests/docker/test_rehearse.py)."""

import nibabel as nib
import numpy as np
import pytest

from submission.io.nifti import grid_of, write_label_map
from submission.workbench.rehearse import RULES, _diagnose, check_outputs
from tests.conftest import SMALL_SHAPE


def outputs(case_factory, tmp_path, layout, ids, empty=()):
    root = case_factory(layout, ids)
    out = tmp_path / "out"
    out.mkdir()
    grid = grid_of(nib.load(next(p for p in root.rglob("*.nii.gz"))))
    for case_id in ids:
        seg = np.zeros(SMALL_SHAPE, np.uint8)
        if case_id not in empty:
            seg[10:14, 10:14, 10:14] = 2
        write_label_map(seg, grid, out / f"{case_id}.nii.gz")
    return root, out


def test_2023_names_pass_both_years(case_factory, tmp_path):
    root, out = outputs(case_factory, tmp_path, "2023-folders", ["BraTS-GLI-00001-000"])
    for year in RULES:
        assert check_outputs(root, out, "2023", RULES[year]) == ([], [])


def test_the_2026_rules_want_names_ending_in_the_case_number(case_factory, tmp_path):
    root, out = outputs(case_factory, tmp_path, "2021-folders", ["BraTS2021_00001"])
    assert check_outputs(root, out, "2021", RULES["2025"]) == ([], [])
    failures, _ = check_outputs(root, out, "2021", RULES["2026"])
    assert len(failures) == 1 and "NNNNN-NNN.nii.gz" in failures[0]


def test_an_all_background_prediction_is_a_warning(case_factory, tmp_path):
    ids = ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    root, out = outputs(case_factory, tmp_path, "2023-folders", ids, empty=ids[1:])
    failures, warnings = check_outputs(root, out, "2023", RULES["2026"])
    assert failures == []
    assert warnings == [f"{ids[1]}.nii.gz: all background (the organisers score it 0 / inf)"]


def test_an_extra_file_a_sub_folder_and_a_missing_case_fail(case_factory, tmp_path):
    ids = ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    root, out = outputs(case_factory, tmp_path, "2023-folders", ids)
    (out / f"{ids[0]}.nii.gz").unlink()
    (out / "log.txt").write_text("x")
    (out / "sub").mkdir()
    failures, _ = check_outputs(root, out, "2023", RULES["2026"])
    assert len(failures) == 3
    assert any(f.startswith("log.txt: unexpected") for f in failures)
    assert any(f.startswith("sub: unexpected") for f in failures)
    assert any("missing output" in f for f in failures)


@pytest.mark.parametrize(
    ("code", "log", "reason"),
    [
        (0, "", None),
        (None, "", "exceeded the 2026 time limit (28800 s)"),
        (1, "touch: cannot touch '/input/x': Read-only file system", "writes into /input"),
        (1, "mkdir: cannot create directory '/var/x': Permission denied", "needs root"),
        (3, "error: no BraTS case", "exited 3"),
    ],
)
def test_a_failed_run_is_diagnosed(code, log, reason):
    found = _diagnose(code, log, RULES["2026"])
    assert (found == []) if reason is None else any(reason in f for f in found), found
