"""``bratskit export --onnx``: ONNX files trained elsewhere, validated and bundled."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from submission.exit_codes import EXIT_INPUT, EXIT_USAGE
from submission.predict.bundle_files import load_bundle
from submission.predict.sliding_window import SizeRule
from train.models import build_model

REGIONS = "TC,WT,ET"


def _onnx_logits(path, in_channels: int = 4, seed: int = 0):
    """A tiny residual U-Net exported to ONNX as raw logits, dynamic batch and space."""
    torch.manual_seed(seed)
    net = build_model("resunet", in_channels=in_channels, base_filters=4, levels=3, out_channels=3)
    axes = {0: "n", 2: "d", 3: "h", 4: "w"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (torch.randn(1, in_channels, 16, 16, 16),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": axes, "logits": axes},
        )
    return path


@pytest.fixture(scope="module")
def logits_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("imported")
    return [_onnx_logits(root / f"model{k}.onnx", seed=k) for k in range(2)]


def test_onnx_files_become_the_folds_of_an_imported_member(logits_files, tmp_path, run_export):
    args = ["--onnx", *logits_files, "--regions", REGIONS, "--outputs", "logits"]
    result = run_export(
        *args, "--channels", "t2f,t1n,t1c,t2w", "--divisor", 8, "--out", tmp_path / "b"
    )
    assert result.exit_code == 0, result.output
    manifest = load_bundle(tmp_path / "b")
    assert [m.name for m in manifest.members] == ["imported/fold0", "imported/fold1"]
    assert manifest.channels == ("t2f", "t1n", "t1c", "t2w")
    assert manifest.preprocessing.divisor == 8 and manifest.preprocessing.crop == "brain"
    assert manifest.label_scheme == "2021" and manifest.localization is None
    for member in manifest.members:
        assert member.regions == ("TC", "WT", "ET") and member.outputs == "logits"
        assert member.architecture is None and member.patch is None
        assert member.size_rule == SizeRule((8, 8, 8))
        (model_file,) = member.files.values()
        assert set(member.files) == {"onnx"} and model_file.parity is None
        assert model_file.path == f"imported/fold{member.fold}.onnx"
        original = logits_files[member.fold].read_bytes()
        assert (tmp_path / "b" / model_file.path).read_bytes() == original
    assert "imported/fold1" in result.stdout and "not checked" in result.stdout


def test_a_file_with_the_wrong_channel_count_is_refused(logits_files, tmp_path, run_export):
    bad = _onnx_logits(tmp_path / "three.onnx", in_channels=3)
    args = ["--onnx", logits_files[0], bad, "--regions", REGIONS, "--outputs", "logits"]
    result = run_export(*args, "--out", tmp_path / "b")
    assert result.exit_code == EXIT_INPUT
    assert f"{bad} takes 3 input channels; expected 4" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()


def test_logits_declared_as_probabilities_are_refused(logits_files, tmp_path, run_export):
    args = ["--onnx", logits_files[0], "--regions", REGIONS, "--outputs", "probabilities"]
    result = run_export(*args, "--divisor", 8, "--out", tmp_path / "b")
    assert result.exit_code == EXIT_INPUT and "pass --outputs logits" in result.stderr


def test_region_count_must_match_the_outputs(logits_files, tmp_path, run_export):
    args = ["--onnx", logits_files[0], "--regions", "TC,WT,ET,WT", "--outputs", "logits"]
    assert run_export(*args, "--out", tmp_path / "b").exit_code == EXIT_USAGE
    not_a_model = tmp_path / "notes.onnx"
    not_a_model.write_text("not onnx")
    args = ["--onnx", not_a_model, "--regions", REGIONS, "--outputs", "logits"]
    result = run_export(*args, "--out", tmp_path / "b")
    assert result.exit_code == EXIT_INPUT and "does not load in onnxruntime" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--regions", "WT", "--outputs", "logits"], "predict no TC,ET"),
        (["--outputs", "logits"], "--onnx needs --regions"),
        (["--regions", REGIONS, "--outputs", "logits", "--fp16"], "--fp16 apply to training runs"),
        (["--regions", REGIONS, "--outputs", "logits", "--channels", "t1,t2"], "channels must"),
    ],
)
def test_import_usage_errors(logits_files, tmp_path, run_export, args, message):
    result = run_export("--onnx", logits_files[0], *args, "--out", tmp_path / "b")
    assert result.exit_code == EXIT_USAGE
    assert message in result.stderr


def test_imported_outputs_are_what_the_file_computes(logits_files, tmp_path, run_export):
    import onnxruntime as ort

    args = ["--onnx", logits_files[0], "--regions", REGIONS, "--outputs", "logits"]
    assert run_export(*args, "--out", tmp_path / "b").exit_code == 0
    x = np.random.default_rng(0).standard_normal((1, 4, 16, 32, 16), dtype=np.float32)
    copied = ort.InferenceSession(str(tmp_path / "b" / "imported" / "fold0.onnx"))
    source = ort.InferenceSession(str(logits_files[0]))
    np.testing.assert_array_equal(copied.run(None, {"x": x})[0], source.run(None, {"x": x})[0])
