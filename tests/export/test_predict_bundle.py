"""Exported bundles through ``bratskit predict``: every ensemble, both backends, localisation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import SEG_SUFFIX
from submission.workbench.synth import write_synthetic_dataset


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """Two unseen synthetic cases, images only (as the organisers give them)."""
    root = tmp_path_factory.mktemp("held-out")
    write_synthetic_dataset(root, 2, layout="2021", seed=11, shape=(48, 48, 32))
    for seg in root.glob(f"*/*_{SEG_SUFFIX}.nii.gz"):
        seg.unlink()
    return root


def bratskit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)], capture_output=True, text=True
    )


def predict(inputs: Path, out: Path, bundle: Path, *flags) -> subprocess.CompletedProcess:
    out.mkdir(parents=True)
    result = bratskit("predict", "--input", inputs, "--output", out, "--bundle", bundle, *flags)
    assert result.returncode == 0, result.stderr
    return result


def labels_of(folder: Path) -> list[np.ndarray]:
    return [np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))]


@pytest.mark.parametrize("method", ["mean", "vote", "confidence"])
def test_each_ensemble_method_writes_outputs_that_validate(tiny_bundle, held_out, tmp_path, method):
    out = tmp_path / method
    predict(held_out, out, tiny_bundle, "--ensemble", method, "--backend", "onnx")
    check = bratskit("validate", held_out, "--output", out)
    assert check.returncode == 0, check.stdout
    assert len(list(out.iterdir())) == 2


def test_onnx_runtime_and_torchscript_agree_on_the_same_bundle(tiny_bundle, held_out, tmp_path):
    predict(held_out, tmp_path / "onnx", tiny_bundle, "--backend", "onnx")
    predict(held_out, tmp_path / "ts", tiny_bundle, "--backend", "torchscript", "--tta")
    predict(held_out, tmp_path / "ts-plain", tiny_bundle, "--backend", "torchscript")
    for a, b in zip(labels_of(tmp_path / "onnx"), labels_of(tmp_path / "ts-plain")):
        assert np.mean(a == b) >= 0.999
    assert len(labels_of(tmp_path / "ts")) == 2  # TTA ran through the TorchScript backend


def test_two_stage_bundle_localises_then_segments(two_stage_run, make_bundle, held_out, tmp_path):
    bundle = make_bundle(two_stage_run, tmp_path / "bundle", "--format", "onnx")
    result = predict(held_out, tmp_path / "out", bundle, "--labels", "2023")
    check = bratskit("validate", held_out, "--output", tmp_path / "out", "--labels", "2023")
    assert check.returncode == 0, check.stdout
    assert "localise" in result.stderr
    # The stage-2 members predict inside the 32^3 window only: nothing outside it.
    for labels in labels_of(tmp_path / "out"):
        foreground = np.argwhere(labels > 0)
        if foreground.size:
            assert (np.ptp(foreground, axis=0) < 32).all()
