"""Issue 14, must show 1: every 2024+ task end to end, as a team would run it.

For gli-post, ped, met (t2w absent in some cases) and men-rt (t1c alone, anisotropic
native grid): ``bratskit synth --task``, ``bratskit train --config tiny --task`` (one
epoch, one fold: the path, not the Dice), ``bratskit export``, prediction through the
container's own ``entrypoint.sh`` (MLCube ``infer``, no flag: the bundle's task sets the
labels), ``bratskit validate --output --task`` accepts it, and ``evaluate --scheme 2025
--task`` equals ``brats-evaluate --config <task>`` on every group of every case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.evaluation import evaluate_folders
from submission.io.references import find_label_maps
from submission.tasks import get_task
from tests.submission.evaluation.test_2025 import PARSER_COLUMNS
from tests.submission.evaluation.test_tasks_2025 import equal_to_official, official

ROOT = Path(__file__).resolve().parents[1]
SHAPE = ("48", "48", "32")
TRAIN_CASES, HELD_OUT = 6, 4


def bratskit(*args, env=None) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert run.returncode == 0, f"bratskit {' '.join(map(str, args))}:\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def eval_extra() -> None:
    for module in ("panoptica", "brats_evaluation", "torch", "onnx"):
        pytest.importorskip(module)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gli-post", "ped", "met", "men-rt"])
def test_a_task_trains_exports_predicts_validates_and_scores_as_the_organisers(
    eval_extra, name, tmp_path
):
    task = get_task(name)
    train, held = tmp_path / "train", tmp_path / "held-out"
    bratskit("synth", train, "--task", name, "--cases", TRAIN_CASES, "--seed", 5, "--shape", *SHAPE)
    bratskit(
        "synth", held, "--task", name, "--cases", HELD_OUT, "--seed", 1000,
        "--first", TRAIN_CASES, "--shape", *SHAPE,
    )  # fmt: skip
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    bratskit(
        "train", "--data", train, "--config", "tiny", "--task", name, "--out", run,
        "--epochs", 1, "--folds", 0,
    )  # fmt: skip
    bratskit("export", run, "--out", bundle, "--format", "onnx")

    # The container's entrypoint, with no flag: the bundle's task decides the labels.
    pred = tmp_path / "pred"
    env = {**os.environ, "BRATSKIT_BUNDLE": str(bundle)}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    infer = subprocess.run(
        [str(ROOT / "entrypoint.sh"), "infer", "--data_path", held, "--output_path", pred],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert infer.returncode == 0, infer.stderr[-3000:]
    references = find_label_maps(held)
    assert sorted(p.name for p in pred.iterdir()) == sorted(f"{i}.nii.gz" for i in references)
    if task.optional:  # MET 2026: the cases without t2w were predicted, and said so
        absent = [c for c in references if not any(held.glob(f"{c}/*t2w*"))]
        assert absent, "synth --task met leaves t2w out of some cases"
        for case_id in absent:
            assert f"{case_id}" in infer.stderr and "t2w absent" in infer.stderr

    checked = bratskit("validate", held, "--output", pred, "--task", name)
    assert f"{HELD_OUT} valid, 0 invalid" in checked.stdout
    for case_id, reference in references.items():  # the output lies on the input's grid
        out, ref = nib.load(pred / f"{case_id}.nii.gz"), nib.load(reference)
        assert out.shape == ref.shape and np.allclose(out.affine, ref.affine, atol=1e-5)
        assert set(np.unique(np.asarray(out.dataobj)).tolist()) <= task.label_scheme.valid_labels

    ref = tmp_path / "ref"
    ref.mkdir()
    for case_id, reference in references.items():
        shutil.copy(reference, ref / f"{case_id}.nii.gz")
    result = evaluate_folders(pred, ref, scheme="2025", task=name)
    assert result.labels == task.scheme and set(result.regions) == set(task.scored)
    compared = equal_to_official(result, official(name, pred, ref, tmp_path))
    assert compared == HELD_OUT * len(task.scored) * len(PARSER_COLUMNS)
