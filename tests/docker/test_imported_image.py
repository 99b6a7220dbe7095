"""Issue 15, must show 3: an image built from a bundle imported by ``bratskit import
nnunet`` runs as the organisers run it (no network, another user, read-only input), and
its outputs are valid and are what nnU-Net's own predictor writes (>= 99.9% of voxels).
The image carries the bundle's ONNX files and numpy code only: no torch, no nnunetv2."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.docker.conftest import Image, build_image, logs, output_folder, run_image
from tests.export.nnunet_fixtures import (  # noqa: F401 (the *_fixture are fixtures)
    bratskit_labels,
    nnunet_region_bundle_fixture,
    nnunet_region_model_fixture,
    predict_with_nnunet,
)

TAG = os.environ.get("BRATSKIT_TEST_IMAGE", "bratskit:test") + "-nnunet"


@pytest.fixture(scope="module")
def nnunet_image(nnunet_region_bundle) -> Image:
    yield build_image(nnunet_region_bundle, TAG)
    subprocess.run(["docker", "image", "rm", "-f", TAG], capture_output=True)


def test_imported_nnunet_image_predicts_what_nnunet_predicts(
    nnunet_image, nnunet_region_model, tmp_path
):
    model = nnunet_region_model
    out = output_folder(tmp_path / "out")
    proc = run_image(nnunet_image, input_dir=model.test_dir, output_dir=out)
    assert proc.returncode == 0, logs(proc)
    check = subprocess.run(
        [sys.executable, "-m", "submission", "validate", str(model.test_dir), "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    got = bratskit_labels(out)
    # The image's default is the bundle's: no mirroring (nnU-Net's --disable_tta).
    expected = predict_with_nnunet(model, model.test_dir, tmp_path / "nnunet", mirroring=False)
    assert sorted(got) == sorted(expected)
    assert any((labels > 0).any() for labels in expected.values())
    for case, labels in expected.items():
        assert float(np.mean(got[case] == labels)) >= 0.999, case
