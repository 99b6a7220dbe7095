"""``bratskit train --describe``: a recipe's networks, sizes and parameter counts, no training.

Models are built on PyTorch's meta device, so even the papers' 64-filter U-Net at
128^3 costs no memory and the output shapes come from a real (shape-only) forward pass.
"""

from __future__ import annotations

import torch

from train.config import OptimConfig, TrainConfig
from train.models import build_model, count_parameters, describe, from_scratch_warning


def describe_recipe(config: TrainConfig) -> str:
    """Readable summary of every member of ``config`` at its training crop: its channels,
    a warning when a pretrained part starts from scratch, its parameters; then the
    exported parameters of all members of one fold together."""
    lines = [
        f"recipe {config.name}: {config.description}".rstrip(": "),
        f"  epochs {config.epochs}, batch {config.batch_size} per optimiser step (global: "
        f"split across torchrun processes, accumulate {config.accumulate}), "
        f"{config.folds} folds, "
        + (
            f"validated every {config.val_interval} epochs and after the last, "
            if config.val_interval > 1
            else ""
        )
        + f"amp {config.amp}, preprocessing {config.preprocessing.to_dict()}",
        f"  task {config.task or 'gli-2021 (the papers)'}: channels {', '.join(config.channels)}"
        + "".join(f", {m} may be absent (dropout)" for m in config.missing_modalities),
    ]
    total = 0
    for member in config.members:
        opt = member.optimizer
        channels = config.member_channels(member)
        lines += [
            "",
            f"member {member.key} ({member.stage}): {member.arch} -> {', '.join(member.regions)}",
            f"  loss {member.loss}"
            + "".join(f" {k}={v}" for k, v in member.loss_params.items())
            + (f" + {member.redundancy} x Barlow-Twins" if member.redundancy else ""),
            f"  optimiser {opt.name} lr {opt.lr:g} wd {opt.weight_decay:g}, schedule "
            f"{_schedule(opt)}; crop {member.crop} ({member.sampling}; predicted "
            + (
                "in windows of the crop where the volume is larger)"
                if member.window == "patch"
                else "in one call)"
            ),
            f"  channels {', '.join(channels)}"
            + ("" if member.channels is None else " (this member's own)"),
        ]
        scratch = from_scratch_warning(member.arch, member.arch_params)
        if scratch is not None:
            lines.append(f"  WARNING: {scratch}")
        params = member.model_params()
        params.setdefault("in_channels", len(channels))
        params.pop("weights", None)  # the shapes do not need the file
        with torch.device("meta"):
            model = build_model(member.arch, **params)
        lines.append(describe(model, (len(channels), *member.crop)))
        total += count_parameters(model)
    lines += [
        "",
        f"all {len(config.members)} member(s) of a fold: {total:,} exported parameters "
        f"({config.folds} folds: {config.folds * total:,})",
    ]
    return "\n".join(lines)


def _schedule(opt: OptimConfig) -> str:
    """The schedule, and for ``plateau`` what it watches and how it reacts."""
    if opt.schedule != "plateau":
        return opt.schedule
    return (
        f"plateau on the validation {opt.monitor} (x{opt.factor:g} after {opt.patience} "
        f"epochs without improvement, cooldown {opt.cooldown})"
    )
