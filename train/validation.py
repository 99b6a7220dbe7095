"""Out-of-fold validation through the runtime's own inference code.

Each validation case is the cached network input (the container's preprocessing), predicted
by :func:`submission.predict.sliding_window.predict_volume` exactly as the container
predicts a case (members trained on random patches in windows of their patch,
:func:`submission.predict.sliding_window.training_window`), thresholded, and scored per
region with the organisers' 2021 Dice (:func:`submission.evaluation.overlap_2021.dice`,
1 when both masks are empty). The
member's own training loss is computed on the same whole-case probabilities (read back as
logits): the validation loss a ``plateau`` schedule may watch (paper 003, section 2.5).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from submission.evaluation.overlap_2021 import dice
from submission.predict.sliding_window import predict_volume, training_window
from submission.predict.tumour_window import extract_window
from train.cache import CachedCase
from train.config import MemberConfig
from train.data import localisation_window, region_index
from train.losses import get_loss

#: Probabilities are clipped to [eps, 1 - eps] before they are read back as logits, so a
#: saturated voxel gives a finite loss.
_LOGIT_EPS = 1e-6


@dataclass(frozen=True)
class Validation:
    """One validation pass: mean Dice per region and the member's mean loss per case."""

    dice: dict[str, float]
    loss: float

    @property
    def mean_dice(self) -> float:
        """Mean over regions: what picks the best epoch (``best.pt``)."""
        return float(np.mean(list(self.dice.values())))


def torch_forward(model: torch.nn.Module, device: torch.device, amp_dtype: torch.dtype | None):
    """A :func:`predict_volume` forward: numpy (N, C, d, h, w) -> sigmoid probabilities."""

    def forward(batch_ncdhw: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch_ncdhw)).to(device)
        with torch.no_grad(), autocast(device, amp_dtype):
            probs = torch.sigmoid(model(x).float())
        return probs.cpu().numpy()

    return forward


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for ``dtype``, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def validate(
    model: torch.nn.Module,
    cases: list[CachedCase],
    member: MemberConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    threshold: float = 0.5,
    channels: list[int] | None = None,
) -> Validation:
    """Mean Dice per region of ``member.regions`` over ``cases``, and the mean loss.

    Members of the localisation chain's second stage (``sampling: tumour``) are scored on
    the window centred on the true whole tumour (002 §2.3); others on the whole cropped
    volume, in one call, or in sliding windows of the training crop for members trained
    on random patches (:attr:`MemberConfig.window`), as their bundle predicts. Models
    with a fixed axis (effunet's depth) run a sliding window with the training crop.
    ``channels`` selects the cached channels the member sees
    (:meth:`train.config.TrainConfig.channel_index`; None: all).
    """
    was_training = model.training
    model.eval()
    forward = torch_forward(model, device, amp_dtype)
    rule = model.size_rule
    fixed_patch = None
    if any(f is not None for f in rule.fixed):
        fixed_patch = tuple(f if f is not None else c for f, c in zip(rule.fixed, member.crop))
    loss_fn = get_loss(member.loss, member.loss_params)
    scores: list[list[float]] = []
    losses: list[float] = []
    for case in cases:
        image, regions = case.image(), case.regions()
        if channels is not None:
            image = image[channels]
        if member.sampling == "tumour":
            start = localisation_window(case, member.crop)
            image = extract_window(image, start, member.crop)
            regions = extract_window(regions, start, member.crop)
        patch = fixed_patch
        if patch is None and member.window == "patch":
            patch = training_window(rule, member.crop, image.shape[1:])
        probs = predict_volume(np.asarray(image, dtype=np.float32), forward, rule, patch_dhw=patch)
        truth = regions[region_index(case, member.regions)].astype(bool)
        scores.append([dice(p > threshold, t) for p, t in zip(probs, truth)])
        logits = torch.logit(torch.from_numpy(probs[None]).float(), eps=_LOGIT_EPS)
        losses.append(float(loss_fn(logits, torch.from_numpy(truth[None]))))
    model.train(was_training)
    means = np.mean(scores, axis=0) if scores else np.full(len(member.regions), np.nan)
    return Validation(
        dice={r: float(m) for r, m in zip(member.regions, means)},
        loss=float(np.mean(losses)) if losses else float("nan"),
    )
