"""Issue 15, "one engine for every member": a bundle merged from imported nnU-Net folds and
our own members runs through ``predict`` and ``tune``; the nnU-Net group enters the
ensemble as one probability map per region (its folds averaged as logits), the same map
the nnU-Net bundle alone gives."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from submission.cli import main
from submission.io.cases import discover_cases
from submission.predict.bundle import read_manifest
from submission.predict.engine import Engine
from submission.predict.preprocess import crop
from tests.export.nnunet_fixtures import (  # noqa: F401 (the *_fixture are fixtures)
    bratskit_labels,
    nnunet_region_bundle_fixture,
    nnunet_region_model_fixture,
)
from tests.submission.predict.onnx_bundles import channel_bundle


def _ours(root):
    """Three pointwise folds, 2021 labels, no task (trained without --task): they merge
    with the nnU-Net bundle of task gli-2021."""
    return channel_bundle(root)


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_merged_bundle_predicts_and_tunes(nnunet_region_bundle, nnunet_region_model, tmp_path):
    model = nnunet_region_model
    merged = tmp_path / "mixed"
    _invoke("bundle", "merge", nnunet_region_bundle, _ours(tmp_path / "ours"), "--out", merged)
    manifest = read_manifest(merged)
    assert manifest.task == "gli-2021"
    assert manifest.fewest_members == 1 + 3  # the nnU-Net group is one ensemble input

    case = discover_cases(model.test_dir).cases[0]
    mixed, alone = Engine(merged), Engine(nnunet_region_bundle)
    prepared, _ = mixed.prepare_case(case)
    probs = mixed.member_probabilities(prepared, [])
    assert {r: len(p) for r, p in probs.items()} == {"WT": 4, "TC": 4, "ET": 4}
    own, _ = alone.prepare_case(case)
    nnunet = alone.member_probabilities(own, [])
    for region in ("WT", "TC", "ET"):
        full = np.zeros(prepared.crop.in_shape, dtype=np.float32)
        full[tuple(slice(a, b) for a, b in zip(own.crop.start, own.crop.stop))] = nnunet[region][0]
        np.testing.assert_array_equal(probs[region][3], crop(full, prepared.crop))

    out = tmp_path / "pred"
    _invoke("predict", "--input", model.test_dir, "--output", out, "--bundle", merged)
    assert sorted(bratskit_labels(out)) == sorted(
        c.case_id for c in discover_cases(model.test_dir).cases
    )
    _invoke("tune", merged, "--data", model.cases_dir, "--json", tmp_path / "tune.json")
    tuned = json.loads((tmp_path / "tune.json").read_text())
    rows = tuned["candidates"]
    assert {r["top_k"] for r in rows if r["ensemble"] == "confidence"} == {1, 2, 3, 4}
    assert read_manifest(merged).recommended.ensemble == tuned["best"]["ensemble"]
