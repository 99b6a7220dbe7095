"""A two-stage run (paper 002, section 2.3) exports both stages and the localisation window."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import yaml

from submission.exit_codes import EXIT_INPUT
from submission.predict.bundle_files import load_bundle


def test_two_stage_run_bundles_both_stages_and_the_window(
    two_stage_run, tmp_path, make_bundle, run_export
):
    out = make_bundle(two_stage_run, tmp_path / "bundle", "--format", "onnx")
    manifest = load_bundle(out)
    assert manifest.localization == (32, 32, 32)
    stage1 = manifest.stage("localization")
    stage2 = manifest.stage("segmentation")
    assert [m.name for m in stage1] == ["stage1-wt/fold0", "stage1-wt/fold1"]
    assert [m.name for m in stage2] == [
        "stage2-wttc/fold0",
        "stage2-wttc/fold1",
        "stage2-et/fold0",
        "stage2-et/fold1",
    ]
    assert all(m.regions == ("WT",) for m in stage1)
    assert [m.regions for m in stage2[::2]] == [("WT", "TC"), ("ET",)]
    assert all(m.patch == (32, 32, 32) and set(m.files) == {"onnx"} for m in manifest.members)
    # Stage 2 predicts the tumour window it was trained on, in one call.
    assert [m.window for m in manifest.members] == ["patch"] * 2 + ["volume"] * 4
    localiser = stage1[0]
    session = ort.InferenceSession(str(out / localiser.files["onnx"].path))
    probs = session.run(None, {"image": np.zeros((1, 4, 40, 40, 32), np.float32)})[0]
    assert probs.shape == (1, 1, 40, 40, 32)
    assert "localisation      32x32x32" in run_export("--info", out).stdout


def test_a_localiser_without_tumour_sampled_members_is_refused(two_stage_run, tmp_path, run_export):
    run = shutil.copytree(two_stage_run, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    for member in config["members"]:
        member["sampling"] = "random"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_export(run, "--out", tmp_path / "bundle")
    assert result.exit_code == EXIT_INPUT
    assert "stage-2 members (sampling: tumour)" in result.stderr
