"""`validate --output` by the challenge rules (CONTRACT.md section 3), and packaging."""

import os
import zipfile

import nibabel as nib
import numpy as np
import pytest

from submission.io.nifti import grid_of, write_label_map
from submission.workbench.package import package_predictions
from submission.workbench.validate import validate_input, validate_output
from tests.conftest import LPS_SMALL, SMALL_SHAPE, write_nifti

IDS = ["BraTS2021_00001", "BraTS2021_00002"]


@pytest.fixture
def folders(case_factory, tmp_path):
    """An input folder of two cases and a correct output folder for it."""
    root = case_factory("2021-folders", IDS)
    out = tmp_path / "out"
    out.mkdir()
    grid = grid_of(nib.load(next((root / IDS[0]).glob("*_t1.nii.gz"))))
    seg = np.zeros(SMALL_SHAPE, np.uint8)
    seg[10:14, 10:14, 10:14] = 2
    seg[11:13, 11:13, 11:13] = 4
    for cid in IDS:
        write_label_map(seg, grid, out / f"{cid}.nii.gz")
    return root, out, seg


def problems(root, out, labels="2021"):
    report = validate_output(root, out, labels)
    return report.ok, {f.subject: f.problem for f in report.failures}


def test_correct_folder_is_accepted(folders):
    root, out, _ = folders
    assert problems(root, out) == (True, {})
    assert validate_input(root).ok


def test_missing_output(folders):
    root, out, _ = folders
    (out / f"{IDS[1]}.nii.gz").unlink()
    ok, found = problems(root, out)
    assert not ok and "missing output" in found[f"{IDS[1]}.nii.gz"]


def test_extra_file(folders):
    root, out, _ = folders
    (out / "log.txt").write_text("x")
    ok, found = problems(root, out)
    assert not ok and "unexpected entry" in found["log.txt"]


def test_wrong_name(folders):
    root, out, _ = folders
    (out / f"{IDS[0]}.nii.gz").rename(out / f"{IDS[0]}_seg.nii.gz")
    ok, found = problems(root, out)
    assert not ok
    assert found[f"{IDS[0]}_seg.nii.gz"] == f"wrong name: rename to {IDS[0]}.nii.gz"
    assert "missing output" in found[f"{IDS[0]}.nii.gz"]


def test_wrong_shape(folders):
    root, out, seg = folders
    write_nifti(out / f"{IDS[0]}.nii.gz", seg[:, :, :20])
    ok, found = problems(root, out)
    assert not ok and "shape (32, 32, 20) differs" in found[f"{IDS[0]}.nii.gz"]


def test_identity_affine(folders):
    root, out, seg = folders
    write_nifti(out / f"{IDS[0]}.nii.gz", seg, np.eye(4))
    ok, found = problems(root, out)
    assert not ok and "affine" in found[f"{IDS[0]}.nii.gz"]


def test_lost_transforms_are_caught(folders):
    root, out, seg = folders
    img = nib.Nifti1Image(seg, LPS_SMALL)
    img.set_qform(None, 0)
    img.set_sform(None, 0)
    nib.save(img, out / f"{IDS[0]}.nii.gz")
    ok, found = problems(root, out)
    assert not ok and "affine differs" in found[f"{IDS[0]}.nii.gz"]


def test_non_integer_float_labels(folders):
    root, out, seg = folders
    interpolated = seg.astype(np.float32)
    interpolated[13, 13, 13] = 1.5  # as a linear resampling of labels leaves behind
    write_nifti(out / f"{IDS[0]}.nii.gz", interpolated)
    ok, found = problems(root, out)
    assert not ok and "non-integer" in found[f"{IDS[0]}.nii.gz"]


def test_integer_valued_floats_are_accepted(folders):
    root, out, seg = folders
    write_nifti(out / f"{IDS[0]}.nii.gz", seg.astype(np.float32))
    assert problems(root, out) == (True, {})


def test_label_outside_scheme(folders):
    root, out, seg = folders
    bad = seg.copy()
    bad[0, 0, 0] = 3
    write_nifti(out / f"{IDS[0]}.nii.gz", bad)
    ok, found = problems(root, out)
    assert not ok and "labels [3] are not in the 2021 scheme" in found[f"{IDS[0]}.nii.gz"]
    # and a correct 2021 map holds label 4, which the 2023 scheme rejects
    ok, found = problems(root, out, "2023")
    assert "labels [4] are not in the 2023 scheme" in found[f"{IDS[1]}.nii.gz"]


def test_4d_output(folders):
    root, out, seg = folders
    write_nifti(out / f"{IDS[0]}.nii.gz", seg[..., None])
    ok, found = problems(root, out)
    assert not ok and "3-D" in found[f"{IDS[0]}.nii.gz"]


def test_package_zips_only_valid_predictions(folders, tmp_path):
    root, out, _ = folders
    archive = tmp_path / "upload.zip"
    report = package_predictions(out, archive, input_dir=root)
    assert report.ok
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"{c}.nii.gz" for c in IDS)
    (out / "notes.txt").write_text("x")
    archive.unlink()
    assert not package_predictions(out, archive).ok
    assert not archive.exists()


def test_package_refuses_archive_inside_output(folders):
    _, out, _ = folders
    with pytest.raises(ValueError, match="outside the output folder"):
        package_predictions(out, out / "upload.zip")


def test_an_output_on_an_input_whose_qform_and_sform_differ_is_valid(tmp_path):
    # Issue 13, failure 3: the output's qform was compared with the input's affine (its
    # sform), so a correct output of such an input was refused by validate and package.
    root = tmp_path / "in" / IDS[0]
    sform = LPS_SMALL.copy()
    sform[:3, 3] += (0.6, -0.4, 0.25)  # the scanner's sform, shifted from the qform
    root.mkdir(parents=True)
    for modality in ("flair", "t1", "t1ce", "t2"):
        img = nib.Nifti1Image(np.full(SMALL_SHAPE, 100, np.int16), LPS_SMALL)
        img.set_qform(LPS_SMALL, 1)
        img.set_sform(sform, 2)
        nib.save(img, root / f"{IDS[0]}_{modality}.nii.gz")
    input_img = nib.load(root / f"{IDS[0]}_t1.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    written = write_label_map(
        np.zeros(SMALL_SHAPE, np.uint8), grid_of(input_img), out / f"{IDS[0]}.nii.gz"
    )
    header = nib.load(written).header
    assert np.allclose(header.get_qform(), LPS_SMALL) and np.allclose(header.get_sform(), sform)

    report = validate_output(tmp_path / "in", out)
    assert report.ok, report.lines()

    # Like with like still catches a wrong qform.
    bad = nib.load(written)
    bad.set_qform(sform, 1)
    nib.save(bad, out / f"{IDS[0]}.nii.gz")
    problems = [f.problem for f in validate_output(tmp_path / "in", out).failures]
    assert problems and "qform differs from the input's" in problems[0]


def test_an_output_older_than_its_inputs_is_a_warning(folders):
    root, out, _ = folders
    stale = out / f"{IDS[0]}.nii.gz"
    inputs = max(p.stat().st_mtime for p in (root / IDS[0]).iterdir())
    os.utime(stale, (inputs - 3600, inputs - 3600))
    report = validate_output(root, out)
    assert report.ok
    assert [w for w in report.warnings if "older than" in w] == [
        f"{IDS[0]}.nii.gz is older than case {IDS[0]}'s input files: a prediction of an "
        "earlier version of the case? predict it again"
    ]


def test_a_task_sets_the_labels_and_its_output_name_rule(case_factory, tmp_path):
    # A 2024+ glioma output holds the resection cavity (4) and NETC/SNFH/ET 1/2/3.
    ids = ["BraTS-GLI-02001-100", "Case7"]
    root = case_factory("2023-folders", ids)
    out = tmp_path / "out"
    out.mkdir()
    grid = grid_of(nib.load(next((root / ids[0]).glob("*-t1n.nii.gz"))))
    seg = np.zeros(SMALL_SHAPE, np.uint8)
    seg[10:14, 10:14, 10:14], seg[11:13, 11:13, 11:13], seg[0:3, 0:3, 0:3] = 2, 3, 4
    for cid in ids:
        write_label_map(seg, grid, out / f"{cid}.nii.gz")
    report = validate_output(root, out, task="gli-post")
    found = {f.subject: f.problem for f in report.failures}
    assert "BraTS-GLI-02001-100.nii.gz" not in found  # label 4 is the cavity here
    assert "matches outputs by a name ending in NNNNN-NNN.nii.gz" in found["Case7.nii.gz"]
    # The 2023 scheme (the same folder read without the task) has no 4.
    assert (
        "labels [4] are not in the 2023 scheme"
        in problems(root, out, "2023")[1][f"{ids[0]}.nii.gz"]
    )


@pytest.mark.parametrize(("task", "modalities"), [("men-rt", 1), ("met", 4)])
def test_input_by_the_tasks_modalities(tmp_path, task, modalities):
    """MEN-RT cases hold t1c alone and every 4th MET case lacks t2w: invalid as four-modality
    glioma cases, valid for their task (named, or recognised from the ids)."""
    from submission.workbench.synth import write_synthetic_dataset

    ids = write_synthetic_dataset(tmp_path / "in", 4, task=task, shape=(40, 40, 32))
    by_default = validate_input(tmp_path / "in")
    assert not by_default.ok and "missing" in by_default.failures[0].problem
    for name in (task, "auto"):
        report = validate_input(tmp_path / "in", name)
        assert report.ok and [f.subject for f in report.findings] == sorted(ids)
    files = {p.name for p in (tmp_path / "in" / ids[3]).iterdir()}
    assert len(files) == modalities + 1 - (task == "met")  # the images and the label map
