"""Model registry, forward shapes, input checks, export-relevant structure (tiny sizes)."""

from __future__ import annotations

import pytest
import torch

from train.models import (
    MODELS,
    SizeRule,
    build_model,
    count_parameters,
    depth_factors_for,
    describe,
)
from train.models.blocks import ConvBlock2d

TINY = {
    "resunet": {"base_filters": 4},
    "segresnet": {"init_filters": 4, "projection_hidden": 16, "projection_dim": 8},
    "effunet": {"input_depth": 12, "decoder_widths": (16, 8, 8, 8, 8), "volume_channels": 4},
}
TINY_INPUT = {
    "resunet": (1, 4, 16, 16, 24),
    "segresnet": (1, 4, 16, 16, 24),
    "effunet": (1, 4, 32, 32, 12),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Keep the tests light on shared CPU runners."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


@pytest.mark.parametrize("out_channels", [1, 3])
def test_resunet_forward_shape(out_channels):
    model = build_model("resunet", out_channels=out_channels, **TINY["resunet"]).eval()
    with torch.no_grad():
        out = model(_x(1, 4, 16, 16, 24))
    assert out.shape == (1, out_channels, 16, 16, 24)
    assert out.dtype == torch.float32


def test_segresnet_forward_and_projection_shapes():
    model = build_model("segresnet", **TINY["segresnet"])
    x = _x(2, 4, 32, 32, 16)
    with torch.no_grad():
        logits = model(x)
        logits2, z_npk = model.forward_with_projection(x)
    assert logits.shape == (2, 3, 32, 32, 16)
    assert z_npk.shape == (2, 2 * 2 * 1, 8)
    torch.testing.assert_close(logits, logits2)


@pytest.mark.parametrize("in_channels", [1, 4])
def test_effunet_forward_shape(in_channels):
    """One modality-specific network (the effunet recipe's members) or the joint one."""
    model = build_model("effunet", in_channels=in_channels, **TINY["effunet"]).eval()
    assert model.size_rule == SizeRule((32, 32, 1), (None, None, 12))
    with torch.no_grad():
        out = model(_x(1, in_channels, 32, 64, 12))
    assert out.shape == (1, 3, 32, 64, 12)
    assert torch.isfinite(out).all()


def test_conv_block_2d_is_residual_with_a_projection_when_channels_change():
    """003 Fig. 1: the decoder is "a succession of residual blocks with GroupNorm"."""
    block = ConvBlock2d(6, 4).eval()
    assert isinstance(block.residual, torch.nn.Conv2d) and block.residual.kernel_size == (1, 1)
    assert all(isinstance(n, torch.nn.GroupNorm) for n in (block.norm1, block.norm2))
    assert isinstance(ConvBlock2d(4, 4).residual, torch.nn.Identity)
    x = _x(2, 6, 8, 8)
    with torch.no_grad():
        torch.nn.init.zeros_(block.norm2.weight)  # the body's branch then adds 0 (bias 0)
        torch.testing.assert_close(block(x), torch.relu(block.residual(x)))


@pytest.mark.parametrize(
    ("depth", "factors"),
    [(108, (3, 3, 4)), (48, (4, 4)), (96, (2, 4, 4)), (12, (4,)), (144, (3, 4, 4))],
)
def test_depth_factors(depth, factors):
    assert depth_factors_for(depth) == factors


@pytest.mark.parametrize("depth", [3, 100, 155, 15])
def test_depth_factors_impossible(depth):
    with pytest.raises(ValueError, match=str(depth)):
        depth_factors_for(depth)


@pytest.mark.parametrize(
    ("name", "shape", "needle"),
    [
        ("resunet", (1, 4, 16, 12, 16), "divisible by 8"),
        ("segresnet", (1, 4, 16, 16, 20), "divisible by 8"),
        ("effunet", (1, 4, 32, 48, 12), "32"),
        ("effunet", (1, 4, 32, 32, 16), "exactly 12"),
        ("resunet", (1, 3, 16, 16, 16), "4 input channel"),
    ],
)
def test_bad_input_raises(name, shape, needle):
    model = build_model(name, **TINY[name])
    with pytest.raises(ValueError, match=needle):
        model(torch.zeros(shape))


def test_size_rule_messages_and_padding():
    rule = SizeRule((8, 8, 8))
    assert rule.problem((16, 24, 8)) is None
    assert "got (96, 90, 64)" in rule.problem((96, 90, 64))
    assert rule.fit((190, 190, 155)) == (192, 192, 160)
    fixed = SizeRule((32, 32, 1), (None, None, 108))
    assert fixed.fit((190, 150, 155)) == (192, 160, 108)


@pytest.mark.parametrize(
    ("name", "params", "shape_cdhw", "out"),
    [
        ("resunet", {"base_filters": 24}, (4, 192, 192, 160), (1, 1, 192, 192, 160)),
        ("resunet", {"base_filters": 64}, (4, 128, 128, 128), (1, 1, 128, 128, 128)),
        ("segresnet", {"init_filters": 32}, (4, 192, 192, 144), (1, 3, 192, 192, 144)),
        ("effunet", {"in_channels": 1}, (1, 192, 160, 108), (1, 3, 192, 160, 108)),
        ("effunet", {}, (4, 192, 160, 108), (1, 3, 192, 160, 108)),
    ],
)
def test_meta_forward_at_paper_sizes(name, params, shape_cdhw, out):
    with torch.device("meta"):
        model = build_model(name, **params)
        y = model(torch.empty(1, *shape_cdhw))
    assert y.is_meta and tuple(y.shape) == out
    text = describe(model, shape_cdhw)
    assert f"output shape:        {out}" in text


def test_describe_leaves_a_real_model_untouched():
    model = build_model("resunet", **TINY["resunet"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    text = describe(model, (4, 64, 64, 48))
    assert "(1, 1, 64, 64, 48)" in text and "ResUNet" in text
    assert all(not v.is_meta for v in model.state_dict().values())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_segresnet_paper_parameter_count():
    with torch.device("meta"):
        model = build_model("segresnet", init_filters=32)
    assert count_parameters(model) == 18_798_627  # 32 filters (Myronenko 2018; 004 gives none)
    assert count_parameters(model, exclude=()) > 18_798_627


def test_segresnet_projection_not_in_export():
    model = build_model("segresnet", **TINY["segresnet"]).eval()
    x = _x(1, 4, 16, 16, 16)
    exported = model.without_projection()
    assert exported.projection is None and model.projection is not None
    traced = torch.jit.trace(exported, x)
    assert not [k for k in traced.state_dict() if k.startswith("projection")]
    assert set(traced.state_dict()) == {
        k for k in model.state_dict() if not k.startswith("projection")
    }
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    # Tracing the full model records only forward: the graph never reads the branch.
    graph = str(torch.jit.trace(model, x).inlined_graph)
    assert "projection" not in graph


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trace_matches_eager(name):
    model = build_model(name, **TINY[name]).eval()
    x = _x(*TINY_INPUT[name])
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "first_conv"),
    [
        ("resunet", "stem.conv1"),
        ("segresnet", "convInit.conv"),
        ("effunet", "inter_blocks.0.conv1"),
    ],
)
def test_gradients_flow(name, first_conv):
    params = dict(TINY[name])
    if name != "effunet":
        params["checkpoint"] = True
    model = build_model(name, **params).train()
    # EfficientNet's BatchNorm needs more than one value per channel when training.
    x = _x(1, 4, 64, 32, 12) if name == "effunet" else _x(*TINY_INPUT[name])
    model(x).mean().backward()
    grad = model.get_submodule(first_conv).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_effunet_loads_local_weights(tmp_path):
    source = build_model("effunet", **TINY["effunet"])
    path = tmp_path / "effnet_b0.pt"
    torch.save(source.encoder.state_dict(), path)
    model = build_model("effunet", weights=str(path), **TINY["effunet"])
    for k, v in source.encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[k], v)


def test_effunet_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_model("effunet", weights=str(tmp_path / "missing.pt"), **TINY["effunet"])
    bad = tmp_path / "bad.pt"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="do not match"):
        build_model("effunet", weights=str(bad), **TINY["effunet"])


def test_unknown_model_and_params():
    with pytest.raises(ValueError, match="effunet, resunet, segresnet"):
        build_model("unet9000")
    with pytest.raises(TypeError, match="base_filterz"):
        build_model("resunet", base_filterz=8)
