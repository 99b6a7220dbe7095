"""The predict options: resolved from the manifest, and every check in one place - a
ValueError for an option (exit 2), a BundleError naming the key for a manifest value
(exit 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from submission.io.nifti import read_label_map
from submission.predict.bundle import BundleError, read_manifest
from submission.predict.options import (
    PredictOptions,
    RuntimeOptions,
    check_option,
    parse_threshold,
    region_thresholds,
)
from tests.submission.predict.onnx_bundles import channel_bundle

BAD = [
    ("ensemble", "median", "unknown ensemble method 'median'; choose one of mean, vote"),
    ("top_k", 4, "top-k must lie in 1..3 for 3 member"),
    ("top_k", 0, "top-k must lie in 1..3"),
    ("et_threshold", -1, "ET threshold must be >= 0 voxels, got -1"),
    (
        "et_replace",
        "edema",
        "ET replacement must be one of necrosis, background, empty, got 'edema'",
    ),
    (
        "confidence_empty",
        "one",
        "confidence rule for empty members must be one of zero, exclude, background, got 'one'",
    ),
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
    assert resolved.confidence_empty == "exclude"  # the measured default
    assert PredictOptions(confidence_empty="zero").resolve(manifest).confidence_empty == "zero"
    ruled = read_manifest(with_recommended_value(bundle, "confidence_empty", "background"))
    assert PredictOptions().resolve(ruled).confidence_empty == "background"
    assert PredictOptions(et_threshold=0, labels="2023").resolve(manifest).et_threshold == 0
    with pytest.raises(ValueError, match="2030"):
        PredictOptions(labels="2030").resolve(manifest)


def test_region_thresholds():
    regions = ("WT", "TC", "ET")
    assert region_thresholds(0.4, regions) == {"WT": 0.4, "TC": 0.4, "ET": 0.4}
    per_region = {"ET": 0.6, "WT": 0.3, "TC": 0.5}
    assert list(region_thresholds(per_region, regions).items()) == [
        ("WT", 0.3),
        ("TC", 0.5),
        ("ET", 0.6),
    ]
    with pytest.raises(ValueError, match=r"got \{'ET': -0.1\}"):
        region_thresholds({"WT": 0.3, "TC": 0.5, "ET": -0.1}, regions)
    # the bundle's regions decide: RC is a region of gli-post bundles, not of 2021 ones
    assert region_thresholds(0.4, ("WT", "TC", "ET", "RC"))["RC"] == 0.4
    for text in ("WT=0.3,TC=0.5", "WT=0.3,TC=0.5,ET=0.5,RC=0.5"):
        with pytest.raises(ValueError, match="per-region thresholds need exactly WT, TC, ET, got"):
            region_thresholds(parse_threshold(text), regions)


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


@pytest.mark.parametrize("threads", [0, -1, 4097, 10**11, True, 2.0])
def test_threads_outside_1_to_4096_are_refused(threads):
    with pytest.raises(ValueError, match=r"threads must be an integer in 1..4096"):
        RuntimeOptions(threads=threads)
    assert RuntimeOptions(threads=4096).threads == 4096 and RuntimeOptions().threads is None


@pytest.mark.parametrize("threads", ["100000000000", "4097", "0", "1e11"])
def test_predict_exits_2_for_threads_out_of_range(case_factory, tmp_path, threads):
    # Issue 13: --threads 100000000000 reached OpenVINO, whose error became a traceback.
    out = tmp_path / "out"
    result = bratskit(
        "predict", "--input", case_factory(), "--output", out,
        "--bundle", channel_bundle(tmp_path / "b"), "--threads", threads,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--threads'" in result.stderr and not out.exists()


def test_parse_threshold_reads_one_probability_or_one_per_region():
    assert parse_threshold("0.4") == 0.4
    assert parse_threshold(" et=0.6, WT=0.3 ,TC=0.5") == {"WT": 0.3, "TC": 0.5, "ET": 0.6}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0", r"thresholds must lie in \[0, 1\), got \[1.0\]"),
        ("nan", r"thresholds must lie in \[0, 1\)"),
        ("half", "threshold 'half' is not a probability like 0.4, or one per region like WT=0.4"),
        ("0.4,0.5", "threshold '0.4,0.5' is not a probability"),
        ("WT=0.3,XX=0.5", "'XX' is no region; regions are CC, ET, GTV, RC, TC, WT"),
        ("WT=0.3,wt=0.4,ET=0.5", "threshold 'WT=0.3,wt=0.4,ET=0.5' gives WT twice"),
        ("WT=0.3,TC=,ET=0.5", "threshold 'WT=0.3,TC=,ET=0.5': 'TC=' is not a probability"),
        ("WT=0.3,TC=0.5,ET=1.5", r"thresholds must lie in \[0, 1\), got \{'ET': 1.5\}"),
    ],
)
def test_parse_threshold_refuses_with_the_form(text, message):
    with pytest.raises(ValueError, match=message):
        parse_threshold(text)


def et_voxels(path):
    import nibabel as nib
    import numpy as np

    return int((np.asarray(nib.load(path).dataobj) == 4).sum())


def test_predict_takes_one_threshold_per_region(case_factory, tmp_path):
    inputs, bundle = case_factory(), channel_bundle(tmp_path / "b")
    counts = {}
    thresholds = {"one": "0.5", "same": "WT=0.5,TC=0.5,ET=0.5", "et": "ET=0.9,WT=0.5,TC=0.5"}
    for name, threshold in thresholds.items():
        out = tmp_path / name
        args = ["--output", out, "--bundle", bundle, "--backend", "onnx", "--threshold", threshold]
        result = bratskit("predict", "--input", inputs, *args)
        assert result.returncode == 0, result.stderr
        counts[name] = et_voxels(out / "BraTS2021_00001.nii.gz")
    assert counts["one"] == counts["same"] > counts["et"] > 0
    bad = bratskit(
        "predict", "--input", inputs, "--output", tmp_path / "bad", "--bundle", bundle,
        "--threshold", "WT=0.4",
    )  # fmt: skip
    assert bad.returncode == 2 and "Invalid value for '--threshold'" in bad.stderr
    assert "per-region thresholds need exactly WT, TC, ET, got WT" in bad.stderr


def test_labels_of_regions_the_bundle_never_predicts_are_refused(case_factory, tmp_path):
    # A WT/TC/ET bundle written in the MEN-RT scheme (GTV) would give empty maps only.
    bundle = channel_bundle(tmp_path / "b")
    with pytest.raises(ValueError, match="labels men-rt need regions GTV; this bundle's members"):
        PredictOptions(labels="men-rt").resolve(read_manifest(bundle))
    run = bratskit(
        "predict", "--input", case_factory(), "--output", tmp_path / "o", "--bundle", bundle,
        "--labels", "men-rt",
    )  # fmt: skip
    assert run.returncode == 2 and "labels men-rt need regions GTV" in run.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_predict_task_writes_that_tasks_labels(case_factory, tmp_path):
    inputs = case_factory()
    bundle = channel_bundle(tmp_path / "b")
    args = ("predict", "--input", inputs, "--bundle", bundle)
    ped = bratskit(*args, "--output", tmp_path / "ped", "--task", "ped")
    assert ped.returncode == 0, ped.stderr
    flat = bratskit(*args, "--output", tmp_path / "flat", "--labels", "2024-ped")
    assert flat.returncode == 0, flat.stderr
    (name,) = os.listdir(tmp_path / "ped")
    by_task, _ = read_label_map(tmp_path / "ped" / name)
    by_labels, _ = read_label_map(tmp_path / "flat" / name)
    assert np.array_equal(by_task, by_labels) and by_task.any()
    men_rt = bratskit(*args, "--output", tmp_path / "rt", "--task", "MEN-RT")
    assert men_rt.returncode == 2 and "labels men-rt need regions GTV" in men_rt.stderr
