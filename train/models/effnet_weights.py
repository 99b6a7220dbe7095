"""ImageNet weights for effunet's EfficientNet-B0 encoder: check, load, convert, warn.

Paper 003 embeds an ImageNet-trained EfficientNet-B0 (section 4: "the learning transfer
from weights trained on 2D natural images can be exploited for processing 3D medical
images"). Nothing is downloaded here: the weights are a local file, in the key layout of
MONAI's :class:`~monai.networks.nets.EfficientNetBNFeatures` (``_blocks.<stage>.<i>.``).
lukemelas' EfficientNet-PyTorch file (:data:`IMAGENET_URL`, what MONAI's
``pretrained=True`` downloads) numbers the blocks ``_blocks.<i>.``;
:func:`from_lukemelas` renames them (``scripts/convert_efficientnet_b0.py`` writes the
converted file once).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CONVERTER",
    "IMAGENET_URL",
    "check_encoder_state",
    "from_lukemelas",
    "from_scratch_warning",
    "load_encoder_weights",
]

#: lukemelas' ImageNet EfficientNet-B0 (its sha256 starts with 355c32eb, torch.hub's
#: naming), the file MONAI's ``EfficientNetBN("efficientnet-b0", pretrained=True)`` fetches.
IMAGENET_URL = (
    "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/"
    "efficientnet-b0-355c32eb.pth"
)
CONVERTER = "scripts/convert_efficientnet_b0.py"
#: The classification head, which the features encoder does not have.
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
_LUKEMELAS_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_\w.*)$")
_MONAI_BLOCK = re.compile(r"^_blocks\.(\d+)\.(\d+)\.(.+)$")
_SHOWN = 5


def from_scratch_warning(params: Mapping[str, object]) -> str | None:
    """What training logs when an effunet member has no ImageNet weights, else None."""
    if params.get("weights") is not None:
        return None
    return (
        "effunet's EfficientNet-B0 encoder starts from random weights (arch_params.weights "
        "is null), but paper 003 transfers ImageNet weights, its premise: expect lower "
        f"Dice. Download {IMAGENET_URL} once, convert it with {CONVERTER} and set "
        "arch_params.weights to the converted file (README: ImageNet weights for effunet)"
    )


def _is_lukemelas(keys) -> bool:
    return any(_LUKEMELAS_BLOCK.match(k) for k in keys)


def check_encoder_state(
    own: Mapping[str, torch.Tensor], state: Mapping[str, object], source: str
) -> None:
    """Check ``state`` (head entries removed) against the encoder's state dict ``own``.

    ``num_batches_tracked`` counters may be absent (lukemelas' file may lack them).

    Raises:
        ValueError: tensors of the wrong shape, missing or unexpected keys, or values
            that are not tensors, each listed by key with the fix.
    """
    bad_type = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    wrong = [
        f"{k} {tuple(state[k].shape)} (encoder {tuple(v.shape)})"
        for k, v in own.items()
        if k in state and k not in bad_type and tuple(state[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if not (bad_type or wrong or missing or unexpected):
        return
    problems = [
        f"{what} ({len(keys)}): {', '.join(keys[:_SHOWN])}{', ...' if len(keys) > _SHOWN else ''}"
        for what, keys in (
            ("wrong shape", wrong),
            ("missing", missing),
            ("unexpected", unexpected),
            ("not a tensor", bad_type),
        )
        if keys
    ]
    if _is_lukemelas(state):
        fix = (
            f"this is lukemelas' EfficientNet-PyTorch key layout (_blocks.<i>.): convert it "
            f"once with python {CONVERTER} IN OUT and pass OUT"
        )
    else:
        fix = (
            "pass an ImageNet EfficientNet-B0 (not B1-B7, 3 input channels) state dict in "
            f"MONAI's layout: {IMAGENET_URL} converted with {CONVERTER}, or "
            "EfficientNetBNFeatures('efficientnet-b0', pretrained=True, spatial_dims=2)"
            ".state_dict() saved on a machine with network access"
        )
    raise ValueError(
        f"effunet encoder weights {source} do not match MONAI's EfficientNet-B0 with 3 "
        f"input channels: {'; '.join(problems)}. Fix: {fix}"
    )


def load_encoder_weights(encoder: nn.Module, weights: str | Path) -> None:
    """Load a local EfficientNet-B0 state dict (MONAI's key layout) into ``encoder``.

    Accepts a features-only or a full classification state dict (``_conv_head``,
    ``_bn1`` and ``_fc`` entries are ignored). Loaded with ``weights_only=True``; every
    tensor's shape is checked against the encoder first (:func:`check_encoder_state`).

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        ValueError: the file is not a state dict, or its keys or shapes do not match
            (the message names them and the fix).
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"effunet encoder weights {path} not found: pass the path of a local "
            f"EfficientNet-B0 state dict (nothing is downloaded; see {CONVERTER}) or "
            "weights=None"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(
            f"effunet encoder weights {path} hold a {type(state).__name__}, "
            f"not a state dict: save model.state_dict()"
        )
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    own = encoder.state_dict()
    check_encoder_state(own, state, str(path))
    encoder.load_state_dict({**own, **state}, strict=True)


def from_lukemelas(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """lukemelas' EfficientNet-B0 state dict renamed to the encoder's keys ``own``.

    ``_blocks.<i>.<rest>`` becomes ``_blocks.<stage>.<i>.<rest>`` (MONAI groups the same
    16 blocks, numbered globally, into 7 stages); the classification head is dropped and
    absent ``num_batches_tracked`` counters are taken from ``own``. The result passes
    :func:`check_encoder_state` or this raises its ValueError.
    """
    stage_of = {}
    for key in own:
        match = _MONAI_BLOCK.match(key)
        if match:
            stage_of[match.group(2)] = match.group(1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(HEAD_PREFIXES):
            continue
        match = _LUKEMELAS_BLOCK.match(key)
        if match and match.group(1) in stage_of:
            key = f"_blocks.{stage_of[match.group(1)]}.{match.group(1)}.{match.group(2)}"
        out[key] = value
    for key, value in own.items():
        if key.endswith("num_batches_tracked"):
            out.setdefault(key, value.clone())
    check_encoder_state(own, out, "converted from lukemelas' layout")
    return out
