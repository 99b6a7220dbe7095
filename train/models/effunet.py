"""Asymmetric U-Net with a 2-D EfficientNet-B0 encoder (paper 003, sections 2.1-2.3).

Data flow for an input (N, C, D, H, W) whose last axis W is the axial slice axis
(``input_depth`` slices, 108 in the paper's 192x160x108 crops):

1. Inter-slice 3-D encoder (section 2.2, Table 1): residual blocks (conv, GN, ReLU,
   conv, GN, + residual, ReLU), each followed by a max-pool over the slice axis only by
   a factor f_i (3, 3, 4 for 108 slices), until 3 slices remain; a 1x1x1 convolution
   then reduces the channels to 1: (N, 1, D, H, 3), read as a 3-channel 2-D image
   (N, 3, D, H).
2. EfficientNet-B0 without its classification head: features at strides 2, 4, 8, 16,
   32 (16, 24, 40, 112, 320 channels).
3. 2-D decoder (section 2.3): per EfficientNet reduction, ConvTranspose2d x2, concat the
   skip (the last level uses the 3-channel image), (conv, GN, ReLU) x2; a 1x1 conv then
   makes ``3 * volume_channels`` channels, unfolded into (N, volume_channels, D, H, 3).
4. 3-D decoder: per inter-slice level, ConvTranspose3d over the slice axis by f_i,
   concat that level's encoder output, residual block; a 1x1x1 conv gives the logits.

The encoder is MONAI's :class:`~monai.networks.nets.EfficientNetBNFeatures`, not timm's:
timm needs torchvision, whose PyPI wheels are CUDA builds that cannot load next to the
CPU torch build, while MONAI's EfficientNet-B0 is the same network (a port of
lukemelas' EfficientNet-PyTorch) with no torchvision dependency. It is always built with
``pretrained=False`` so nothing is ever downloaded; ImageNet weights can be loaded from
a local state-dict file (``weights``). Its swish is the plain ``x * sigmoid(x)`` (not
MONAI's memory-efficient autograd Function) so the model traces and exports.

The model accepts in-plane sizes divisible by 32 (EfficientNet's total stride) and
exactly ``input_depth`` slices. EfficientNet keeps its BatchNorm (what ImageNet weights
expect), so training with batch size 1 needs more than one cell at stride 32 (an
in-plane size of at least 64 on one axis). The paper processes each modality with its own
single-channel network and averages the sigmoid outputs (section 3):
``per_modality=True`` builds :class:`PerModalityEffUNet`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.networks.nets import EfficientNetBNFeatures
from torch import nn

from train.models.blocks import (
    ConvBlock2d,
    ResidualBlock3d,
    SizeChecked,
    SizeRule,
    eager_checks_enabled,
)

__all__ = ["EffUNet", "PerModalityEffUNet", "build_effunet", "depth_factors_for"]

PAPER_DEPTH = 108
ENCODER_SLICES = 3  # EfficientNet's RGB input channels
_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
_PROB_EPS = 1e-6


def depth_factors_for(input_depth: int) -> tuple[int, ...]:
    """Slice-axis reduction factors from {2, 3, 4} whose product is ``input_depth / 3``.

    The fewest factors, in ascending order as the paper's (3, 3, 4) for 108 slices:
    48 -> (4, 4), 96 -> (2, 4, 4), 12 -> (4,).

    Raises:
        ValueError: ``input_depth`` is not 3 times a product of 2s and 3s (above 1).
    """
    n, rem = divmod(int(input_depth), ENCODER_SLICES)
    threes = twos = 0
    while n > 1 and n % 3 == 0:
        n, threes = n // 3, threes + 1
    while n > 1 and n % 2 == 0:
        n, twos = n // 2, twos + 1
    if rem or n != 1 or threes + twos == 0:
        raise ValueError(
            f"effunet cannot reduce {input_depth} slices to 3 with factors 2, 3 and 4: "
            f"crop or pad the slice axis to 3 times a product of 2s and 3s (e.g. 96, 108, "
            f"144) or pass depth_factors"
        )
    fours, two = divmod(twos, 2)
    return tuple(sorted([2] * two + [3] * threes + [4] * fours))


def _resolve_depth(
    input_depth: int | None, depth_factors: Sequence[int] | None
) -> tuple[int, tuple[int, ...]]:
    if depth_factors is None:
        depth = PAPER_DEPTH if input_depth is None else int(input_depth)
        return depth, depth_factors_for(depth)
    factors = tuple(int(f) for f in depth_factors)
    if not factors or min(factors) < 2:
        raise ValueError(f"effunet depth_factors must be integers >= 2, got {depth_factors}")
    depth = ENCODER_SLICES * math.prod(factors)
    if input_depth is not None and int(input_depth) != depth:
        raise ValueError(
            f"effunet depth_factors {factors} reduce {depth} slices to 3, not input_depth="
            f"{input_depth}: pass matching values or only one of them"
        )
    return depth, factors


def _build_encoder() -> EfficientNetBNFeatures:
    """EfficientNet-B0 feature extractor, random init, no classification head."""
    encoder = EfficientNetBNFeatures(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=ENCODER_SLICES
    )
    encoder.set_swish(memory_efficient=False)
    # The features forward never uses the head; dropping it keeps ~1.7 M dead
    # parameters out of the optimiser and the exported files.
    for name in ("_conv_head", "_bn1", "_fc"):
        setattr(encoder, name, nn.Identity())
    return encoder


def load_encoder_weights(encoder: nn.Module, weights: str | Path) -> None:
    """Load a local EfficientNet-B0 state dict into ``encoder``.

    Accepts a features-only or a full classification state dict (``_conv_head``,
    ``_bn1`` and ``_fc`` entries are ignored). Loaded with ``weights_only=True``.

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        ValueError: the file is not a state dict or its keys/shapes do not match.
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"effunet encoder weights {path} not found: pass the path of a local "
            f"EfficientNet-B0 state dict (nothing is downloaded) or weights=None"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(
            f"effunet encoder weights {path} hold a {type(state).__name__}, "
            f"not a state dict: save model.state_dict()"
        )
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"effunet encoder weights {path} do not match MONAI's EfficientNet-B0 with "
            f"3 input channels: {err}"
        ) from err


class EffUNet(SizeChecked, nn.Module):
    """Asymmetric 3-D/2-D U-Net with an EfficientNet-B0 encoder (paper 003).

    Built by :func:`build_effunet`, whose signature holds the defaults.

    Args:
        in_channels: input channels (4 for all modalities at once, 1 per modality).
        out_channels: regions predicted (3: WT, TC, ET).
        input_depth: slices on the last axis; None: 108 (or 3 * prod(depth_factors)).
        depth_factors: slice-axis reductions; None derives them from ``input_depth``
            with :func:`depth_factors_for`.
        encoder_widths: channels of the inter-slice blocks, one per factor; None: 16,
            32, 64, ... The 3-D decoder mirrors them.
        decoder_widths: channels of the five 2-D decoder levels, deepest first.
        volume_channels: channels per slice when the 2-D decoder output is unfolded
            back into 3 slices.
        weights: optional local EfficientNet-B0 state-dict file for the encoder.

    ``forward`` returns logits (N, out_channels, D, H, W); the caller applies the sigmoid.
    """

    name = "effunet"

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        input_depth: int | None,
        depth_factors: Sequence[int] | None,
        encoder_widths: Sequence[int] | None,
        decoder_widths: Sequence[int],
        volume_channels: int,
        weights: str | Path | None,
    ) -> None:
        super().__init__()
        depth, factors = _resolve_depth(input_depth, depth_factors)
        enc = tuple(encoder_widths or (16 * 2**i for i in range(len(factors))))
        if len(enc) != len(factors):
            raise ValueError(
                f"effunet needs one encoder width per depth factor {factors}, got {enc}"
            )
        if len(decoder_widths) != 5:
            raise ValueError(
                f"effunet needs 5 decoder_widths (one per EfficientNet reduction), "
                f"got {tuple(decoder_widths)}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.depth_factors, self.volume_channels = factors, volume_channels
        self._size_rule = SizeRule(divisors=(32, 32, 1), fixed=(None, None, depth))
        self._build_inter_slice(in_channels, enc, factors)
        self.encoder = _build_encoder()
        if weights is not None:
            load_encoder_weights(self.encoder, weights)
        self._build_decoder_2d(tuple(decoder_widths), volume_channels)
        self._build_decoder_3d(enc, factors, volume_channels, out_channels)

    def _build_inter_slice(
        self, in_channels: int, widths: tuple[int, ...], factors: tuple[int, ...]
    ) -> None:
        chans = (in_channels, *widths)
        self.inter_blocks = nn.ModuleList(
            ResidualBlock3d(chans[i], chans[i + 1], norm_first=False) for i in range(len(widths))
        )
        self.inter_pools = nn.ModuleList(nn.MaxPool3d((1, 1, f)) for f in factors)
        self.to_slices = nn.Conv3d(widths[-1], 1, 1)

    def _build_decoder_2d(self, widths: tuple[int, ...], volume_channels: int) -> None:
        stacks = self.encoder.extract_stacks
        feats = [self.encoder._blocks_args[i - 1].output_filters for i in stacks]
        skips = [*feats[-2::-1], ENCODER_SLICES]  # deepest first, the image last
        prev = feats[-1]
        ups, blocks = [], []
        for width, skip in zip(widths, skips):
            ups.append(nn.ConvTranspose2d(prev, width, 2, stride=2))
            blocks.append(ConvBlock2d(width + skip, width))
            prev = width
        self.up2d = nn.ModuleList(ups)
        self.dec2d = nn.ModuleList(blocks)
        self.to_volume = nn.Conv2d(prev, ENCODER_SLICES * volume_channels, 1)

    def _build_decoder_3d(
        self, widths: tuple[int, ...], factors: tuple[int, ...], prev: int, out_channels: int
    ) -> None:
        ups, blocks = [], []
        for width, f in zip(widths[::-1], factors[::-1]):
            ups.append(nn.ConvTranspose3d(prev, prev, (1, 1, f), stride=(1, 1, f)))
            blocks.append(ResidualBlock3d(prev + width, width, norm_first=False))
            prev = width
        self.up3d = nn.ModuleList(ups)
        self.dec3d = nn.ModuleList(blocks)
        self.head = nn.Conv3d(prev, out_channels, 1)

    def forward(self, x_ncdhw: torch.Tensor) -> torch.Tensor:
        """Map (N, C, D, H, W) float32 images to (N, out_channels, D, H, W) logits."""
        if eager_checks_enabled():
            self.check_input(x_ncdhw.shape)
        x, skips3d = x_ncdhw, []
        for block, pool in zip(self.inter_blocks, self.inter_pools):
            x = block(x)
            skips3d.append(x)
            x = pool(x)
        image_n3dh = self.to_slices(x).squeeze(1).permute(0, 3, 1, 2)
        feats = self.encoder(image_n3dh)
        y = feats[-1]
        skips2d = [*feats[-2::-1], image_n3dh]
        for up, block, skip in zip(self.up2d, self.dec2d, skips2d):
            y = block(torch.cat([up(y), skip], dim=1))
        y = self.to_volume(y)
        n, _, d, h = y.shape
        v = y.reshape(n, self.volume_channels, ENCODER_SLICES, d, h).permute(0, 1, 3, 4, 2)
        for up, block, skip in zip(self.up3d, self.dec3d, skips3d[::-1]):
            v = block(torch.cat([up(v), skip], dim=1))
        return self.head(v)


class PerModalityEffUNet(SizeChecked, nn.Module):
    """One single-channel :class:`EffUNet` per input channel, sigmoid outputs averaged.

    Paper 003, section 3: "We process the four modalities separately and average the
    sigmoid outputs." ``forward`` returns ``logit(clamp(mean_prob, 1e-6, 1 - 1e-6))``
    (computed as ``log(p) - log1p(-p)``, which exports to ONNX) so that, like every
    bratskit model, it outputs logits for the caller's sigmoid; sigmoid(output) is the
    averaged probability up to the clamp.

    Args:
        in_channels: modalities, one member network each.
        **params: :class:`EffUNet` arguments other than ``in_channels``.
    """

    name = "effunet"

    def __init__(self, in_channels: int, **params) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.members = nn.ModuleList(EffUNet(in_channels=1, **params) for _ in range(in_channels))
        self.out_channels = self.members[0].out_channels
        self._size_rule = self.members[0].size_rule

    def forward(self, x_ncdhw: torch.Tensor) -> torch.Tensor:
        """Map (N, C, D, H, W) float32 images to (N, out_channels, D, H, W) logits."""
        if eager_checks_enabled():
            self.check_input(x_ncdhw.shape)
        probs = [
            torch.sigmoid(member(x_ncdhw[:, i : i + 1])) for i, member in enumerate(self.members)
        ]
        p = torch.stack(probs).mean(0).clamp(_PROB_EPS, 1.0 - _PROB_EPS)
        return torch.log(p) - torch.log1p(-p)


def build_effunet(
    in_channels: int = 4,
    out_channels: int = 3,
    per_modality: bool = False,
    input_depth: int | None = None,
    depth_factors: Sequence[int] | None = None,
    encoder_widths: Sequence[int] | None = None,
    decoder_widths: Sequence[int] = (256, 128, 64, 32, 16),
    volume_channels: int = 16,
    weights: str | Path | None = None,
) -> EffUNet | PerModalityEffUNet:
    """Build the paper-003 network: one 4-channel net, or one net per modality.

    The one place of the network's defaults. ``per_modality=True`` is the paper's setup
    (section 3); the other arguments are :class:`EffUNet`'s (``weights`` is loaded into
    every member's encoder).
    """
    params = {
        "out_channels": out_channels,
        "input_depth": input_depth,
        "depth_factors": depth_factors,
        "encoder_widths": encoder_widths,
        "decoder_widths": decoder_widths,
        "volume_channels": volume_channels,
        "weights": weights,
    }
    model = PerModalityEffUNet if per_modality else EffUNet
    return model(in_channels=in_channels, **params)
