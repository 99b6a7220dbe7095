"""``bratskit import monai``: a zoo-layout MONAI bundle (a small SegResNet, random
weights) imported, its manifest and parity checked, its predictions compared with MONAI's
own transforms and ``SlidingWindowInferer``; and the refusals."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from export.errors import RunError
from export.monai_cli import monai
from export.monai_config import read_monai_bundle
from export.monai_import import import_monai
from export.parity import onnx_forward
from submission.predict.bundle_files import load_bundle
from submission.predict.monai_pipeline import predict_group
from submission.predict.resample import voxel_spacing
from submission.workbench.synth import synthesize_case

pytest.importorskip("monai", reason="bratskit import monai needs the import extra")

from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.transforms import (  # noqa: E402
    Activationsd,
    Compose,
    Invertd,
    LoadImaged,
    NormalizeIntensityd,
)

from tests.export.monai_fixtures import (  # noqa: E402
    CHANNELS,
    METADATA,
    REGIONS,
    changed,
    write_monai_bundle,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:inverse has been called but no invertible:UserWarning"
)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The zoo-layout bundle, its network and the imported bratskit bundle."""
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("monai")
    source, net = write_monai_bundle(folder)
    manifest = import_monai(source, folder / "bundle")
    return source, net, folder / "bundle", manifest


def test_manifest(imported):
    _, _, bundle, manifest = imported
    assert load_bundle(bundle) == manifest
    raw = json.loads((bundle / "manifest.json").read_text())
    record = raw["pipelines"]["monai"]
    assert record == {
        "kind": "monai",
        "source": "brats_mri_segmentation 0.5.2",
        "channels": list(CHANNELS),
        "orientation": None,
        "spacing": None,
        "normalization": {"nonzero": True, "channel_wise": True},
        "roi": [32, 32, 24],
        "overlap": 0.5,
        "mode": "constant",
        "sigma_scale": 0.125,
        "sw_batch_size": 1,
        "padding_mode": "constant",
        "cval": 0.0,
        "nonlinearity": "sigmoid",
        "fold_average": "none",
    }
    (member,) = raw["members"]
    assert member["pipeline"] == "monai" and member["outputs"] == "logits"
    assert (member["key"], member["fold"], member["regions"]) == ("monai", 0, list(REGIONS))
    assert member["size_rule"]["divisors"] == [8, 8, 8] and member["patch"] == [32, 32, 24]
    assert member["architecture"]["name"] == "SegResNet"
    parity = member["files"]["onnx"]["parity"]
    assert parity["max_abs_diff"] <= parity["tolerance"] == 1e-4
    assert raw["channels"] == ["t1n", "t1c", "t2w", "t2f"] and raw["task"] == "gli-2021"


def _monai_probabilities(paths, net, roi, overlap):
    """The zoo's inference config run by MONAI itself on the case's four files."""
    pre = Compose(
        [
            LoadImaged(keys="image", image_only=False),
            NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True),
        ]
    )
    data = pre({"image": [str(p) for p in paths]})
    with torch.no_grad():
        pred = SlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=overlap)(
            data["image"][None], net
        )[0]
    post = Compose(
        [
            Activationsd(keys="pred", sigmoid=True),
            Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False),
        ]
    )
    return np.asarray(post({"image": data["image"], "pred": pred})["pred"])


def test_imported_bundle_predicts_what_monai_predicts(imported, tmp_path):
    _, net, bundle, manifest = imported
    image, _ = synthesize_case(np.random.default_rng(5), (48, 40, 32))
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    paths = []
    for name in CHANNELS:  # the bundle's channel order, from synthesize_case's t1n, t1c, ...
        channel = image[("t1n", "t1c", "t2w", "t2f").index(name)].astype(np.float32)
        paths.append(tmp_path / f"case_{name}.nii.gz")
        nib.save(nib.Nifti1Image(channel, affine), paths[-1])
    pipeline = manifest.pipelines["monai"]
    (member,) = manifest.members
    forward = onnx_forward(bundle / member.files["onnx"].path)
    stack = np.stack([np.asarray(nib.load(p).dataobj, dtype=np.float32) for p in paths])
    (got,) = predict_group(pipeline, stack, voxel_spacing(affine), affine, [forward], False)
    expected = _monai_probabilities(paths, net, pipeline.roi, pipeline.overlap)
    agree = float(((got > 0.5) == (expected > 0.5)).mean())
    print(f"imported ONNX vs MONAI: max |p diff| {np.abs(got - expected).max():.2e}, "
          f"thresholded agreement {agree:.6f}")  # fmt: skip
    assert 0.02 < (expected > 0.5).mean() < 0.98
    assert agree >= 0.999
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_cli(imported, tmp_path):
    source = imported[0]
    result = CliRunner().invoke(monai, [str(source), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "monai/fold0" in result.output
    again = CliRunner().invoke(monai, [str(source), "--out", str(tmp_path / "b")])
    assert again.exit_code == 2 and "--force" in again.output


REFUSALS = {
    "unknown transform": (
        changed(
            "preprocessing.transforms.1",
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0, "a_max": 1},
        ),
        "ScaleIntensityRanged is not supported",
    ),
    "expression for a value": (
        changed("inferer.roi_size", "$[32, 32, 24]"),
        "inferer.roi_size: '\\$\\[32, 32, 24\\]' is an expression",
    ),
    "expression through a reference": (
        changed("inferer.overlap", "@amp_overlap") | {"amp_overlap": "$0.5 if @amp else 0.25"},
        "is an expression, bratskit never evaluates one",
    ),
    "unknown network": (
        changed("network_def", {"_target_": "SwinUNETR", "in_channels": 4, "out_channels": 3}),
        "network SwinUNETR is not supported",
    ),
    "unknown inferer": (
        changed("inferer", {"_target_": "SimpleInferer"}),
        "SimpleInferer is not supported",
    ),
    "softmax": (
        changed(
            "postprocessing.transforms.0",
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        ),  # fmt: skip
        "softmax=True, .*only sigmoid \\(region\\) models",
    ),
    "normalisation before spacing": (
        changed(
            "preprocessing.transforms",
            [
                {"_target_": "LoadImaged", "keys": "image"},
                {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True},
                {"_target_": "Spacingd", "keys": "image", "pixdim": [1.0, 1.0, 1.0]},
            ],
        ),
        "Spacingd after NormalizeIntensityd",
    ),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusals(tmp_path, name):
    inference, message = REFUSALS[name]
    source, _ = write_monai_bundle(tmp_path, inference)
    with pytest.raises(RunError, match=message):
        read_monai_bundle(source)


def test_refusal_exit_code(tmp_path):
    inference, _ = REFUSALS["unknown transform"]
    source, _ = write_monai_bundle(tmp_path, inference)
    result = CliRunner().invoke(monai, [str(source), "--out", str(tmp_path / "b")])
    assert result.exit_code == 3 and "ScaleIntensityRanged" in result.output
    assert not (tmp_path / "b").exists()


def test_bad_channels_option(tmp_path):
    source, _ = write_monai_bundle(tmp_path)
    with pytest.raises(ValueError, match="--channels must be distinct modalities"):
        import_monai(source, tmp_path / "b", channels=("t1c", "t1", "t2w", "t2f"))
    with pytest.raises(RunError, match="maps 4 to 3 channels"):
        import_monai(source, tmp_path / "b", channels=("t1c", "t2w", "t2f"))


def test_channels_from_option_and_metadata(tmp_path):
    source, _ = write_monai_bundle(tmp_path, metadata=METADATA | {"network_data_format": {}})
    with pytest.raises(RunError, match="--channels"):
        read_monai_bundle(source)
    with pytest.raises(RunError, match="outputs.pred.channel_def"):
        read_monai_bundle(source, channels=("t1n", "t1c", "t2w", "t2f"))


def test_orientation_and_spacing_recorded(tmp_path):
    transforms = [
        {"_target_": "LoadImaged", "keys": ["image"]},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": ["image"], "pixdim": [1.0, 1.0, 1.5], "mode": "bilinear"},
        {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True},
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
    ]
    inference = changed("preprocessing.transforms", transforms)
    inference["inferer"] |= {"mode": "gaussian", "sigma_scale": [0.25, 0.25, 0.25]}
    source, _ = write_monai_bundle(tmp_path, inference)
    pipeline = read_monai_bundle(source).pipeline
    assert (pipeline.orientation, pipeline.spacing) == ("RAS", (1.0, 1.0, 1.5))
    assert (pipeline.mode, pipeline.sigma_scale) == ("gaussian", 0.25)


OTHER_NETWORKS = {
    "UNet": (
        {"_target_": "UNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
         "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
        [4, 4, 4],
    ),
    "DynUNet": (
        {"_target_": "monai.networks.nets.DynUNet", "spatial_dims": 3, "in_channels": 4,
         "out_channels": 3, "kernel_size": [3, 3, 3], "strides": [1, 2, [2, 2, 1]],
         "upsample_kernel_size": [2, [2, 2, 1]], "filters": [4, 8, 16]},
        [4, 4, 2],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(OTHER_NETWORKS))
def test_other_networks(tmp_path, name):
    network_def, divisors = OTHER_NETWORKS[name]
    source, _ = write_monai_bundle(tmp_path, changed("network_def", network_def))
    (member,) = import_monai(source, tmp_path / "bundle").members
    assert member.architecture["name"] == name
    assert list(member.size_rule.divisors) == divisors
    assert member.files["onnx"].parity["max_abs_diff"] <= 1e-4
