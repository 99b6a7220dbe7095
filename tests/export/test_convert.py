"""Eager vs ONNX vs TorchScript parity of the three model families, on realistic inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export.convert import ExportSettings, export_files, inference_model
from export.errors import ExportError
from export.parity import TOLERANCES, eager_forward, parity_inputs, parity_shapes
from submission.predict.preprocess import Preprocessing
from submission.predict.sliding_window import SizeRule
from train.models import build_model

PREPROCESSING = Preprocessing(crop="brain", margin=4, divisor=8)
FAMILIES = {
    # ConvTranspose3d decoder, GroupNorm residual blocks (paper 002).
    "resunet": ({"base_filters": 4, "levels": 3, "out_channels": 3}, (24, 32, 16)),
    # MONAI SegResNet: InstanceNorm, 1x1x1 conv + trilinear x2 upsampling (paper 004).
    "segresnet": ({"init_filters": 4, "out_channels": 3}, (24, 16, 32)),
    # 2-D EfficientNet-B0 encoder between 3-D blocks, a fixed depth of 12 slices (paper 003).
    "effunet": (
        {
            "input_depth": 12,
            "out_channels": 3,
            "decoder_widths": [16, 16, 8, 8, 8],
            "volume_channels": 4,
        },
        (64, 32, 12),
    ),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name)``: (net, model, inputs, files, folder) of a random-weight model of
    the family, exported once per module to ONNX and TorchScript."""
    cache = {}

    def get(name: str):
        if name not in cache:
            params, patch = FAMILIES[name]
            torch.manual_seed(0)
            net = build_model(name, **params)
            model = inference_model(net)
            inputs = parity_inputs(net.size_rule, PREPROCESSING, patch)
            folder = tmp_path_factory.mktemp(name)
            files = export_files(model, net.size_rule, inputs, folder, "fold0", name)
            cache[name] = (net, model, inputs, files, folder)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_exported_files_match_the_eager_model_on_other_shapes(name, exported):
    net, model, _, files, folder = exported(name)
    rule = net.size_rule
    assert set(files) == {"onnx", "torchscript"}
    for model_file in files.values():
        parity = model_file.parity
        assert 0 <= parity["max_abs_diff"] <= TOLERANCES["fp32"] == parity["tolerance"]
        checked, traced = parity["input_shape"], parity["export_shape"]
        assert checked[:2] == [2, 4] and traced[:2] == [1, 4]
        for axis, fixed in enumerate(rule.fixed):
            same = checked[2 + axis] == traced[2 + axis]
            assert same if fixed is not None else not same
    # A third spatial shape (and batch 3), straight through onnxruntime.
    third = tuple(f or 2 * d for f, d in zip(rule.fixed, rule.divisors))
    x = np.random.default_rng(1).standard_normal((3, 4, *third), dtype=np.float32)
    session = ort.InferenceSession(str(folder / files["onnx"].path))
    probs = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(probs, eager_forward(model)(x), atol=TOLERANCES["fp32"])
    assert probs.shape == (3, 3, *third) and probs.min() >= 0 and probs.max() <= 1
    ops = {n.op_type for n in onnx.load(str(folder / files["onnx"].path)).graph.node}
    assert "InstanceNormalization" not in ops  # export.norms: exact norms in the fp32 graph
    scripted = torch.jit.load(str(folder / files["torchscript"].path))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(torch.from_numpy(x)).numpy(), probs, atol=1e-4)


def test_parity_input_is_a_preprocessed_brain_centred_on_the_tumour():
    inputs = parity_inputs(SizeRule((8, 8, 8)), PREPROCESSING, (32, 32, 24))
    check = inputs.check_ncdhw
    assert check.dtype == np.float32 and check.shape == (2, 4, 32, 32, 24)
    np.testing.assert_array_equal(check[1], np.flip(check[0], (1, 2, 3)))
    brain = (check[0] != 0).all(axis=0)
    assert 0.2 < brain.mean() < 1  # brain and zero background, as the container sees it
    assert abs(float(check[0][:, brain].mean())) < 0.5  # z-scored over the brain


def test_parity_shapes_differ_on_free_axes_and_keep_fixed_ones():
    trace, check = parity_shapes(SizeRule((8, 32, 1), (None, None, 12)), (16, 64, 12))
    assert check == (16, 64, 12)
    assert trace == (24, 96, 12)
    trace, check = parity_shapes(SizeRule((8, 8, 8)), (40, 32, 24))
    assert (trace, check) == ((32, 24, 16), (40, 32, 24))


def test_effunet_onnx_keeps_its_depth_fixed_and_the_rest_dynamic(exported):
    _, _, _, files, tmp_path = exported("effunet")
    graph = onnx.load(str(tmp_path / files["onnx"].path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True, False]
    assert dims[1].dim_value == 4 and dims[4].dim_value == 12
    session = ort.InferenceSession(str(tmp_path / files["onnx"].path))
    with pytest.raises(Exception, match="(?i)dimension"):
        session.run(None, {"image": np.zeros((1, 4, 64, 64, 24), np.float32)})


def test_segresnet_is_exported_without_its_projection_branch(exported):
    net, model, _, files, tmp_path = exported("segresnet")
    assert net.projection is not None and model.net.projection is None
    upsamplers = [m for m in model.modules() if isinstance(m, nn.Upsample)]
    assert upsamplers and all(m.mode == "trilinear" for m in upsamplers)
    names = [t.name for t in onnx.load(str(tmp_path / files["onnx"].path)).graph.initializer]
    assert names and not any("projection" in n for n in names)
    scripted = torch.jit.load(str(tmp_path / files["torchscript"].path))
    assert not any("projection" in k for k in scripted.state_dict())


class _SizeBakedNet(nn.Module):
    """Logits scaled by the input depth read as a Python number: a trace freezes it."""

    size_rule = SizeRule((8, 8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] * (float(x.shape[2]) / 8.0)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_graph_that_froze_the_traced_size_fails_export(fmt, tmp_path):
    model = inference_model(_SizeBakedNet())
    inputs = parity_inputs(_SizeBakedNet.size_rule, PREPROCESSING, (16, 16, 16))
    with pytest.raises(ExportError, match=rf"baked/fold0 {fmt}: .* exceeds the tolerance 0.0001"):
        export_files(
            model,
            _SizeBakedNet.size_rule,
            inputs,
            tmp_path,
            "x",
            "baked/fold0",
            ExportSettings((fmt,)),
        )
