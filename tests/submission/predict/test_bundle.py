"""Manifests: parsed, checked, written and read back; the ``bratskit bundle --json``
summary."""

from __future__ import annotations

import hashlib
import json

import pytest

from submission.predict.bundle import (
    BundleError,
    manifest_from_dict,
    read_manifest,
    with_recommended,
    write_manifest,
)
from submission.predict.bundle_description import summary
from submission.predict.bundle_files import copy_bundle, load_bundle
from tests.submission.predict.onnx_bundles import channel_bundle


def test_manifest_round_trips_through_its_json(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    manifest = read_manifest(bundle)
    assert manifest_from_dict(manifest.to_dict()) == manifest
    tuned = with_recommended(
        manifest, ensemble="confidence", top_k=2, threshold={"WT": 0.3, "TC": 0.5, "ET": 0.5}
    )
    write_manifest(bundle, tuned)
    assert read_manifest(bundle) == tuned and read_manifest(bundle).recommended.top_k == 2


def test_with_recommended_checks_the_new_values(tmp_path):
    manifest = read_manifest(channel_bundle(tmp_path / "b"))
    with pytest.raises(BundleError, match=r"recommended.top_k: top-k must lie in 1..3"):
        with_recommended(manifest, top_k=4)


def test_summary_is_what_bundle_json_prints(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    manifest = read_manifest(bundle)
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert summary(manifest, bundle) == {
        "bundle": str(bundle),
        "manifest_sha256": digest,
        "task": None,
        "label_scheme": "2021",
        "members": 3,
        "formats": ["onnx"],
        "bratskit_version": "",
        "recommended": {
            "ensemble": "mean",
            "top_k": None,
            "et_threshold": 0,
            "et_replace": "necrosis",
            "threshold": 0.5,
            "overlap": 0.5,
            "confidence_empty": "exclude",
        },
    }


@pytest.mark.parametrize(
    "path",
    [
        "../outside.onnx",
        "/tmp/outside.onnx",
        "seg/../../outside.onnx",
        "./seg/f.onnx",
        "seg\\f.onnx",
        "",
    ],
)
def test_file_paths_outside_the_bundle_are_refused_when_the_manifest_is_read(tmp_path, path):
    # Issue 13, failure 6: a manifest naming '../x' or an absolute path loaded a model from
    # outside the bundle; its sha256, in the same manifest, protected nothing.
    bundle = channel_bundle(tmp_path / "b")
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["members"][0]["files"]["onnx"]["path"] = path
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="must be relative to the bundle folder"):
        read_manifest(bundle)


def test_a_symlink_leaving_the_bundle_is_refused_and_copy_to_writes_nothing(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    manifest = read_manifest(bundle)
    member_file = bundle / manifest.members[0].files["onnx"].path
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes(member_file.read_bytes())  # same bytes: the sha256 still matches
    member_file.unlink()
    member_file.symlink_to(outside)
    with pytest.raises(BundleError, match="leads outside the bundle"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="leads outside the bundle"):
        copy_bundle(bundle, tmp_path / "copy", ("onnx",))
    assert not (tmp_path / "copy").exists()
