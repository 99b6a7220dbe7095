"""SegResNet with a Barlow-Twins projection branch (paper 004, section 3, Table 1, 3.1).

The backbone is MONAI's :class:`monai.networks.nets.SegResNet`, which the paper used:
ResNet blocks (IN, ReLU, Conv, IN, ReLU, Conv, AddId) with 1-2-2-4 blocks down and
1-1-1 up, strided-convolution downsizing, upsizing plus additive encoder skips, and a
final IN, ReLU, 1x1x1 Conv into 3 channels. Normalisation is InstanceNorm with a
learnable affine (MONAI ``("INSTANCE", {"affine": True})``; plain ``"instance"`` would
have no affine), which gives 18,798,627 parameters with 32 initial filters, 4 inputs
and 3 outputs. Paper 004 gives no filter count (Table 1 lists the blocks, not their
widths); 32 is the initial width of Myronenko's SegResNet (2018, 004's reference 13), the
network MONAI's class implements.

Section 3.1 attaches a projection branch "one level before the final normalization":
here the output of the last decoder block, before MONAI's ``conv_final``. The branch
average-pools by 16, reshapes the pooled cells into rows and runs a 3-layer MLP; its
outputs feed the Barlow-Twins redundancy loss. The branch is discarded at inference:
:meth:`SegResNet.forward` never touches it, so ONNX export and the graph that
``torch.jit.trace`` records compute logits only; a traced module still carries the
unused ``projection.*`` parameters in its state dict, so export
:meth:`SegResNet.without_projection` (a copy without them) or build with
``projection=False`` and load the checkpoint minus its ``projection.*`` entries.
"""

from __future__ import annotations

import copy

import torch
from monai.networks.nets import SegResNet as MonaiSegResNet
from torch import nn

from train.models.blocks import (
    SizeChecked,
    SizeRule,
    eager_checks_enabled,
    maybe_checkpoint,
)

__all__ = ["ProjectionHead", "SegResNet"]

PROJECTION_POOL = 16


class ProjectionHead(nn.Module):
    """Barlow-Twins projection branch of paper 004, section 3.1.

    AvgPool3d(16), then the pooled cells become rows: (N, C, D, H, W) ->
    (N, P, C) with P = (D // 16) * (H // 16) * (W // 16), then Linear-ReLU-Linear-ReLU-
    Linear on the last axis -> (N, P, out_dim).
    """

    def __init__(self, in_channels: int, hidden_dim: int = 256, out_dim: int = 256) -> None:
        super().__init__()
        self.pool = nn.AvgPool3d(PROJECTION_POOL)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, features_ncdhw: torch.Tensor) -> torch.Tensor:
        """Map (N, C, D, H, W) features to (N, P, out_dim) projections."""
        pooled = self.pool(features_ncdhw)
        rows_npc = pooled.flatten(2).transpose(1, 2)
        return self.mlp(rows_npc)


class SegResNet(SizeChecked, MonaiSegResNet):
    """MONAI SegResNet (paper 004, Table 1) plus an optional projection branch.

    Args:
        in_channels: input modalities (4: t1n, t1c, t2w, t2f).
        out_channels: regions predicted (3: WT, TC, ET in the paper).
        init_filters: filters of the first level (32 in the paper), doubled per level.
        dropout_prob: dropout after the initial convolution, None for none (paper).
        upsample_mode: MONAI upsampling mode (``"nontrainable"``: 1x1x1 conv then
            trilinear x2, MONAI's default).
        projection: build the Barlow-Twins branch (``self.projection``); False or
            :meth:`without_projection` leaves ``self.projection`` None.
        projection_hidden: hidden width of the projection MLP.
        projection_dim: output width of the projection MLP.
        checkpoint: recompute encoder/decoder block activations in backward while
            training, to save memory. No effect in eval mode or on the outputs.

    ``forward`` returns logits (N, out_channels, D, H, W); the caller applies the sigmoid.
    Every spatial size must be divisible by 8 (three stride-2 convolutions).
    """

    name = "segresnet"

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        init_filters: int = 32,
        dropout_prob: float | None = None,
        upsample_mode: str = "nontrainable",
        projection: bool = True,
        projection_hidden: int = 256,
        projection_dim: int = 256,
        checkpoint: bool = False,
    ) -> None:
        super().__init__(
            spatial_dims=3,
            init_filters=init_filters,
            in_channels=in_channels,
            out_channels=out_channels,
            dropout_prob=dropout_prob,
            norm=("INSTANCE", {"affine": True}),
            blocks_down=(1, 2, 2, 4),
            blocks_up=(1, 1, 1),
            upsample_mode=upsample_mode,
        )
        self.out_channels = out_channels
        self.checkpoint = checkpoint
        self.projection: ProjectionHead | None = (
            ProjectionHead(init_filters, projection_hidden, projection_dim) if projection else None
        )
        d = 2 ** (len(self.blocks_down) - 1)
        self._size_rule = SizeRule(divisors=(d, d, d))

    def features(self, x_ncdhw: torch.Tensor) -> torch.Tensor:
        """Output of the last decoder block, (N, init_filters, D, H, W).

        Same computation as MONAI's ``encode`` then ``decode`` up to, not including,
        ``conv_final`` (the final IN, ReLU, 1x1x1 conv).
        """
        ckpt = self.checkpoint and self.training
        x = self.convInit(x_ncdhw)
        if self.dropout_prob is not None:
            x = self.dropout(x)
        skips = []
        for down in self.down_layers:
            x = maybe_checkpoint(down, ckpt, x)
            skips.append(x)
        skips.reverse()
        for i, (up, up_layer) in enumerate(zip(self.up_samples, self.up_layers)):
            x = up(x) + skips[i + 1]
            x = maybe_checkpoint(up_layer, ckpt, x)
        return x

    def forward(self, x_ncdhw: torch.Tensor) -> torch.Tensor:
        """Map (N, C, D, H, W) float32 images to (N, out_channels, D, H, W) logits."""
        if eager_checks_enabled():
            self.check_input(x_ncdhw.shape)
        return self.conv_final(self.features(x_ncdhw))

    def forward_with_projection(self, x_ncdhw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and projections for the Barlow-Twins loss (paper 004, section 3.1).

        Returns:
            ``(logits, z_npk)``: logits as :meth:`forward`; ``z_npk`` (N, P, K) with
            P = prod(size // 16) pooled spatial cells and K = ``projection_dim``.

        Raises:
            RuntimeError: the model has no projection branch.
            ValueError: the input is not accepted, or a spatial size is below 16.
        """
        if self.projection is None:
            raise RuntimeError(
                "segresnet was built without a projection branch: build it with "
                "projection=True to use forward_with_projection"
            )
        self.check_input(x_ncdhw.shape)
        spatial = tuple(int(s) for s in x_ncdhw.shape[2:])
        if min(spatial) < PROJECTION_POOL:
            raise ValueError(
                f"segresnet projection pools by {PROJECTION_POOL}, so every spatial size must be "
                f">= {PROJECTION_POOL}, got {spatial}: train on larger crops"
            )
        feats = self.features(x_ncdhw)
        return self.conv_final(feats), self.projection(feats)

    def without_projection(self) -> SegResNet:
        """A deep copy with ``projection`` set to None: the network that gets exported.

        Its state dict equals this model's minus the ``projection.*`` entries.
        """
        projection = self.projection
        self.projection = None
        try:
            clone = copy.deepcopy(self)
        finally:
            self.projection = projection
        return clone
