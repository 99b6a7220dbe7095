"""Residual 3-D U-Net with GroupNorm (paper 002, sections 2.2-2.3).

A U-Net whose every convolution block is a residual block (:class:`ResidualBlock3d`
with GroupNorm before each convolution), a max-pool encoder ("encoding residual
blocks"), a transposed-convolution decoder with concatenated skips ("decoding residual
blocks") and a 1x1x1 head. The paper trains one single-region model per region with 24
base filters on 192x192x160 crops and 64 filters on 128^3 crops around the predicted
whole tumour (localisation, section 2.3).
"""

from __future__ import annotations

import torch
from torch import nn

from train.models.blocks import (
    ResidualBlock3d,
    SizeChecked,
    SizeRule,
    eager_checks_enabled,
    maybe_checkpoint,
)

__all__ = ["ResUNet"]


class _DecodingBlock(nn.Module):
    """ConvTranspose3d x2 upsampling, concatenation of the skip, residual block (DRB)."""

    def __init__(self, in_channels: int, out_channels: int, activation: str = "relu") -> None:
        super().__init__()
        # kernel 3, stride 2, padding 1, output_padding 1 exactly doubles each size.
        self.up = nn.ConvTranspose3d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1
        )
        self.block = ResidualBlock3d(2 * out_channels, out_channels, activation=activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class ResUNet(SizeChecked, nn.Module):
    """Residual 3-D U-Net (paper 002, section 2.2).

    Args:
        in_channels: input modalities (4: t1n, t1c, t2w, t2f).
        out_channels: regions predicted (1 for the paper's one-model-per-region setup,
            3 for WT, TC, ET together).
        base_filters: filters of the first level, doubled at each level (24 in the paper's
            first stage, 64 in the localisation stage, section 2.3).
        levels: resolution levels; ``levels - 1`` max-poolings, so every spatial size must
            be divisible by ``2 ** (levels - 1)`` (8 for the paper's 4 levels).
        activation: ``relu`` (the paper) or ``leaky_relu`` (narrow networks; see
            :data:`train.models.blocks.ACTIVATIONS`).
        checkpoint: recompute block activations in backward while training, to fit larger
            crops in memory. No effect in eval mode or on the outputs.

    ``forward`` returns logits (N, out_channels, D, H, W); the caller applies the sigmoid
    (loss or export wrapper).
    """

    name = "resunet"

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 1,
        base_filters: int = 24,
        levels: int = 4,
        checkpoint: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"resunet needs levels >= 2, got {levels}")
        if in_channels < 1 or out_channels < 1 or base_filters < 1:
            raise ValueError(
                f"resunet needs positive channel counts, got in_channels={in_channels}, "
                f"out_channels={out_channels}, base_filters={base_filters}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.checkpoint = checkpoint
        widths = [base_filters * 2**i for i in range(levels)]
        self.stem = ResidualBlock3d(in_channels, widths[0], activation=activation)
        self.pool = nn.MaxPool3d(2)
        self.encoders = nn.ModuleList(
            ResidualBlock3d(widths[i - 1], widths[i], activation=activation)
            for i in range(1, levels)
        )
        self.decoders = nn.ModuleList(
            _DecodingBlock(widths[i], widths[i - 1], activation) for i in range(levels - 1, 0, -1)
        )
        self.head = nn.Conv3d(widths[0], out_channels, 1)
        d = 2 ** (levels - 1)
        self._size_rule = SizeRule(divisors=(d, d, d))

    def forward(self, x_ncdhw: torch.Tensor) -> torch.Tensor:
        """Map (N, C, D, H, W) float32 images to (N, out_channels, D, H, W) logits."""
        if eager_checks_enabled():
            self.check_input(x_ncdhw.shape)
        ckpt = self.checkpoint and self.training
        x = maybe_checkpoint(self.stem, ckpt, x_ncdhw)
        skips = [x]
        for encoder in self.encoders:
            x = maybe_checkpoint(encoder, ckpt, self.pool(x))
            skips.append(x)
        skips.pop()
        for decoder in self.decoders:
            x = maybe_checkpoint(decoder, ckpt, x, skips.pop())
        return self.head(x)
