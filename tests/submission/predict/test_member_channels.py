"""Members with their own input channels (paper 003's single-modality networks) in the
manifest and the engine; a manifest without them reads and predicts as before."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.special import expit

from submission.brats import MODALITIES
from submission.predict.bundle import BundleError, Manifest, read_manifest
from submission.predict.bundle_files import load_bundle
from submission.predict.engine import Engine, RuntimeOptions
from submission.predict.members import member_from_dict
from submission.predict.preprocess import preprocess_case
from tests.conftest import small_image
from tests.submission.predict.onnx_bundles import channel_bundle, pointwise_member, write_bundle

CPU_ONNX = RuntimeOptions(backend="onnx", device="cpu")
SCALE = 4.0


def modality_bundle(bundle, modalities=MODALITIES):
    """One single-channel pointwise member per modality: sigmoid(SCALE * (x - 0.1 k))
    for WT, TC and ET, k its position, so the members differ."""
    members = []
    for k, modality in enumerate(modalities):
        weights = np.full((3, 1), SCALE)
        member = pointwise_member(
            bundle, modality, 0, ("WT", "TC", "ET"), weights, np.full(3, -0.1 * k * SCALE)
        )
        members.append(replace(member, channels=(modality,)))
    return write_bundle(bundle, members)


def test_member_channels_round_trip_and_are_checked(tmp_path):
    bundle = modality_bundle(tmp_path / "b")
    raw = json.loads((bundle / "manifest.json").read_text())
    assert [m["channels"] for m in raw["members"]] == [[m] for m in MODALITIES]
    manifest = load_bundle(bundle)
    assert [m.channels for m in manifest.members] == [(m,) for m in MODALITIES]
    message = r"member t2w/fold0: channels must be distinct channels of the bundle"
    with pytest.raises(BundleError, match=message):
        Manifest(members=manifest.members, channels=("t1n", "t1c", "t2f"))
    raw["members"][0]["channels"] = "t1n"
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"members\[0\].channels: expected a list"):
        read_manifest(bundle)


def test_a_manifest_without_member_channels_loads_as_before(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    raw = json.loads((bundle / "manifest.json").read_text())
    assert all("channels" not in m for m in raw["members"])  # not written when absent
    manifest = read_manifest(bundle)
    assert all(m.channels is None for m in manifest.members)
    assert manifest.to_dict()["members"] == raw["members"]
    assert member_from_dict(raw["members"][0]).to_dict() == raw["members"][0]


def test_each_member_gets_only_its_channel_and_the_mean_averages_them(tmp_path):
    engine = Engine(modality_bundle(tmp_path / "b"), runtime=CPU_ONNX)
    image = small_image(3).astype(np.float32)
    prepared = engine.prepare(image)
    probs = engine.member_probabilities(prepared, [])
    norm, _ = preprocess_case(image, engine.preprocessing)
    expected = [expit(SCALE * (norm[k] - 0.1 * k)) for k in range(4)]
    for region in ("WT", "TC", "ET"):
        np.testing.assert_allclose(np.stack(probs[region]), np.stack(expected), atol=1e-5)
    # the t2f member ignores every other channel
    changed = replace(prepared, image_cdhw=prepared.image_cdhw.copy())
    changed.image_cdhw[:3] = np.random.default_rng(0).normal(size=changed.image_cdhw[:3].shape)
    only_t2f = engine.member_probabilities(changed, [], keep=lambda m: m.key == "t2f")
    np.testing.assert_allclose(only_t2f["WT"][0], expected[3], atol=1e-5)
    regions = engine.regions(probs)  # mean of the four members
    np.testing.assert_array_equal(regions[0], np.mean(expected, axis=0) > 0.5)
