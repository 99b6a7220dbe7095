"""``bratskit export RUN --out BUNDLE`` end to end on really trained tiny runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.parity import (
    TOLERANCES,
    eager_forward,
    onnx_forward,
    parity_inputs,
    torchscript_forward,
)
from export.runs import load_member, read_run
from submission.brats import MODALITIES
from submission.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_USAGE
from submission.predict.bundle import BundleError, read_manifest
from submission.predict.bundle_files import load_bundle
from submission.predict.preprocess import Preprocessing

PATCH = [32, 32, 32]  # the members' crop in conftest.resunet_member


def test_bundle_of_a_trained_run_lists_every_fold_with_checked_files(tiny_run, tiny_bundle):
    manifest = load_bundle(tiny_bundle)  # verifies every sha256
    assert [m.name for m in manifest.members] == ["seg/fold0", "seg/fold1"]
    assert manifest.label_scheme == "2021"  # the recipe's "auto"
    assert manifest.channels == MODALITIES
    assert manifest.preprocessing == Preprocessing(crop="brain", margin=4, divisor=8)
    assert manifest.localization is None
    assert manifest.recommended.ensemble == "mean" and manifest.recommended.et_threshold == 0
    for member in manifest.members:
        assert member.stage == "segmentation" and member.regions == ("WT", "TC", "ET")
        assert member.architecture == {
            "name": "resunet",
            "params": {"base_filters": 4, "levels": 3, "out_channels": 3},
        }
        assert member.size_rule.divisors == (4, 4, 4) and member.patch == tuple(PATCH)
        assert member.outputs == "probabilities"
        assert member.window == "patch"  # trained on random patches: predicted in windows
        assert set(member.files) == {"onnx", "torchscript", "onnx-fp16"}
        for model_file in member.files.values():
            assert model_file.path.startswith(f"seg/fold{member.fold}.")
            assert model_file.parity["tolerance"] == TOLERANCES[model_file.precision]
            assert model_file.parity["input_shape"] == [2, 4, *PATCH]
        assert member.files["onnx-fp16"].precision == "fp16"
    raw = json.loads((tiny_bundle / "manifest.json").read_text())
    assert raw["members"][0]["files"]["onnx"]["parity"]["reference"] == "eager torch, fp32"
    assert raw["members"][0]["window"] == "patch"
    assert sorted(p.name for p in (tiny_bundle / "seg").iterdir()) == sorted(
        f"fold{k}{s}" for k in (0, 1) for s in (".onnx", ".fp16.onnx", ".torchscript.pt")
    )
    assert not list(tiny_bundle.parent.glob(".*partial"))


def test_recorded_parity_is_the_difference_we_measure_from_the_checkpoint(tiny_run, tiny_bundle):
    # Export refuses a file above the tolerance, so the record is only worth what it says:
    # the difference between each file and its fold's eager model on the check input.
    manifest = load_bundle(tiny_bundle)
    checkpoints = {c.name: c for c in read_run(tiny_run).checkpoints}
    forwards = {"onnx": onnx_forward, "onnx-fp16": onnx_forward, "torchscript": torchscript_forward}
    for member in manifest.members:
        loaded = load_member(checkpoints[member.name])
        inputs = parity_inputs(loaded.size_rule, manifest.preprocessing, member.patch)
        reference = eager_forward(loaded.model)(inputs.check_ncdhw)
        for fmt, model_file in member.files.items():
            out = forwards[fmt](tiny_bundle / model_file.path)(inputs.check_ncdhw)
            measured = float(np.max(np.abs(out - reference)))
            assert model_file.parity["max_abs_diff"] == pytest.approx(measured, rel=1e-3, abs=1e-7)
            assert model_file.parity["input_shape"] == list(inputs.check_ncdhw.shape)


def test_bundle_files_run_in_onnxruntime_and_torchscript_like_the_checkpoint(tiny_bundle):
    member = load_bundle(tiny_bundle).members[1]
    x = parity_inputs(member.size_rule, Preprocessing(divisor=8), (24, 40, 32)).check_ncdhw
    onnx_probs = ort.InferenceSession(str(tiny_bundle / member.files["onnx"].path)).run(
        None, {"image": x}
    )[0]
    scripted = torch.jit.load(str(tiny_bundle / member.files["torchscript"].path))
    with torch.no_grad():
        ts_probs = scripted(torch.from_numpy(x)).numpy()
    assert onnx_probs.shape == (2, 3, 24, 40, 32)
    np.testing.assert_allclose(onnx_probs, ts_probs, atol=TOLERANCES["fp32"])
    assert onnx_probs.min() >= 0 and onnx_probs.max() <= 1


def test_fp16_file_has_half_weights_float32_io_and_recorded_parity(tiny_bundle):
    member = load_bundle(tiny_bundle).members[0]
    half = member.files["onnx-fp16"]
    assert half.parity["tolerance"] == TOLERANCES["fp16"] == 1e-2
    assert 0 < half.parity["max_abs_diff"] <= 1e-2
    graph = onnx.load(str(tiny_bundle / half.path)).graph
    assert "InstanceNormalization" in {n.op_type for n in graph.node}  # native norms
    weights = [t for t in graph.initializer if len(t.dims) == 5]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_info_prints_the_bundle_and_a_tampered_file_is_refused(tiny_bundle, tmp_path, run_export):
    result = run_export("--info", tiny_bundle)
    assert result.exit_code == 0, result.output
    assert "seg/fold1" in result.stdout and "seg/fold1.fp16.onnx" in result.stdout
    assert "parity" in result.stdout and "resunet" in result.stdout
    copy = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    with open(copy / "seg" / "fold0.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="fold0.onnx has sha256"):
        load_bundle(copy)
    result = run_export("--info", copy)
    assert result.exit_code == EXIT_INPUT
    assert "re-export the bundle" in result.stderr and "Traceback" not in result.output


def test_existing_output_is_kept_without_force_and_replaced_with_it(
    tiny_run, tmp_path, run_export, make_bundle
):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_export(tiny_run, "--out", out, "--format", "onnx")
    assert result.exit_code == EXIT_USAGE and "--force" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    make_bundle(tiny_run, out, "--format", "onnx", "--force", "--labels", "2023")
    assert not (out / "keep.txt").exists()
    manifest = read_manifest(out)
    assert {fmt for m in manifest.members for fmt in m.files} == {"onnx"}
    assert manifest.label_scheme == "2023"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporary folder left


def test_member_keys_of_several_runs_are_prefixed_with_the_run_folder(
    tiny_run, tmp_path, make_bundle
):
    run_a = shutil.copytree(tiny_run, tmp_path / "runA")
    run_b = shutil.copytree(tiny_run, tmp_path / "runB")
    shutil.rmtree(run_b / "seg" / "fold1")
    summary = json.loads((run_b / "summary.json").read_text())
    del summary["members"]["seg"]["1"]
    (run_b / "summary.json").write_text(json.dumps(summary))
    out = make_bundle([run_a, run_b], tmp_path / "bundle", "--format", "onnx")
    names = [m.name for m in load_bundle(out).members]
    assert names == ["runA-seg/fold0", "runA-seg/fold1", "runB-seg/fold0"]


def test_a_fold_listed_in_the_summary_without_best_pt_is_an_error(tiny_run, tmp_path, run_export):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "seg" / "fold1" / "best.pt").unlink()
    result = run_export(run, "--out", tmp_path / "bundle")
    assert result.exit_code == EXIT_INPUT
    assert str(run / "seg" / "fold1" / "best.pt") in result.stderr
    (run / "summary.json").unlink()
    (run / "seg" / "fold0" / "best.pt").unlink()
    result = run_export(run, "--out", tmp_path / "bundle")
    assert result.exit_code == EXIT_INPUT and "member 'seg' has no checkpoint" in result.stderr
    assert not (tmp_path / "bundle").exists()


def test_runs_with_different_preprocessing_cannot_be_combined(tiny_run, tmp_path, run_export):
    other = shutil.copytree(tiny_run, tmp_path / "other")
    config = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(config.replace("margin: 4", "margin: 2"))
    result = run_export(tiny_run, other, "--out", tmp_path / "bundle")
    assert result.exit_code == EXIT_INPUT
    assert "different preprocessing" in result.stderr and "margin': 2" in result.stderr


class _Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to build it."""


def test_checkpoints_are_never_unpickled(tiny_run, tmp_path, run_export):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    best = run / "seg" / "fold0" / "best.pt"
    payload = torch.load(best, weights_only=True)
    torch.save({**payload, "extra": _Payload()}, best)
    result = run_export(run, "--out", tmp_path / "bundle", "--format", "onnx")
    assert result.exit_code == EXIT_INPUT
    assert f"cannot read checkpoint {best}: UnpicklingError" in result.stderr
    assert not (tmp_path / "bundle").exists() and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_failing_member_fails_the_export_and_writes_nothing(tiny_run, tmp_path, run_export):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    best = run / "seg" / "fold1" / "best.pt"
    payload = torch.load(best, weights_only=True)
    payload["model"]["head.bias"] += 1e5  # logits beyond float16's range
    torch.save(payload, best)
    result = run_export(run, "--out", tmp_path / "bundle", "--format", "onnx", "--fp16")
    assert result.exit_code == EXIT_FAILED, result.output
    assert "seg/fold1 onnx-fp16: an activation reaches 1e+05" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # fold0 was written, then removed
