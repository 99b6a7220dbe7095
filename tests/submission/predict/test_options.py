"""The predict options: resolved from the manifest, and every check in one place - a
ValueError for an option (exit 2), a BundleError naming the key for a manifest value
(exit 3)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from submission.predict.bundle import BundleError, read_manifest
from submission.predict.options import PredictOptions, check_option, region_thresholds
from tests.submission.predict.onnx_bundles import channel_bundle

BAD = [
    ("ensemble", "median", "unknown ensemble method 'median'; choose one of mean, vote"),
    ("top_k", 4, "top-k must lie in 1..3 for 3 member"),
    ("top_k", 0, "top-k must lie in 1..3"),
    ("et_threshold", -1, "ET threshold must be >= 0 voxels, got -1"),
    ("et_replace", "edema", "ET replacement must be one of necrosis, background, got 'edema'"),
    ("threshold", 1.0, r"thresholds must lie in \[0, 1\)"),
    ("threshold", {"WT": 0.3}, "per-region thresholds need exactly WT, TC, ET, got WT"),
    ("overlap", 1.0, r"overlap must lie in \[0, 1\), got 1.0"),
]


def with_recommended_value(bundle, name, value):
    """``bundle``'s manifest with ``recommended.<name>`` set as written, unchecked."""
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["recommended"][name] = value
    (bundle / "manifest.json").write_text(json.dumps(raw))
    return bundle


@pytest.mark.parametrize(("name", "value", "message"), BAD)
def test_a_bad_option_is_a_value_error(tmp_path, name, value, message):
    manifest = read_manifest(channel_bundle(tmp_path / "b"))
    with pytest.raises(ValueError, match=message) as raised:
        PredictOptions(**{name: value}).resolve(manifest)
    assert not isinstance(raised.value, BundleError)
    with pytest.raises(ValueError, match=message):
        check_option(name, value, fewest_members=3)


@pytest.mark.parametrize(("name", "value", "message"), BAD)
def test_the_same_value_in_the_manifest_is_a_bundle_error_naming_the_key(
    tmp_path, name, value, message
):
    bundle = with_recommended_value(channel_bundle(tmp_path / "b"), name, value)
    with pytest.raises(BundleError, match=f"recommended.{name}: {message}"):
        read_manifest(bundle)


def test_none_takes_the_manifest_recommendation_and_flags_override(tmp_path):
    bundle = with_recommended_value(channel_bundle(tmp_path / "b"), "et_threshold", 300)
    manifest = read_manifest(bundle)
    resolved = PredictOptions(ensemble="vote").resolve(manifest)
    assert (resolved.ensemble, resolved.et_threshold, resolved.labels) == ("vote", 300, "2021")
    assert (resolved.et_replace, resolved.threshold, resolved.overlap) == ("necrosis", 0.5, 0.5)
    assert resolved.top_k is None and resolved.tta is False
    assert PredictOptions(et_threshold=0, labels="2023").resolve(manifest).et_threshold == 0
    with pytest.raises(ValueError, match="2030"):
        PredictOptions(labels="2030").resolve(manifest)


def test_region_thresholds():
    assert region_thresholds(0.4) == {"WT": 0.4, "TC": 0.4, "ET": 0.4}
    per_region = {"ET": 0.6, "WT": 0.3, "TC": 0.5}
    assert list(region_thresholds(per_region).items()) == [("WT", 0.3), ("TC", 0.5), ("ET", 0.6)]
    with pytest.raises(ValueError, match=r"got \{'ET': -0.1\}"):
        region_thresholds({"WT": 0.3, "TC": 0.5, "ET": -0.1})


def bratskit(*args):
    return subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)], capture_output=True, text=True
    )


def test_predict_exits_3_for_a_bad_manifest_value_and_2_for_a_bad_flag(case_factory, tmp_path):
    inputs = case_factory()
    bundle = channel_bundle(tmp_path / "b")
    flag = bratskit(
        "predict", "--input", inputs, "--output", tmp_path / "o1", "--bundle", bundle,
        "--top-k", 4,
    )  # fmt: skip
    assert flag.returncode == 2 and "top-k must lie in 1..3" in flag.stderr
    with_recommended_value(bundle, "overlap", 1.5)
    bad = bratskit("predict", "--input", inputs, "--output", tmp_path / "o2", "--bundle", bundle)
    assert bad.returncode == 3 and "recommended.overlap: overlap must lie in [0, 1)" in bad.stderr
