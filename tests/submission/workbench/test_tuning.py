"""``bratskit tune``: every candidate scored on real predictions of a real ONNX bundle,
the winner written into the manifest, and the scores equal to what ``predict`` then
``evaluate`` give for the same choice."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from submission.io.nifti import read_label_map
from submission.predict.bundle import BundleError, Recommended, read_manifest
from submission.workbench.tuning import Candidate, TuneResult, write_recommended
from tests.submission.predict.onnx_bundles import channel_bundle

SHAPE = ("48", "48", "32")


def bratskit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)], capture_output=True, text=True
    )


def tune(bundle, data, scores, *args) -> tuple[subprocess.CompletedProcess, dict]:
    """``bratskit tune`` with ``--json scores``; the result and the parsed table."""
    result = bratskit("tune", bundle, "--data", data, "--json", scores, *args)
    assert result.returncode == 0, result.stderr
    return result, json.loads(scores.read_text())


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Six synthetic cases with references (one without ET, one with a tiny ET)."""
    root = tmp_path_factory.mktemp("labelled") / "cases"
    result = bratskit("synth", root, "--cases", 6, "--seed", 3, "--shape", *SHAPE)
    assert result.returncode == 0, result.stderr
    return root


def test_held_out_scores_every_choice_and_stores_the_winner(labelled, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    before = read_manifest(bundle).recommended
    result, table = tune(
        bundle,
        labelled,
        tmp_path / "tune.json",
        "--et-thresholds",
        "0,100,400,600",
        "--probability-thresholds",
        "0.3,0.5",
    )
    assert table["mode"] == "held-out" and len(table["cases"]) == 6
    # mean, vote and confidence with k = 1..3 under three rules for empty members; four ET
    # thresholds; 0.3 or 0.5 per region
    assert len(table["candidates"]) == (2 + 3 * 3) * 4 * 2**3
    assert {
        c["confidence_empty"] for c in table["candidates"] if c["ensemble"] == "confidence"
    } == {
        "zero",
        "exclude",
        "background",
    }
    keys = ("ensemble", "top_k", "et_threshold", "threshold", "confidence_empty")
    best = next(c for c in table["candidates"] if {k: c[k] for k in keys} == table["best"])
    current = next(
        c
        for c in table["candidates"]
        if (c["ensemble"], c["et_threshold"], c["threshold"]) == ("mean", 0, [0.5] * 3)
    )
    assert table["current"] == {k: current[k] for k in keys}
    assert f"improvement {best['score'] - current['score']:+.4f}" in result.stdout
    after = read_manifest(bundle).recommended
    if best["score"] > current["score"]:
        assert (after.ensemble, after.top_k, after.et_threshold) == tuple(best[k] for k in keys[:3])
        assert after.confidence_empty == (best["confidence_empty"] or before.confidence_empty)
        thresholds = after.threshold
        if isinstance(thresholds, dict):
            thresholds = [thresholds[r] for r in ("WT", "TC", "ET")]
        else:
            thresholds = [thresholds] * 3
        assert thresholds == best["threshold"]
        assert "wrote the new defaults" in result.stdout
    else:
        assert after == before


def predict_and_evaluate(bundle, data, out, *flags) -> float:
    """``bratskit predict`` with ``flags`` then the 2021 ``evaluate``: the mean over cases
    of the mean Dice of WT, TC and ET, tune's score."""
    out.mkdir()
    result = bratskit("predict", "--input", data, "--output", out, "--bundle", bundle, *flags)
    assert result.returncode == 0, result.stderr
    report = out.with_suffix(".json")
    result = bratskit("evaluate", "--pred", out, "--ref", data, "--json", report)
    assert result.returncode == 0, result.stderr
    summary = json.loads(report.read_text())["summary"]
    return float(np.mean([summary[r]["dice"]["mean"] for r in ("WT", "TC", "ET")]))


def test_the_choice_is_the_best_of_independently_computed_scores(labelled, tmp_path):
    """One member, so the three ensembles coincide and the choice is between two ET
    thresholds: 0 and one just above the smallest ET predicted, which removes it. Each is
    scored by ``predict`` then ``evaluate``; tune must score them the same and keep the
    better one (the current defaults, ET 0, on a tie)."""
    bundle = channel_bundle(tmp_path / "b", folds=1)
    scores = {0: predict_and_evaluate(bundle, labelled, tmp_path / "et0", "--et-threshold", 0)}
    et_voxels = [
        int((read_label_map(p)[0] == 4).sum()) for p in sorted((tmp_path / "et0").iterdir())
    ]
    smallest = min(v for v in et_voxels if v > 0) + 1
    flags = ("--et-threshold", smallest)
    scores[smallest] = predict_and_evaluate(bundle, labelled, tmp_path / "small", *flags)
    assert scores[0] != pytest.approx(scores[smallest], abs=1e-6)  # a real choice
    _, table = tune(
        bundle,
        labelled,
        tmp_path / "tune.json",
        "--et-thresholds",
        f"0,{smallest}",
        "--probability-thresholds",
        "0.5",
        "--dry-run",
    )
    # mean, vote, confidence k=1 under three rules; two ET thresholds
    assert len(table["candidates"]) == (2 + 3) * 2
    for c in table["candidates"]:
        assert c["score"] == pytest.approx(scores[c["et_threshold"]], abs=1e-9)
    winner = max(scores, key=lambda t: (round(scores[t], 10), -t))
    assert table["best"] == {
        "ensemble": "mean",
        "top_k": None,
        "et_threshold": winner,
        "threshold": [0.5] * 3,
        "confidence_empty": None,
    }


def test_dry_run_leaves_the_bundle_unchanged(labelled, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    manifest = (bundle / "manifest.json").read_bytes()
    result = bratskit("tune", bundle, "--data", labelled, "--dry-run", "--et-thresholds", "0,5000")
    assert "candidates)" in result.stdout
    assert result.returncode == 0, result.stderr
    assert (bundle / "manifest.json").read_bytes() == manifest


def test_scores_equal_predict_then_evaluate(labelled, tmp_path):
    """The candidate (vote, ET 100, threshold 0.4) scores what `predict --ensemble vote
    --et-threshold 100 --threshold 0.4` then the 2021 evaluation give: tuning measures the
    real pipeline."""
    bundle = channel_bundle(tmp_path / "b")
    _, table = tune(
        bundle,
        labelled,
        tmp_path / "tune.json",
        "--et-thresholds",
        "100",
        "--probability-thresholds",
        "0.4",
        "--dry-run",
    )
    vote = next(
        c for c in table["candidates"] if c["ensemble"] == "vote" and c["threshold"] == [0.4] * 3
    )
    out = tmp_path / "out"
    out.mkdir()
    args = ("--ensemble", "vote", "--et-threshold", 100, "--threshold", 0.4)
    result = bratskit("predict", "--input", labelled, "--output", out, "--bundle", bundle, *args)
    assert result.returncode == 0, result.stderr
    report = tmp_path / "eval.json"
    result = bratskit("evaluate", "--pred", out, "--ref", labelled, "--json", report)
    assert result.returncode == 0, result.stderr
    summary = json.loads(report.read_text())["summary"]
    for region in ("WT", "TC", "ET"):
        assert vote["dice"][region] == pytest.approx(summary[region]["dice"]["mean"], abs=1e-9)


def test_out_of_fold_uses_only_the_fold_that_held_the_case_out(labelled, tmp_path):
    """One member per fold: every case is predicted by one network, so the three
    ensembles score the same; the split file decides which network."""
    bundle = channel_bundle(tmp_path / "b")
    ids = sorted(p.name for p in labelled.iterdir())
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"seed": 0, "folds": [ids[0:2], ids[2:4], ids[4:6]]}))
    only_half = ("--dry-run", "--probability-thresholds", "0.5")
    _, table = tune(bundle, labelled, tmp_path / "oof.json", "--splits", splits, *only_half)
    assert table["mode"] == "out-of-fold"
    by_threshold: dict[int, set[float]] = {}
    for c in table["candidates"]:
        assert c["top_k"] is None  # confidence keeps its default k out of fold
        by_threshold.setdefault(c["et_threshold"], set()).add(round(c["score"], 12))
    assert all(len(s) == 1 for s in by_threshold.values())
    # and it differs from the held-out scores, where all three folds predict every case
    _, held = tune(bundle, labelled, tmp_path / "held.json", *only_half)
    held_mean0 = next(
        c["score"] for c in held["candidates"] if (c["ensemble"], c["et_threshold"]) == ("mean", 0)
    )
    assert not np.isclose(held_mean0, by_threshold[0].pop())


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--run", "{tmp}", "--splits", "{tmp}/s.json"], 2, "give --run or --splits"),
        (["--et-thresholds", "a,b"], 2, "comma-separated numbers"),
    ],
)
def test_usage_errors(labelled, tmp_path, extra, code, message):
    bundle = channel_bundle(tmp_path / "b")
    args = [a.format(tmp=tmp_path) for a in extra]
    result = bratskit("tune", bundle, "--data", labelled, *args)
    assert result.returncode == code and message in result.stderr


def test_cases_without_references_are_an_input_error(case_factory, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    result = bratskit("tune", bundle, "--data", case_factory())
    assert result.returncode == 3, result.stderr
    assert "label map" in result.stderr


def test_write_recommended_stores_the_best_candidate(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    manifest = read_manifest(bundle)
    current = Candidate("mean", None, 0, (0.5,) * 3)
    best = Candidate("confidence", 2, 400, (0.3, 0.5, 0.5))
    result = TuneResult("held-out", ["c1", "c2"], current, ("WT", "TC", "ET"))
    result.dice = {current: [[0.8, 0.7, 0.6]] * 2, best: [[0.9, 0.7, 0.6]] * 2}
    assert write_recommended(result, manifest, bundle) == bundle / "manifest.json"
    tuned = read_manifest(bundle)
    assert tuned.recommended == Recommended(
        ensemble="confidence",
        top_k=2,
        et_threshold=400,
        threshold={"WT": 0.3, "TC": 0.5, "ET": 0.5},
    )
    assert tuned.members == manifest.members  # only the defaults change
    # one threshold for all three regions is stored as one number
    result.dice = {
        current: [[0.8, 0.7, 0.6]],
        Candidate("vote", None, 100, (0.4,) * 3): [[1, 1, 1]],
    }
    write_recommended(result, manifest, bundle)
    assert read_manifest(bundle).recommended == Recommended("vote", None, 100, threshold=0.4)
    # a confidence rule and the ET replacement scored with are stored with the winner
    ruled = Candidate("confidence", 2, 400, (0.5,) * 3, "exclude")
    result.dice = {current: [[0.8, 0.7, 0.6]], ruled: [[1, 1, 1]]}
    result.et_replace = "empty"
    write_recommended(result, manifest, bundle)
    assert read_manifest(bundle).recommended == Recommended(
        "confidence", 2, 400, et_replace="empty", confidence_empty="exclude"
    )


def test_write_recommended_refuses_a_candidate_the_bundle_cannot_take(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    before = (bundle / "manifest.json").read_bytes()
    current = Candidate("mean", None, 0, (0.5,) * 3)
    result = TuneResult("held-out", ["c1"], current, ("WT", "TC", "ET"))
    result.dice = {
        current: [[0.5, 0.5, 0.5]],
        Candidate("confidence", 5, 0, (0.5,) * 3): [[1, 1, 1]],
    }
    with pytest.raises(BundleError, match="recommended.top_k: top-k must lie in 1..3"):
        write_recommended(result, read_manifest(bundle), bundle)
    assert (bundle / "manifest.json").read_bytes() == before


def test_confidence_rules_and_et_replace_score_what_predict_then_evaluate_give(labelled, tmp_path):
    """tune --et-replace empty --confidence-empty exclude,background: each confidence rule
    (k = 2 of 3 members) with every ET removed (a threshold above any ET; the bundle's 0 is
    scored too) scores what
    ``predict`` with the same flags then ``evaluate`` give; the rule and the ET replacement
    reach the engine, and the ET replacement changes TC."""
    bundle = channel_bundle(tmp_path / "b")
    et = ("--et-threshold", 100000)
    tuned = ("--et-thresholds", "100000", "--probability-thresholds", "0.5", "--dry-run")
    result, table = tune(
        bundle,
        labelled,
        tmp_path / "tune.json",
        *tuned,
        "--et-replace",
        "empty",
        "--confidence-empty",
        "exclude,background",
    )
    assert table["et_replace"] == "empty" and "ET below the ET threshold: empty" in result.stdout
    rules = {c["confidence_empty"] for c in table["candidates"] if c["ensemble"] == "confidence"}
    assert rules == {"exclude", "background"}
    for rule in ("exclude", "background"):
        scored = next(
            c
            for c in table["candidates"]
            if (c["ensemble"], c["top_k"], c["confidence_empty"], c["et_threshold"])
            == ("confidence", 2, rule, 100000)
        )
        flags = ("--ensemble", "confidence", "--top-k", 2, "--confidence-empty", rule, *et)
        score = predict_and_evaluate(
            bundle, labelled, tmp_path / rule, *flags, "--et-replace", "empty"
        )
        assert scored["score"] == pytest.approx(score, abs=1e-9)
    necrosis = predict_and_evaluate(bundle, labelled, tmp_path / "necrosis", *et)
    _, plain = tune(bundle, labelled, tmp_path / "plain.json", *tuned)
    mean = next(
        c for c in plain["candidates"] if (c["ensemble"], c["et_threshold"]) == ("mean", 100000)
    )
    assert plain["et_replace"] == "necrosis" and mean["score"] == pytest.approx(necrosis, abs=1e-9)
    emptied = next(
        c for c in table["candidates"] if (c["ensemble"], c["et_threshold"]) == ("mean", 100000)
    )
    assert emptied["dice"]["TC"] != pytest.approx(mean["dice"]["TC"], abs=1e-6)


def test_unknown_confidence_rule_is_a_usage_error(labelled, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    result = bratskit("tune", bundle, "--data", labelled, "--confidence-empty", "zero,never")
    assert result.returncode == 2 and "zero, exclude, background" in result.stderr
