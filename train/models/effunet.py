"""Asymmetric U-Net with a 2-D EfficientNet-B0 encoder (paper 003, sections 2.1-2.3).

Data flow for an input (N, C, D, H, W) whose last axis W is the axial slice axis
(``input_depth`` slices, 108 in the paper's 192x160x108 crops):

1. Inter-slice 3-D encoder. Section 2.2: "convolutional blocks which consists of two
   convolutional layers with normalization and ReLU, followed by skip connection", with
   GroupNorm; "the depth is reduced by factors 3, 3 and 4 to reach a final depth size of
   3" (Table 1) while "the width and height ... are not modified". Section 4 says how:
   "a succession of blocks of 3D convolutions and max-pooling reducing the third
   dimension only". Here: residual blocks (conv, GN, ReLU, conv, GN, + residual, ReLU),
   each followed by a max-pool over the slice axis by f_i (3, 3, 4 for 108 slices); a
   1x1x1 convolution then reduces the channels to 1 (Table 1's "block n+1":
   W x H x 3 x 1): (N, 1, D, H, 3), read as a 3-channel 2-D image (N, 3, D, H).
2. Section 2.2: "the EfficientNet network without its fully connected layers":
   EfficientNet-B0 features at strides 2, 4, 8, 16, 32 (16, 24, 40, 112, 320 channels).
3. 2-D decoder. Section 2.3: "Each decoder level begins by upsampling the spatial
   dimension ... followed by skip connections", and "the decoder is composed entirely
   of homogeneous blocks as shown in Fig. 1", whose caption says "the decoder consist[s]
   of a succession of residual blocks with GroupNorm normalization". Here: per
   EfficientNet reduction, ConvTranspose2d x2, concat the skip (the last level uses the
   3-channel image), a residual block (:class:`~train.models.blocks.ConvBlock2d`); a
   1x1 conv then makes ``3 * volume_channels`` channels, unfolded into
   (N, volume_channels, D, H, 3).
4. 3-D decoder (section 2.3: "the inter-slice decoding is a 3D decoder"): per
   inter-slice level, ConvTranspose3d over the slice axis by f_i, concat that level's
   encoder output, residual block; a 1x1x1 conv gives the logits (section 2.3: three
   sigmoid outputs "with the same spatial size as inputs"; the caller applies the
   sigmoid).

The encoder is MONAI's :class:`~monai.networks.nets.EfficientNetBNFeatures`, not timm's:
timm needs torchvision, whose PyPI wheels are CUDA builds that cannot load next to the
CPU torch build, while MONAI's EfficientNet-B0 is the same network (a port of
lukemelas' EfficientNet-PyTorch) with no torchvision dependency. It is always built with
``pretrained=False`` so nothing is ever downloaded; ImageNet weights are loaded from a
local file (``weights``, below). Its swish is the plain ``x * sigmoid(x)`` (not MONAI's
memory-efficient autograd Function) so the model traces and exports.

The model accepts in-plane sizes divisible by 32 (EfficientNet's total stride) and
exactly ``input_depth`` slices. EfficientNet keeps its BatchNorm (what ImageNet weights
expect), so training with batch size 1 needs more than one cell at stride 32 (an
in-plane size of at least 64 on one axis).

One network per modality. Section 3: "We process the four modalities separately and
average the sigmoid outputs"; section 4: "trained separately the fourth modalities using
four modality-specific networks". The ``effunet`` recipe therefore has four members,
each a single-channel network (``channels: [t1n]`` ...) trained with its own loss, and
the bundle's mean fold ensemble averages their sigmoid outputs (and the folds'). The
joint 4-channel network is the ``effunet-joint`` recipe (section 4: "stacking the 4
modalities together" is what the authors expect to improve the results).

ImageNet weights (``weights``). Transfer from an ImageNet-trained EfficientNet is the
paper's premise (abstract; section 4: "the learning transfer from weights trained on 2D
natural images can be exploited"). Once, on a machine with network access, download
lukemelas' EfficientNet-PyTorch B0 weights, the file MONAI's own ``pretrained=True``
fetches (:data:`IMAGENET_URL`), and convert them to this encoder's key names::

    curl -LO https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b0-355c32eb.pth
    python scripts/convert_efficientnet_b0.py efficientnet-b0-355c32eb.pth effnet-b0-imagenet.pt

(lukemelas numbers the blocks ``_blocks.<i>.``, MONAI ``_blocks.<stage>.<i>.``; the script
renames them, drops the classification head, checks every shape and reports the file's
sha256, whose first digits torch.hub's naming puts in the file name). Then set
``arch_params: {weights: /abs/path/effnet-b0-imagenet.pt}`` on each member. A file whose
keys or shapes do not fit raises a ValueError naming them and the fix. Without weights
the encoder starts from random values, which training logs as a warning
(:func:`from_scratch_warning`) and ``bratskit train --describe`` shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.networks.nets import EfficientNetBNFeatures
from torch import nn

from train.models.blocks import (
    ConvBlock2d,
    InterSliceBlock3d,
    SizeChecked,
    SizeRule,
    eager_checks_enabled,
)
from train.models.effnet_weights import (
    IMAGENET_URL,
    from_scratch_warning,
    load_encoder_weights,
)

__all__ = [
    "IMAGENET_URL",
    "EffUNet",
    "build_effunet",
    "build_encoder",
    "depth_factors_for",
    "from_scratch_warning",
]

PAPER_DEPTH = 108
ENCODER_SLICES = 3  # EfficientNet's RGB input channels


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


def build_encoder() -> EfficientNetBNFeatures:
    """EfficientNet-B0 feature extractor, random init, no classification head: the
    encoder whose state dict ``weights`` files must match."""
    encoder = EfficientNetBNFeatures(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=ENCODER_SLICES
    )
    encoder.set_swish(memory_efficient=False)
    # The features forward never uses the head; dropping it keeps ~1.7 M dead
    # parameters out of the optimiser and the exported files.
    for name in ("_conv_head", "_bn1", "_fc"):
        setattr(encoder, name, nn.Identity())
    return encoder


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
        weights: optional local ImageNet EfficientNet-B0 state-dict file for the encoder,
            in MONAI's key layout (see the module docstring); None trains from scratch.

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
        self.encoder = build_encoder()
        if weights is not None:
            load_encoder_weights(self.encoder, weights)
        self._build_decoder_2d(tuple(decoder_widths), volume_channels)
        self._build_decoder_3d(enc, factors, volume_channels, out_channels)

    def _build_inter_slice(
        self, in_channels: int, widths: tuple[int, ...], factors: tuple[int, ...]
    ) -> None:
        chans = (in_channels, *widths)
        self.inter_blocks = nn.ModuleList(
            InterSliceBlock3d(chans[i], chans[i + 1]) for i in range(len(widths))
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
            blocks.append(InterSliceBlock3d(prev + width, width))
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


def build_effunet(
    in_channels: int = 4,
    out_channels: int = 3,
    input_depth: int | None = None,
    depth_factors: Sequence[int] | None = None,
    encoder_widths: Sequence[int] | None = None,
    decoder_widths: Sequence[int] = (256, 128, 64, 32, 16),
    volume_channels: int = 16,
    weights: str | Path | None = None,
) -> EffUNet:
    """Build the paper-003 network (the one place of its defaults; arguments are
    :class:`EffUNet`'s).

    ``in_channels=1`` is one of the paper's four modality-specific networks (section 3),
    each a member of the ``effunet`` recipe; 4 is the ``effunet-joint`` recipe's network.
    """
    return EffUNet(
        in_channels=in_channels,
        out_channels=out_channels,
        input_depth=input_depth,
        depth_factors=depth_factors,
        encoder_widths=encoder_widths,
        decoder_widths=decoder_widths,
        volume_channels=volume_channels,
        weights=weights,
    )
