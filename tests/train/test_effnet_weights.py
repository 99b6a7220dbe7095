"""effunet's ImageNet encoder weights: shape checks, lukemelas conversion, from-scratch warning."""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.models import build_model, from_scratch_warning
from train.models.effnet_weights import (
    CONVERTER,
    IMAGENET_URL,
    from_lukemelas,
    load_encoder_weights,
)
from train.models.effunet import build_encoder

REPO = Path(__file__).resolve().parents[2]
TINY = {"input_depth": 12, "decoder_widths": (16, 8, 8, 8, 8), "volume_channels": 4}


@pytest.fixture(scope="module")
def encoder_state() -> dict[str, torch.Tensor]:
    """A freshly built encoder's state dict, randomised so a load is visible."""
    torch.manual_seed(1)
    encoder = build_encoder()
    with torch.no_grad():
        for p in encoder.parameters():
            p.normal_()
    return {k: v.clone() for k, v in encoder.state_dict().items()}


def as_lukemelas(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MONAI's keys renamed the way lukemelas' file names them, with a classification head
    and without the BatchNorm counters (what the downloadable file looks like)."""
    out = {
        re.sub(r"^_blocks\.\d+\.(\d+)\.", r"_blocks.\1.", k): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    out["_conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    out["_bn1.weight"] = torch.ones(1280)
    out["_fc.weight"] = torch.zeros(1000, 1280)
    return out


def test_a_state_dict_of_a_fresh_encoder_loads(encoder_state, tmp_path):
    path = tmp_path / "b0.pt"
    torch.save(encoder_state, path)
    model = build_model("effunet", in_channels=1, weights=str(path), **TINY)
    for key, value in encoder_state.items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value)


def test_a_wrong_shape_names_the_keys_and_the_fix(encoder_state, tmp_path):
    bad = dict(encoder_state)
    bad["_conv_stem.weight"] = torch.zeros(32, 1, 3, 3)  # a 1-channel stem, not ImageNet's RGB
    bad["_bn0.weight"] = torch.zeros(48)  # a wider network (B1-B7)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    with pytest.raises(ValueError) as err:
        load_encoder_weights(build_encoder(), path)
    message = str(err.value)
    assert "do not match MONAI's EfficientNet-B0 with 3 input channels" in message
    assert "wrong shape (2): _conv_stem.weight (32, 1, 3, 3) (encoder (32, 3, 3, 3))" in message
    assert "_bn0.weight (48,) (encoder (32,))" in message
    assert "Fix: pass an ImageNet EfficientNet-B0 (not B1-B7, 3 input channels)" in message
    assert CONVERTER in message and IMAGENET_URL in message


def test_lukemelas_layout_is_refused_with_the_converter_named(encoder_state, tmp_path):
    path = tmp_path / "efficientnet-b0.pth"
    torch.save(as_lukemelas(encoder_state), path)
    with pytest.raises(
        ValueError, match=f"lukemelas' EfficientNet-PyTorch key layout.*{CONVERTER}"
    ):
        build_model("effunet", weights=str(path), **TINY)


def test_from_lukemelas_restores_monai_keys(encoder_state):
    own = build_encoder().state_dict()
    converted = from_lukemelas(as_lukemelas(encoder_state), own)
    assert set(converted) == set(own)
    for key, value in encoder_state.items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(converted[key], value)
    with pytest.raises(ValueError, match="missing"):
        from_lukemelas({"_conv_stem.weight": encoder_state["_conv_stem.weight"]}, own)


@pytest.mark.slow
def test_the_converter_script_writes_a_file_effunet_loads(encoder_state, tmp_path):
    source, out = tmp_path / "efficientnet-b0.pth", tmp_path / "b0-monai.pt"
    torch.save(as_lukemelas(encoder_state), source)
    script = REPO / CONVERTER
    result = subprocess.run(
        [sys.executable, str(script), str(source), str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sha256" in result.stdout and f"arch_params.weights: {out}" in result.stdout
    model = build_model("effunet", weights=str(out), **TINY)
    torch.testing.assert_close(
        model.encoder.state_dict()["_blocks.6.15._project_conv.weight"],
        encoder_state["_blocks.6.15._project_conv.weight"],
    )
    # a torch.hub-style name whose sha256 digits the file does not have: an altered download
    renamed = source.rename(tmp_path / "efficientnet-b0-355c32eb.pth")
    bad = subprocess.run(
        [sys.executable, str(script), str(renamed), str(out)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "altered download" in bad.stderr


def test_from_scratch_is_warned_only_without_weights():
    message = from_scratch_warning("effunet", {"weights": None})
    assert message is not None and "starts from random weights" in message
    assert IMAGENET_URL in message and CONVERTER in message
    assert from_scratch_warning("effunet", {"weights": "/w/b0.pt"}) is None
    assert from_scratch_warning("resunet", {}) is None


class _Stop(Exception):
    """Stands in for the first epoch: the warning must come before it."""


def test_training_from_scratch_logs_the_warning(caplog, monkeypatch, tmp_path):
    import train.trainer as trainer
    from train.distributed import Env
    from train.recipe_files import load_config

    def first_epoch(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(trainer, "run_epoch", first_epoch)
    cfg = load_config("effunet", {"epochs": 1})
    member = dataclasses.replace(
        cfg.members[0], arch_params={"in_channels": 1, **TINY}, crop=(64, 64, 12)
    )
    job = trainer.FoldJob(cfg, member, 0, [], [], tmp_path / "fold0")
    with caplog.at_level(logging.WARNING, logger="train.trainer"), pytest.raises(_Stop):
        trainer.train_fold(job, Env(device=torch.device("cpu")))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("t1n fold 0: effunet's EfficientNet-B0 encoder starts from random")
        for m in warned
    )
