"""The bad-input and fault matrix (issue 13, must show 2): every kind through the real
``bratskit predict`` with a real ONNX bundle, asserting its exit code and message, that it
crashes nothing, that the good case beside it is still written and that no partial or
stale file is left; kinds tested in other modules are listed with their test, and the
README's "Failure behaviour" table must name exactly these kinds with these exit codes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_case
from tests.submission.io import bad_files
from tests.submission.predict.onnx_bundles import channel_bundle

ROOT = Path(__file__).resolve().parents[2]
BAD, GOOD = "BraTS2021_00001", "BraTS2021_00002"

#: kind -> (what spoils the bad case, exit code, message fragment); exit 0 writes both.
CASE_KINDS = {
    "`.nii.gz` that is not gzip": (bad_files.not_gzip, 1, "not gzip-compressed and not NIfTI"),
    "uncompressed NIfTI named `.nii.gz`": (bad_files.uncompressed, 1, "gzip it or rename"),
    "broken symbolic link": (bad_files.broken_symlink, 1, "which does not exist"),
    "folder named like an image": (bad_files.folder_named_like_an_image, 1, "a folder, not a"),
    "truncated gzip": (bad_files.truncated, 1, "corrupt or truncated"),
    "empty file": (bad_files.empty_file, 1, "not gzip-compressed and not NIfTI"),
    "header claiming 2000 cubed voxels": (bad_files.huge_header, 1, "2000 x 2000 x 2000"),
    "values of 1e300": (bad_files.values_1e300, 1, "beyond float32"),
    "NaN voxels": (bad_files.nan_voxels, 1, "NaN or infinite"),
    "infinite voxels": (bad_files.inf_voxels, 1, "NaN or infinite"),
    "4-D image": (bad_files.four_d, 1, "must be 3-D"),
    "2-D image": (bad_files.two_d, 1, "must be 3-D"),
    "all-zero modality": (bad_files.all_zero, 1, "no missing-modality policy"),
    "missing modality": (bad_files.missing_modality, 1, "missing t1n"),
    "two files for a modality": (bad_files.two_files_for_a_modality, 1, "2 files for t1n"),
    "modalities of different shapes": (bad_files.shape_mismatch, 1, "has shape"),
    "modalities on different affines": (bad_files.affine_mismatch, 1, "co-register"),
    "case id with a space": (bad_files.case_id_with_a_space, 1, "case id must be"),
    "case id too long for a file name": (bad_files.case_id_too_long, 1, "shorten the case"),
    "same case id as a folder and flat files": (bad_files.same_id_twice, 1, "two cases have"),
    "macOS `._` AppleDouble file": (bad_files.apple_double, 0, "hidden file"),
    "`__MACOSX` folder": (bad_files.macosx_folder, 0, "hidden file"),
    "file prefix differs from its folder": (bad_files.prefix_differs_from_folder, 0, "differs"),
    "unrelated file in a case folder": (bad_files.unrelated_file, 0, "unrelated entry"),
    "reference label map beside the images": (bad_files.label_map_beside, 0, "written"),
}


def _empty(inp: Path) -> None:
    inp.mkdir()


def _hidden_only(inp: Path) -> None:
    inp.mkdir()
    (inp / ".DS_Store").write_bytes(b"\0")


def _unrelated_only(inp: Path) -> None:
    inp.mkdir()
    (inp / "README.txt").write_text("cases follow")


def _one_folder_too_deep(inp: Path) -> None:
    write_case(inp / "data" / GOOD, GOOD, "2021")


def _missing(inp: Path) -> None:
    pass


def _a_file(inp: Path) -> None:
    inp.write_text("not a folder")


#: kind -> (writes the input folder, exit code, message fragment); no case is written.
INPUT_KINDS = {
    "empty input folder": (_empty, 3, "the folder is empty"),
    "input with only hidden files": (_hidden_only, 3, "only hidden entries"),
    "input with only unrelated files": (_unrelated_only, 3, "expected case folders"),
    "cases one folder too deep": (_one_folder_too_deep, 3, "one folder too deep"),
    "input folder missing": (_missing, 3, "does not exist"),
}

#: kind -> (exit code, the test that shows it).
TESTED_ELSEWHERE = {
    "input is a file": (
        3,
        "tests/submission/predict/test_output_folder.py::test_an_input_that_is_a_file_is_unusable",
    ),
    "output is a file": (
        3,
        "tests/submission/cli/test_main.py::"
        "test_a_file_given_for_a_predict_folder_exits_3_naming_it",
    ),
    "output folder is the input or inside it": (
        3,
        "tests/submission/predict/"
        "test_output_folder.py::test_the_input_folder_or_a_folder_inside_it_is_refused",
    ),
    "output folder not writable": (
        3,
        "tests/submission/predict/test_runner.py::test_unwritable_output_folder",
    ),
    "too little free space": (
        3,
        "tests/submission/predict/test_output_folder.py::"
        "test_no_room_for_the_outputs_is_found_before_any_case",
    ),
    "second run into a locked output folder": (
        3,
        "tests/submission/predict/"
        "test_output_folder.py::test_a_second_run_into_the_same_folder_fails_naming_the_first",
    ),
    "files already in the output folder": (
        0,
        "tests/submission/predict/test_output_folder.py"
        "::test_existing_outputs_and_foreign_files_are_warned_about",
    ),
    "`--resume` over earlier outputs": (
        0,
        "tests/submission/predict/test_output_folder.py::"
        "test_resume_keeps_valid_newer_outputs_and_predicts_the_rest",
    ),
    "case failing on a rerun (stale output)": (
        1,
        "tests/submission/predict/test_runner.py::"
        "test_a_case_failing_on_a_rerun_leaves_no_output_of_the_earlier_run",
    ),
    "SIGTERM mid-write": (
        143,
        "tests/submission/predict/test_interruption.py::"
        "test_bratskit_predict_exits_143_on_sigterm_saying_what_it_wrote",
    ),
    "SIGINT mid-write": (
        130,
        "tests/submission/predict/test_interruption.py::"
        "test_a_signal_mid_write_leaves_no_temporary_file",
    ),
    "leftovers of a killed run": (
        0,
        "tests/submission/predict/test_interruption.py::"
        "test_sigkill_leftovers_are_removed_by_the_next_run",
    ),
    "`docker stop` of the container": (
        143,
        "tests/docker/test_image.py::"
        "test_docker_stop_mid_run_exits_143_and_leaves_no_temporary_file",
    ),
    "manifest value of the wrong type or size": (
        3,
        "tests/submission/predict/"
        "test_bundle_schema.py::test_predict_and_bundle_exit_3_naming_the_field_before_any_case",
    ),
    "model file no backend can load": (
        3,
        "tests/submission/predict/test_bundle_schema.py::"
        "test_a_model_file_no_backend_can_load_is_exit_3_naming_it",
    ),
    "bundle path outside the bundle": (
        3,
        "tests/submission/predict/test_bundle.py::"
        "test_file_paths_outside_the_bundle_are_refused_when_the_manifest_is_read",
    ),
    "`--threads 1e11`": (
        2,
        "tests/submission/predict/test_options.py::test_predict_exits_2_for_threads_out_of_range",
    ),
    "a model that crashes on a case": (
        1,
        "tests/submission/predict/test_runner.py::test_segmenter_crash_fails_only_that_case",
    ),
    "symbolic link in a folder to package": (
        1,
        "tests/submission/workbench/test_package.py::test_package_exits_1_naming_the_link",
    ),
    "evaluate in the wrong label scheme": (
        2,
        "tests/submission/evaluation/test_folders.py::"
        "test_label_maps_of_another_scheme_are_refused_with_the_fix",
    ),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return channel_bundle(tmp_path_factory.mktemp("bundle"))


def predict(inp: Path, out: Path, bundle: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "submission", "predict", "--input", str(inp)]
    cmd += ["--output", str(out), "--bundle", str(bundle), "--backend", "onnx"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def assert_clean(proc: subprocess.CompletedProcess, out: Path, written: set[str]) -> None:
    """No crash, and the output holds exactly the written cases' files, nothing partial."""
    assert "Traceback" not in proc.stderr, proc.stderr
    found = {p.name for p in out.iterdir()} if out.is_dir() else set()
    assert found == {f"{case_id}.nii.gz" for case_id in written}, (found, proc.stderr)


@pytest.mark.parametrize("kind", CASE_KINDS)
def test_a_bad_case_beside_a_good_one(kind, bundle, tmp_path):
    spoil, code, fragment = CASE_KINDS[kind]
    inp, out = tmp_path / "in", tmp_path / "out"
    write_case(inp / GOOD, GOOD, "2021", seed=1)
    write_case(inp / BAD, BAD, "2021", seed=0)
    spoil(inp / BAD)
    proc = predict(inp, out, bundle)
    assert proc.returncode == code, proc.stderr
    assert fragment in proc.stderr, proc.stderr
    assert_clean(proc, out, {GOOD} if code else {GOOD, BAD})


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_an_unusable_input(kind, bundle, tmp_path):
    make, code, fragment = INPUT_KINDS[kind]
    inp, out = tmp_path / "in", tmp_path / "out"
    make(inp)
    proc = predict(inp, out, bundle)
    assert proc.returncode == code, proc.stderr
    assert fragment in proc.stderr, proc.stderr
    assert_clean(proc, out, set())


def test_every_test_named_elsewhere_exists():
    for kind, (_, node) in TESTED_ELSEWHERE.items():
        path, name = node.split("::")
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), kind


def test_the_matrix_has_at_least_40_kinds_and_the_readme_table_matches_it():
    expected = {k: v[1] for k, v in CASE_KINDS.items()}
    expected |= {k: v[1] for k, v in INPUT_KINDS.items()}
    expected |= {k: v[0] for k, v in TESTED_ELSEWHERE.items()}
    assert len(expected) >= 40
    section = (ROOT / "README.md").read_text().split("\n### Failure behaviour\n", 1)[1]
    section = section.split("\n#", 1)[0]
    rows = re.findall(r"^\| (.+?) \| (\d+) \| .+ \|$", section, re.M)
    assert {kind: int(code) for kind, code in rows} == expected
    assert len(rows) == len(expected)
