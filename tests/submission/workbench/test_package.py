"""``bratskit package``: a symbolic link in the output folder is refused, never followed
into the archive (issue 13, weaknesses)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest

from submission.io.nifti import grid_of, write_label_map
from submission.workbench.package import package_predictions

IDS = ("BraTS2021_00001", "BraTS2021_00002")


def predictions(case_factory, tmp_path):
    """Input cases, an output folder with a valid prediction of the first, and a valid
    prediction of the second written outside it."""
    inputs = case_factory("2021-folders", IDS)
    grid = grid_of(nib.load(inputs / IDS[0] / f"{IDS[0]}_t1.nii.gz"))
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    labels = np.zeros(grid.shape, np.uint8)
    labels[10:14, 10:14, 8:12] = 2
    write_label_map(labels, grid, out / f"{IDS[0]}.nii.gz")
    write_label_map(labels, grid, elsewhere / f"{IDS[1]}.nii.gz")
    return inputs, out, elsewhere / f"{IDS[1]}.nii.gz"


@pytest.mark.parametrize("with_input", [False, True])
def test_a_link_to_a_file_outside_the_output_folder_is_refused(case_factory, tmp_path, with_input):
    inputs, out, outside = predictions(case_factory, tmp_path)
    link = out / f"{IDS[1]}.nii.gz"
    link.symlink_to(outside)
    zip_path = tmp_path / "up.zip"
    report = package_predictions(out, zip_path, input_dir=inputs if with_input else None)
    assert not report.ok and not zip_path.exists()
    [failure] = report.failures
    assert failure.subject == link.name
    assert failure.problem.startswith(f"a symbolic link to {outside}: only files written")
    link.unlink()
    link.write_bytes(outside.read_bytes())  # the file itself: packaged
    assert package_predictions(out, zip_path, input_dir=inputs if with_input else None).ok
    assert sorted(zipfile.ZipFile(zip_path).namelist()) == [f"{i}.nii.gz" for i in IDS]


def test_package_exits_1_naming_the_link(case_factory, tmp_path):
    inputs, out, outside = predictions(case_factory, tmp_path)
    (out / f"{IDS[1]}.nii.gz").symlink_to(outside)
    (out / "notes.txt").symlink_to(tmp_path / "absent.txt")  # a broken link too
    cmd = [
        sys.executable,
        "-m",
        "submission",
        "package",
        str(out),
        "--zip",
        str(tmp_path / "u.zip"),
    ]
    result = subprocess.run([*cmd, "--input", str(inputs)], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL  {IDS[1]}.nii.gz: a symbolic link to {outside}" in result.stdout
    assert f"FAIL  notes.txt: a symbolic link to {tmp_path / 'absent.txt'}" in result.stdout
    assert "nothing packaged" in result.stderr and not (tmp_path / "u.zip").exists()
