"""``bratskit train --describe``: a recipe's networks, sizes and parameter counts, no training.

Models are built on PyTorch's meta device, so even the papers' 64-filter U-Net at
128^3 costs no memory and the output shapes come from a real (shape-only) forward pass.
"""

from __future__ import annotations

import torch

from train.config import TrainConfig
from train.models import build_model, describe


def describe_recipe(config: TrainConfig) -> str:
    """Readable summary of every member of ``config`` at its training crop."""
    lines = [
        f"recipe {config.name}: {config.description}".rstrip(": "),
        f"  epochs {config.epochs}, batch {config.batch_size}, {config.folds} folds, "
        f"amp {config.amp}, preprocessing {config.preprocessing.to_dict()}",
        f"  task {config.task or 'gli-2021 (the papers)'}: channels {', '.join(config.channels)}"
        + "".join(f", {m} may be absent (dropout)" for m in config.missing_modalities),
    ]
    for member in config.members:
        opt = member.optimizer
        lines += [
            "",
            f"member {member.key} ({member.stage}): {member.arch} -> {', '.join(member.regions)}",
            f"  loss {member.loss}"
            + (f" + {member.redundancy} x Barlow-Twins" if member.redundancy else ""),
            f"  optimiser {opt.name} lr {opt.lr:g} wd {opt.weight_decay:g}, schedule "
            f"{opt.schedule}; crop {member.crop} ({member.sampling})",
        ]
        params = dict(member.arch_params)
        params.setdefault("out_channels", len(member.regions))
        with torch.device("meta"):
            model = build_model(member.arch, **params)
        lines.append(describe(model, (len(config.channels), *member.crop)))
    return "\n".join(lines)
