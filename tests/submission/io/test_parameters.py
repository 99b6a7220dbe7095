"""``bratskit predict --parameters FILE``: the MLCube parameters file, read as predict's
options (file over bundle defaults, command line over file)."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from submission.io.parameters import ParametersError, read_parameters
from tests.submission.predict.onnx_bundles import channel_bundle

CASE = "BraTS2021_00001"


def predict(case_factory, tmp_path, parameters: str | None, *args):
    params = tmp_path / "parameters.yaml"
    if parameters is not None:
        params.write_text(parameters)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "submission", "predict", "--input", str(case_factory())]
    cmd += ["--output", str(out), "--bundle", str(channel_bundle(tmp_path / "b"))]
    cmd += ["--backend", "onnx", "--parameters", str(params), *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    labels = set()
    if (out / f"{CASE}.nii.gz").exists():
        labels = set(np.unique(np.asarray(nib.load(out / f"{CASE}.nii.gz").dataobj)).tolist())
    return result, labels


def test_file_options_override_the_bundle_and_unknown_keys_are_ignored(case_factory, tmp_path):
    result, labels = predict(
        case_factory, tmp_path, "labels: 2023\net-threshold: 0\nmodel_name: someone-else\n"
    )
    assert result.returncode == 0, result.stderr
    assert 3 in labels and 4 not in labels
    assert "ignoring 'model_name', not a predict option" in result.stderr
    assert "labels 2023" in result.stderr


def test_command_line_wins_over_the_file(case_factory, tmp_path):
    result, labels = predict(case_factory, tmp_path, "labels: 2023\n", "--labels", "2021")
    assert result.returncode == 0, result.stderr
    assert 4 in labels and 3 not in labels


@pytest.mark.parametrize("text", ["", "# nothing set\n", "null\n"])
def test_an_empty_file_keeps_the_bundle_defaults(case_factory, tmp_path, text):
    result, labels = predict(case_factory, tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert 4 in labels


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("ensemble: best\n", 2, "Invalid value for '--ensemble'"),
        ("top_k: -1\n", 2, "Invalid value for '--top-k'"),
        ("- labels\n- 2023\n", 3, "must be a mapping"),
        ("labels: [2023\n", 3, "is not valid YAML"),
        (None, 3, "cannot read parameters file"),
    ],
    ids=["bad-choice", "bad-range", "a-list", "not-yaml", "missing"],
)
def test_bad_files_are_clear_errors_and_write_nothing(case_factory, tmp_path, text, code, message):
    result, labels = predict(case_factory, tmp_path, text)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert labels == set()


def test_keys_take_dashes_or_underscores(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("et-threshold: 600\ntop_k: 2\n")
    assert read_parameters(path, {"et_threshold", "top_k"}) == {"et_threshold": 600, "top_k": 2}
    with pytest.raises(ParametersError, match="cannot read"):
        read_parameters(tmp_path / "absent.yaml", set())


def test_the_file_sets_per_region_thresholds_as_the_command_line_does(case_factory, tmp_path):
    # Issue 13: the file could not set per-region thresholds (a mapping became its repr).
    for name in "abcd":
        (tmp_path / name).mkdir()
    mapping, _ = predict(case_factory, tmp_path / "a", "threshold: {ET: 0.9, WT: 0.5, TC: 0.5}\n")
    text, _ = predict(case_factory, tmp_path / "b", 'threshold: "WT=0.5,TC=0.5,ET=0.9"\n')
    flag, _ = predict(case_factory, tmp_path / "c", "", "--threshold", "WT=0.5,TC=0.5,ET=0.9")
    one, _ = predict(case_factory, tmp_path / "d", "threshold: 0.5\n")
    for result in (mapping, text, flag, one):
        assert result.returncode == 0, result.stderr
    written = {name: (tmp_path / name / "out" / f"{CASE}.nii.gz").read_bytes() for name in "abcd"}
    assert written["a"] == written["b"] == written["c"] != written["d"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threshold: {WT: 0.4, TC: 0.5}\n", "per-region thresholds need exactly WT, TC, ET"),
        ("threshold: {WT: 0.4, TC: 0.5, ET: 1.2}\n", "thresholds must lie in [0, 1)"),
        ("threshold: [0.4, 0.5, 0.5]\n", "is not a probability like 0.4"),
        ("threads: 100000000000\n", "Invalid value for '--threads'"),
        ("threads: 1e11\n", "Invalid value for '--threads'"),
        ("top_k: {WT: 2}\n", "Invalid value for '--top-k'"),
    ],
)
def test_bad_thresholds_and_threads_in_the_file_exit_2(case_factory, tmp_path, text, message):
    result, labels = predict(case_factory, tmp_path, text)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and str(tmp_path / "parameters.yaml") in result.stderr
    assert labels == set()
