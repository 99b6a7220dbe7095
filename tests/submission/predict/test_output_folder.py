"""The output folder before any case runs: refused when it is a file, the input or inside
it, locked against a second run, surveyed (warned about), resumed, and checked for room
(issue 13, weaknesses)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import get_scheme
from submission.io.cases import InputError
from submission.predict.output_folder import OutputError
from submission.predict.runner import run_cases
from tests.conftest import threshold_segmenter

ROOT = Path(__file__).parents[3]
IDS = ("BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003")


class Counting:
    """A pipeline that records which cases it segmented (by their input's first voxel sum)
    and writes in the 2021 scheme, as ``--resume`` checks."""

    scheme = get_scheme("2021")

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self, image_cdhw):
        return image_cdhw

    def segment(self, image_cdhw):
        from submission.predict.runner import CaseOutput

        self.calls += 1
        return CaseOutput(threshold_segmenter(image_cdhw))


def test_the_input_folder_or_a_folder_inside_it_is_refused(case_factory, tmp_path):
    flat = case_factory("2021-flat", IDS)
    before = sorted(os.listdir(flat))
    for out in (flat, flat / "out", flat / "." / "sub" / ".."):
        with pytest.raises(OutputError, match="is the input folder .* or inside it"):
            run_cases(flat, out, threshold_segmenter)
    assert sorted(os.listdir(flat)) == before  # nothing written, not even the folder


def test_an_input_that_is_a_file_is_unusable(tmp_path):
    file = tmp_path / "input.nii.gz"
    file.write_bytes(b"")
    with pytest.raises(InputError, match="not a folder"):
        run_cases(file, tmp_path / "out", threshold_segmenter)


def test_a_second_run_into_the_same_folder_fails_naming_the_first(case_factory, tmp_path):
    root, out = case_factory("2021-folders", IDS), tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from submission.predict.output_folder import OutputLock\n"
            "with OutputLock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(60)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            OutputError,
            match=rf"in use by another bratskit run \(process {holder.pid}: .*OutputLock",
        ):
            run_cases(root, out, threshold_segmenter)
        assert os.listdir(out) == []  # no lock file, no output
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the lock with its holder: the folder is free again.
    assert run_cases(root, out, threshold_segmenter).written == list(IDS)
    assert sorted(os.listdir(out)) == [f"{i}.nii.gz" for i in IDS]


def test_existing_outputs_and_foreign_files_are_warned_about(case_factory, tmp_path, caplog):
    root, out = case_factory("2021-folders", IDS), tmp_path / "out"
    run_cases(root, out, threshold_segmenter)
    (out / "notes.txt").write_text("mine")
    caplog.clear()
    run_cases(root, out, threshold_segmenter)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "already holds the outputs of 3 case(s), which will be overwritten" in text
    assert "--resume keeps the valid ones" in text
    assert "1 entr(y/ies) that are no case's output (notes.txt)" in text
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_keeps_valid_newer_outputs_and_predicts_the_rest(case_factory, tmp_path):
    root, out = case_factory("2021-folders", IDS), tmp_path / "out"
    first = Counting()
    assert run_cases(root, out, first).written == list(IDS)
    old, stale, broken = (out / f"{i}.nii.gz" for i in IDS)
    kept_bytes = old.read_bytes()
    # Case 2's input changed after its output was written; case 3's output is corrupt.
    later = time.time() + 5
    for f in (root / IDS[1]).iterdir():
        os.utime(f, (later, later))
    broken.write_bytes(b"not a gzip file")
    again = Counting()
    report = run_cases(root, out, again, resume=True)
    assert (report.kept, report.written, again.calls) == ([IDS[0]], list(IDS[1:]), 2)
    assert old.read_bytes() == kept_bytes
    assert "1 more kept from an earlier run (--resume)" in report.summary(out)
    assert nib.load(broken).shape == nib.load(old).shape  # predicted again, readable


def test_resume_predicts_again_an_output_on_another_grid_or_scheme(case_factory, tmp_path):
    root, out = case_factory("2021-folders", IDS[:2]), tmp_path / "out"
    run_cases(root, out, Counting())
    shifted, wrong_labels = (out / f"{i}.nii.gz" for i in IDS[:2])
    img = nib.load(shifted)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine + np.eye(4) * 0.5), shifted)
    img = nib.load(wrong_labels)
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = 3  # label 3 is not in the 2021 scheme
    nib.save(nib.Nifti1Image(data, img.affine, img.header), wrong_labels)
    again = Counting()
    report = run_cases(root, out, again, resume=True)
    assert (report.kept, again.calls) == ([], 2)


def test_no_room_for_the_outputs_is_found_before_any_case(case_factory, tmp_path):
    root, out = case_factory("2021-folders", IDS), tmp_path / "out"
    # A sparse modality file claims more bytes than the disk has: its output is bounded by
    # it, so the run must refuse before reading anything.
    huge = next((root / IDS[0]).iterdir())
    os.truncate(huge, os.statvfs(tmp_path).f_blocks * os.statvfs(tmp_path).f_frsize * 2)
    calls = Counting()
    with pytest.raises(OutputError, match=r"MiB free; the outputs may need up to"):
        run_cases(root, out, calls)
    assert (calls.calls, os.listdir(out)) == (0, [])
