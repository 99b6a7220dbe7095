"""Small building blocks shared by the bratskit models.

Holds the input check every ``forward`` runs in eager mode (against the model's
:class:`submission.predict.sliding_window.SizeRule`, the runtime's own rule, so training, export and
the container agree on what sizes a model accepts),
and the GroupNorm residual blocks of the residual 3-D U-Net (paper 002, section 2.2)
and of the asymmetric EfficientNet U-Net (paper 003: the inter-slice blocks of section 2.2,
and the 3-D and 2-D decoder blocks, residual with GroupNorm by Fig. 1's caption and "homogeneous"
by section 2.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from submission.predict.sliding_window import SizeRule

_GROUP_CHOICES = (8, 4, 2, 1)


class SizeChecked:
    """Mixin of every model: ``size_rule`` and ``check_input`` from the model's ``name``,
    ``in_channels`` and ``_size_rule`` attributes (set in its constructor)."""

    name: str
    in_channels: int
    _size_rule: SizeRule

    @property
    def size_rule(self) -> SizeRule:
        """Input sizes the model admits (divisors, fixed axes): what inference pads to."""
        return self._size_rule

    def check_input(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Raise ValueError naming the bad size and the fix when ``shape`` is not accepted."""
        check_input_shape(self.name, shape, self.in_channels, self._size_rule)


def check_input_shape(
    model_name: str, shape: Sequence[int], in_channels: int, rule: SizeRule
) -> None:
    """Raise ValueError naming the bad size and the fix when ``shape`` is not accepted.

    Args:
        model_name: registry name used in the message.
        shape: the input tensor's shape, (N, C, D, H, W).
        in_channels: channels the model was built for.
        rule: the model's size rule.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 5:
        raise ValueError(
            f"{model_name} expects a 5-D tensor (N, C, D, H, W), got shape {shape}: "
            f"add the batch and channel axes"
        )
    if shape[1] != in_channels:
        raise ValueError(
            f"{model_name} was built for {in_channels} input channel(s), got {shape[1]} "
            f"(shape {shape}): pass the channels it was trained on or rebuild with "
            f"in_channels={shape[1]}"
        )
    problem = rule.problem(shape[2:])
    if problem is not None:
        raise ValueError(f"{model_name} needs {problem}")


def eager_checks_enabled() -> bool:
    """True outside TorchScript scripting/tracing, ONNX export and torch.compile.

    The input check is plain Python on shapes; skipping it while a graph is being
    recorded keeps the recorded graph free of it.
    """
    if torch.jit.is_scripting():
        return False
    return not (
        torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    )


def num_groups(channels: int) -> int:
    """GroupNorm groups: the largest of (8, 4, 2, 1) that divides ``channels``."""
    return next(g for g in _GROUP_CHOICES if channels % g == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with :func:`num_groups` groups and a learnable affine."""
    return nn.GroupNorm(num_groups(channels), channels)


def maybe_checkpoint(module: nn.Module, enabled: bool, *inputs: torch.Tensor) -> torch.Tensor:
    """Run ``module(*inputs)``, recomputing its activations in backward when ``enabled``.

    Non-reentrant activation checkpointing (saves memory at the cost of a second
    forward of ``module``); callers pass ``enabled = self.checkpoint and self.training``.
    """
    if enabled and torch.is_grad_enabled():
        return checkpoint(module, *inputs, use_reentrant=False)
    return module(*inputs)


#: Activations of the residual blocks: ``relu`` is the papers'; ``leaky_relu`` keeps a
#: gradient below zero. With 8 filters (the ``tiny`` recipe) ReLU sometimes killed every
#: channel of a block within the first epoch: one region, or all three, then stayed at a
#: constant prediction (Dice 0 or all-positive) to the end of the fold.
ACTIVATIONS = ("relu", "leaky_relu")


def make_activation(name: str) -> nn.Module:
    """ReLU or LeakyReLU (negative slope 0.01), in place."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


class ResidualBlock3d(nn.Module):
    """The residual block of the residual 3-D U-Net (paper 002, section 2.2), three convolutions.

    Section 2.2: "the first two convolutions are preceded by group normalization and followed
    by the ReLU activation function. After the last convolution layer, there is a
    concatenation of the residual connection, and then activation is called". The paper bases
    the network on Lee et al. (its ref. 16, the SNEMI3D network), whose residual module is a
    first convolution that sets the channel count followed by two more convolutions, with the
    residual taken from the first convolution's output; pytorch-3dunet's ``ExtResNetBlock``,
    the usual GroupNorm implementation of that module, normalises before the third
    convolution too, and so does this block (the paper's text does not say either way)::

        r = act(conv1(GN(x)))       # in -> out channels; the residual
        h = act(conv2(GN(r)))
        h = conv3(GN(h))
        out = act(h + r)

    No 1x1 projection is needed: the residual already has ``out_channels``.
    ``activation="leaky_relu"`` (slope 0.01) replaces ReLU for very narrow networks, whose
    few channels can all die (see :data:`ACTIVATIONS`).
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str = "relu") -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm3 = group_norm(out_channels)
        self.conv3 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in, D, H, W) to (N, out, D, H, W)."""
        residual = self.act(self.conv1(self.norm1(x)))
        h = self.act(self.conv2(self.norm2(residual)))
        h = self.conv3(self.norm3(h))
        return self.act(h + residual)


class InterSliceBlock3d(nn.Module):
    """The inter-slice residual block of paper 003 (section 2.2: "two convolutional layers
    with normalization and ReLU, followed by skip connection")::

        h = act(GN(conv1(x)))
        h = GN(conv2(h))
        out = act(h + residual(x))

    The residual is a 1x1x1 convolution when the channel count changes, else identity.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.residual = (
            nn.Conv3d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in, D, H, W) to (N, out, D, H, W)."""
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.residual(x))


class ConvBlock2d(nn.Module):
    """The residual 2-D decoder block of paper 003, the 2-D twin of :class:`InterSliceBlock3d`.

    Section 2.3: "the decoder is composed entirely of homogeneous blocks as shown in
    Fig. 1"; Fig. 1's caption: "The inter-slice encoder as well as the decoder consist of
    a succession of residual blocks with GroupNorm normalization". So the block of section
    2.2 ("two convolutional layers with normalization and ReLU, followed by skip
    connection") in 2-D::

        h = ReLU(GN(conv3x3(x)))
        h = GN(conv3x3(h))
        out = ReLU(h + residual(x))

    The residual is a 1x1 convolution when the channel count changes (every decoder level:
    the upsampled features and the skip are concatenated), else identity.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.residual = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in, D, H) to (N, out, D, H)."""
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.residual(x))
