"""The per-case loop on real NIfTI cases in tmp folders: outputs, overlapped I/O, failures
isolated to their case."""

from __future__ import annotations

import stat
import threading

import nibabel as nib
import numpy as np
import pytest

from submission.brats import MODALITIES
from submission.io.nifti import read_label_map
from submission.predict.output_folder import OutputError
from submission.predict.runner import CaseOutput, case_line, run_cases
from tests.conftest import LPS_SMALL, small_image, threshold_segmenter, write_case

IDS = ("BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003")


class ThresholdPipeline:
    """:func:`threshold_segmenter` in two steps, recording the thread of each step."""

    def __init__(self):
        self.threads = {"prepare": set(), "segment": set()}

    def prepare(self, image_cdhw):
        self.threads["prepare"].add(threading.current_thread().name)
        return image_cdhw[MODALITIES.index("t2f")]

    def segment(self, flair_dhw):
        self.threads["segment"].add(threading.current_thread().name)
        labels = (flair_dhw > 900).astype(np.uint8) * 2
        return CaseOutput(labels, {"segment": 0.0}, ["a note"], int((labels == 4).sum()))


def test_overlapped_and_sequential_io_write_the_same_files(case_factory, tmp_path):
    root = case_factory("2021-folders", IDS)
    outputs = {}
    for overlap_io in (True, False):
        pipeline = ThresholdPipeline()
        out = tmp_path / f"out-{overlap_io}"
        report = run_cases(root, out, pipeline, overlap_io=overlap_io)
        assert report.ok and report.written == list(IDS)
        outputs[overlap_io] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        # overlapped: prepare runs in the reading thread, segment in the main one
        main = threading.main_thread().name
        assert pipeline.threads["segment"] == {main}
        if overlap_io:
            assert all(t.startswith("bratskit-read") for t in pipeline.threads["prepare"])
        else:
            assert pipeline.threads["prepare"] == {main}
    assert outputs[True] == outputs[False]
    assert sorted(outputs[True]) == [f"{i}.nii.gz" for i in IDS]
    labels, _ = read_label_map(tmp_path / "out-True" / "BraTS2021_00002.nii.gz")
    expected = threshold_segmenter(small_image(1).astype(np.float32))
    np.testing.assert_array_equal(labels, expected)
    assert 0 < (labels == 2).sum() < labels.size


@pytest.mark.parametrize(
    ("layout", "case_id"),
    [("2021-flat", "BraTS2021_00042"), ("2023-folders", "BraTS-GLI-00001-000")],
)
def test_outputs_are_named_by_case_id(case_factory, tmp_path, layout, case_id):
    root = case_factory(layout, [case_id])
    run_cases(root, tmp_path / "out", threshold_segmenter)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{case_id}.nii.gz"]


def test_segmenter_crash_fails_only_that_case(case_factory, tmp_path):
    root = case_factory("2021-folders", ["BraTS2021_00001", "BraTS2021_00002"])

    def flaky(image):
        if image[0, 10, 10, 10] == small_image(1)[0, 10, 10, 10]:
            raise RuntimeError("out of memory")
        return np.zeros(image.shape[1:], np.uint8)

    report = run_cases(root, tmp_path / "out", flaky)
    assert report.written == ["BraTS2021_00001"]
    assert "out of memory" in report.failed["BraTS2021_00002"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["BraTS2021_00001.nii.gz"]
    assert not report.ok


def test_a_failed_write_fails_only_that_case(case_factory, tmp_path):
    root = case_factory("2021-folders", IDS)
    out = tmp_path / "out"
    (out / "BraTS2021_00002.nii.gz").mkdir(parents=True)  # a folder where the file goes
    report = run_cases(root, out, threshold_segmenter)
    assert report.written == ["BraTS2021_00001", "BraTS2021_00003"]
    assert list(report.failed) == ["BraTS2021_00002"]
    assert report.failed["BraTS2021_00002"].startswith("write failed")
    # nothing partial or temporary left behind
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.nii.gz" for i in IDS]


def test_unwritable_output_folder(case_factory, tmp_path):
    # A folder under a regular file cannot be created, even by root; the file is untouched.
    blocker = tmp_path / "out"
    blocker.write_text("keep")
    with pytest.raises(OutputError, match="not writable"):
        run_cases(case_factory(), blocker / "sub", threshold_segmenter)
    # A regular file given as the output folder is named as such.
    with pytest.raises(OutputError, match="is a file, not a folder"):
        run_cases(case_factory(), blocker, threshold_segmenter)
    assert blocker.read_text() == "keep"


def test_output_is_uint8_on_input_grid(case_factory, tmp_path):
    root = case_factory("2021-flat", ["BraTS2021_00042"])
    run_cases(root, tmp_path / "out", threshold_segmenter)
    img = nib.load(tmp_path / "out" / "BraTS2021_00042.nii.gz")
    assert img.get_data_dtype() == np.uint8 and img.shape == (32, 32, 24)
    np.testing.assert_allclose(img.affine, LPS_SMALL)
    assert img.header.get_qform(coded=True)[1] == 2 and img.header.get_sform(coded=True)[1] == 1
    assert (
        oct(stat.S_IMODE((tmp_path / "out" / "BraTS2021_00042.nii.gz").stat().st_mode)) == "0o644"
    )


def test_report_times_every_stage_and_the_log_line_says_them(case_factory, tmp_path):
    root = case_factory("2021-folders", IDS[:1])
    report = run_cases(root, tmp_path / "out", ThresholdPipeline())
    timings = report.timings[IDS[0]]
    assert list(timings) == ["read", "segment", "write"]
    assert report.seconds[IDS[0]] >= timings["read"] + timings["write"]
    assert report.wall_seconds > 0
    out = CaseOutput(np.zeros((2, 2, 2), np.uint8), {"read": 1.25, "members": 2.5}, ["slid"], 7)
    assert case_line("c1", 3.75, out) == "c1 3.8 s (read 1.25, members 2.50) ET 7 voxels; slid"


def test_long_case_ids_are_written_and_too_long_ones_refused_before_any_work(tmp_path):
    # Issue 13, failure 8: ids of 234 to 248 characters failed after inference, when the
    # temporary name ".<id>.nii.gz.<pid>.partial" ran over the 255 bytes of a file name.
    root = tmp_path / "in"
    longest = "BraTS-" + "x" * (255 - len(".nii.gz") - 6)  # output name exactly 255 bytes
    too_long = "BraTS-" + "y" * 244  # output name 257 bytes; the files use a short prefix
    write_case(root / longest, longest[:240], "2023", seed=1)
    write_case(root / too_long, "BraTS-short", "2023", seed=2)
    segmented = []

    def segmenter(image):
        segmented.append(image.shape)
        return threshold_segmenter(image)

    report = run_cases(root, tmp_path / "out", segmenter)
    assert report.written == [longest]
    assert (
        "shorten the case id" in report.failed[too_long] and "257 bytes" in report.failed[too_long]
    )
    assert len(segmented) == 1  # the refused case never reached the network
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{longest}.nii.gz"]


def test_a_case_failing_on_a_rerun_leaves_no_output_of_the_earlier_run(case_factory, tmp_path):
    # Issue 13, failure 4: the old output stayed, and validate and package accepted it.
    root = case_factory("2021-folders", IDS[:2])
    out = tmp_path / "out"
    assert run_cases(root, out, threshold_segmenter).written == list(IDS[:2])
    (root / IDS[1] / f"{IDS[1]}_t1.nii.gz").write_bytes(b"truncated on a copy")

    report = run_cases(root, out, threshold_segmenter)

    assert report.written == [IDS[0]]
    assert f"removed {IDS[1]}.nii.gz, the output of an earlier run" in report.failed[IDS[1]]
    assert [p.name for p in out.iterdir()] == [f"{IDS[0]}.nii.gz"]
