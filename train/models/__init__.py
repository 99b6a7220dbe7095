"""bratskit segmentation models: registry, builder and size/parameter helpers.

Every model maps float32 images ``x_ncdhw`` (N, C, D, H, W; channels t1n, t1c, t2w, t2f;
for BraTS the last axis is the axial slice axis) to region LOGITS (N, R, D, H, W), regions
in the caller's order (e.g. WT, TC, ET); the sigmoid belongs to the loss or the export
wrapper. Every model has ``size_rule`` (:class:`SizeRule`, what to pad to) and
``check_input(shape)`` (ValueError naming the bad size and the fix), which ``forward``
runs in eager mode only.

Models (``MODELS``):
    ``resunet``: residual 3-D U-Net, paper 002 (:class:`ResUNet`).
    ``segresnet``: MONAI SegResNet with a Barlow-Twins projection branch, paper 004
        (:class:`SegResNet`).
    ``effunet``: asymmetric U-Net with a 2-D EfficientNet-B0 encoder, paper 003
        (:func:`build_effunet`: :class:`EffUNet`, one network per modality in the
        ``effunet`` recipe, one 4-channel network in ``effunet-joint``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from itertools import chain

import torch
from torch import nn

from submission.predict.sliding_window import SizeRule
from train.models.effunet import EffUNet, build_effunet, depth_factors_for
from train.models.effunet import from_scratch_warning as _effunet_scratch_warning
from train.models.resunet import ResUNet
from train.models.segresnet import SegResNet

__all__ = [
    "MODELS",
    "EffUNet",
    "ResUNet",
    "SegResNet",
    "SizeRule",
    "build_effunet",
    "build_model",
    "count_parameters",
    "depth_factors_for",
    "describe",
    "from_scratch_warning",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resunet": ResUNet,
    "segresnet": SegResNet,
    "effunet": build_effunet,
}

DEFAULT_EXCLUDE = ("projection",)

#: Models with a pretrained part that a recipe may leave at random initialisation, and
#: the warning that gives (None when the weights are set).
_SCRATCH_WARNINGS: dict[str, Callable[[dict], str | None]] = {
    "effunet": _effunet_scratch_warning,
}


def from_scratch_warning(name: str, params: dict) -> str | None:
    """Why model ``name`` built from ``params`` starts a pretrained part from scratch
    (effunet's EfficientNet-B0 without ImageNet weights), or None."""
    check = _SCRATCH_WARNINGS.get(name)
    return None if check is None else check(params)


def _accepted_params(builder: Callable[..., nn.Module]) -> list[str]:
    return [p for p in inspect.signature(builder).parameters if p not in ("self", "params")]


def build_model(name: str, **params) -> nn.Module:
    """Build a registered model.

    Args:
        name: a key of :data:`MODELS`.
        **params: the builder's keyword arguments (see each model's docstring).

    Raises:
        ValueError: unknown model name (the message lists the known ones).
        TypeError: a parameter the model does not take (the message lists accepted ones).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    builder = MODELS[name]
    accepted = _accepted_params(builder)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(
            f"model {name!r} does not take parameter(s) {', '.join(unknown)}: "
            f"accepted are {', '.join(accepted)}"
        )
    return builder(**params)


def _excluded(name: str, exclude: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in exclude)


def count_parameters(
    model: nn.Module, trainable_only: bool = False, exclude: Sequence[str] = DEFAULT_EXCLUDE
) -> int:
    """Number of parameter elements, shared parameters counted once.

    Args:
        model: any module (meta-device modules work).
        trainable_only: count only parameters with ``requires_grad``.
        exclude: parameter-name prefixes left out; the default drops SegResNet's
            training-only projection branch so the count is the exported network's.
            Pass ``()`` to count everything.
    """
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if not _excluded(name, exclude) and (p.requires_grad or not trainable_only)
    )


def _meta_output_shape(model: nn.Module, input_shape_ncdhw: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of ``model`` from a forward on the meta device (no memory, no math)."""
    tensors = chain(model.named_parameters(), model.named_buffers())
    meta_state = {name: torch.empty_like(t, device="meta") for name, t in tensors}
    x = torch.empty(input_shape_ncdhw, device="meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = torch.func.functional_call(model, meta_state, (x,))
    finally:
        model.train(was_training)
    return tuple(out.shape)


def describe(model: nn.Module, input_shape_cdhw: Sequence[int]) -> str:
    """A readable summary: parameters per top-level child, totals, size rule, output shape.

    The output shape comes from a forward pass on the meta device, so paper-sized
    inputs cost no memory and ``model`` itself is left untouched (it may live on any
    device, or on meta: ``with torch.device("meta"): m = build_model(...)``).

    Args:
        model: a bratskit model.
        input_shape_cdhw: (C, D, H, W) of one input; a batch of 1 is used.

    Raises:
        ValueError: the input shape is not accepted by the model.
    """
    shape = (1, *(int(s) for s in input_shape_cdhw))
    out_shape = _meta_output_shape(model, shape)
    rows = [
        (name, type(child).__name__, count_parameters(child, exclude=()))
        for name, child in model.named_children()
    ]
    width = max([len(r[0]) for r in rows] + [len("module")])
    lines = [f"{type(model).__name__}", f"{'module':<{width}}  {'type':<28}  {'params':>12}"]
    lines += [f"{n:<{width}}  {t:<28}  {c:>12,}" for n, t, c in rows]
    lines += [
        f"total parameters:    {count_parameters(model, exclude=()):,}",
        f"exported parameters: {count_parameters(model):,}",
        f"size rule:           {getattr(model, 'size_rule', None)}",
        f"input shape:         {shape}",
        f"output shape:        {out_shape}",
    ]
    return "\n".join(lines)
