"""Training losses from the papers: BCE, soft Dice (two forms), their mixes, Barlow Twins.

Segmentation losses take ``logits`` (N, R, D, H, W), the raw model outputs before the
per-region sigmoid, and ``target`` of the same shape: float or bool region masks
(R regions, e.g. WT, TC, ET). They return a scalar tensor. Any number of trailing
spatial axes works; axes 0 and 1 are always sample and region.

Empty-mask conventions (pinned in ``tests/train/test_losses.py``):

* ``dice_loss(form="plain")`` adds ``eps`` to numerator and denominator, so an empty
  target with an empty prediction has Dice 1 (loss 0) and an empty target with a full
  prediction has Dice ~0 (loss ~1).
* ``dice_loss(form="squared")`` follows paper 003 eq. 1 / paper 004 eq. 4 literally, with
  ``eps`` in the denominator only: an empty target always has Dice 0 (loss 1), whatever
  the prediction, and gives no gradient.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DICE_FORMS = ("plain", "squared")


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Validate shapes and return ``target`` as a float tensor of the logits' dtype."""
    if logits.shape != target.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} and target shape {tuple(target.shape)} "
            "differ; both must be (N, R, D, H, W)"
        )
    if logits.ndim < 3:
        raise ValueError(
            f"expected logits (N, R, *spatial) with at least one spatial axis, "
            f"got shape {tuple(logits.shape)}"
        )
    return target.to(dtype=logits.dtype)


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over all voxels, regions and samples.

    Paper 002, section 2.4, eq. 1 (used alone for ET). Computed from logits with
    ``binary_cross_entropy_with_logits`` (log-sum-exp form), so saturated logits give a
    finite loss and gradient.
    """
    return F.binary_cross_entropy_with_logits(logits, _check_pair(logits, target))


def dice_coefficient(
    logits: torch.Tensor,
    target: torch.Tensor,
    form: str = "plain",
    eps: float = 1e-5,
    batch: bool = False,
) -> torch.Tensor:
    """Soft Dice coefficient per (sample, region) on sigmoid probabilities ``p``.

    ``form="plain"``, paper 002 section 2.4 eq. 2, 2|X n Y| / (|X| + |Y|) with soft sums:
    ``(2 sum(p t) + eps) / (sum p + sum t + eps)``; empty target and prediction give 1.

    ``form="squared"``, paper 003 section 2.4 eq. 1 and paper 004 section 3.1 eq. 4:
    ``2 sum(p t) / (sum t^2 + sum p^2 + eps)``; eps only in the denominator, as the papers
    write it, so an empty target gives 0 for any prediction (and zero gradient).

    ``batch=True`` sums over the samples too (one Dice per region over the whole batch, X
    and Y of eq. 2 being the batch's voxels): a patch without ET then adds its false
    positives to the batch's denominator instead of scoring 0 on its own, which keeps
    small regions from collapsing to empty early in training.

    Returns:
        (N, R) tensor of Dice values in [0, 1], or (R,) with ``batch=True``.
    """
    if form not in DICE_FORMS:
        raise ValueError(f"unknown Dice form {form!r}; choose one of {', '.join(DICE_FORMS)}")
    target = _check_pair(logits, target)
    probs = torch.sigmoid(logits)
    axes = tuple(range(2, logits.ndim))
    if batch:
        axes = (0, *axes)
    intersection = (probs * target).sum(dim=axes)
    if form == "plain":
        denominator = probs.sum(dim=axes) + target.sum(dim=axes)
        return (2.0 * intersection + eps) / (denominator + eps)
    denominator = (target * target).sum(dim=axes) + (probs * probs).sum(dim=axes)
    return 2.0 * intersection / (denominator + eps)


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    form: str = "plain",
    eps: float = 1e-5,
    batch: bool = False,
) -> torch.Tensor:
    """Soft Dice loss: 1 - mean over (sample, region) of :func:`dice_coefficient`.

    With ``form="squared"`` every empty (sample, region) target contributes a constant 1
    (paper 004 eq. 4 taken literally): it neither rewards nor penalises false positives
    there, and the loss cannot reach 0 when some targets are empty. Use ``"plain"`` when
    empty regions (e.g. cases without ET) should be learnt as empty.
    """
    return 1.0 - dice_coefficient(logits, target, form=form, eps=eps, batch=batch).mean()


def dice_squared_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared-denominator soft Dice loss, paper 004 section 3.1 eq. 4 (its main loss)."""
    return dice_loss(logits, target, form="squared")


def bce_dice(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """BCE plus plain soft Dice loss, paper 002 section 2.4 (WT, TC): equal weights as the
    paper's, unless ``dice_weight`` (a recipe's ``loss_params``) weighs the Dice term.

    The Dice term is the batch Dice (see :func:`dice_coefficient`).
    """
    dice = dice_loss(logits, target, form="plain", batch=True)
    return bce(logits, target) + dice_weight * dice


def ce_minus_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy minus the squared-form Dice coefficient, paper 003 section 2.4 eq. 2.

    ``L = L_cross - L_Dice`` where ``L_Dice`` is the Dice *coefficient* of eq. 1 (mean over
    samples and regions), so minimising L maximises Dice. The loss is negative near a good
    solution: its infimum is -1 when every target is non-empty, and minus the fraction of
    non-empty (sample, region) targets otherwise (empty ones have Dice 0, see
    :func:`dice_coefficient`). Only differences of it are meaningful, not its sign.
    """
    return bce(logits, target) - dice_coefficient(logits, target, form="squared").mean()


def barlow_twins(
    z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 0.005, eps: float = 1e-8
) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss, paper 004 section 3.1 eqs. 1-3.

    Zbontar et al. 2021. Rows b are the pooled spatial regions of one image (the "batch" of
    eq. 2) and columns the K projection dimensions. Eq. 2 of paper 004 correlates the raw
    projections, ``C_ij = sum_b z_bi^A z_bj^B / (sqrt(sum_b (z_bi^A)^2) sqrt(...))``, with
    no centring; here each dimension is first mean-centred along b, as Barlow Twins does
    (its batch normalisation of the embeddings, the paper's reference 16), which makes C
    the Pearson correlation its values "between -1 and 1" describe. Then
    ``C_ij = sum_b a_bi b_bj / (|a_i| |b_j|)`` with ``eps`` inside the square roots, and
    ``L = sum_i (1 - C_ii)^2 + lambd sum_{i != j} C_ij^2`` (eq. 3).

    Args:
        z_a: (B, K) projections of view A, or (N, B, K) for N independent pairs.
        z_b: same shape as ``z_a``, view B with rows matching ``z_a``'s regions.
        lambd: off-diagonal weight; 0.005 as in the paper.
        eps: keeps constant (zero-variance) dimensions finite: their C entries are 0.

    Returns:
        scalar: the loss of the pair, or its mean over the N pairs for 3-D input.
    """
    if z_a.shape != z_b.shape or z_a.ndim not in (2, 3):
        raise ValueError(
            f"expected z_a and z_b of equal shape (B, K) or (N, B, K), "
            f"got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.shape[-2] < 2:
        raise ValueError(
            f"Barlow Twins needs at least 2 rows (regions) to correlate, got {z_a.shape[-2]}"
        )
    a = z_a - z_a.mean(dim=-2, keepdim=True)
    b = z_b - z_b.mean(dim=-2, keepdim=True)
    a = a / torch.sqrt((a * a).sum(dim=-2, keepdim=True) + eps)
    b = b / torch.sqrt((b * b).sum(dim=-2, keepdim=True) + eps)
    corr_kk = a.transpose(-1, -2) @ b
    diag = torch.diagonal(corr_kk, dim1=-2, dim2=-1)
    on_diag = ((1.0 - diag) ** 2).sum(dim=-1)
    off_diag = (corr_kk**2).sum(dim=(-2, -1)) - (diag**2).sum(dim=-1)
    return (on_diag + lambd * off_diag).mean()


#: Segmentation losses by config name: ``(logits, target) -> scalar``.
LOSSES: dict[str, LossFn] = {
    "bce": bce,
    "dice": dice_loss,
    "dice_squared": dice_squared_loss,
    "bce_dice": bce_dice,
    "ce_minus_dice": ce_minus_dice,
}


def get_loss(name: str, params: Mapping[str, Any] | None = None) -> LossFn:
    """Look up a segmentation loss by its config name (a key of :data:`LOSSES`), with a
    recipe's ``loss_params`` bound to its keyword arguments (``bce_dice``: ``dice_weight``).

    Raises:
        ValueError: an unknown loss, or a parameter it does not take.
    """
    try:
        loss = LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}"
        ) from None
    if not params:
        return loss
    takes = list(inspect.signature(loss).parameters)[2:]
    unknown = sorted(set(params) - set(takes))
    if unknown:
        raise ValueError(
            f"loss {name} takes no {', '.join(unknown)} (its parameters: "
            f"{', '.join(takes) or 'none'})"
        )
    return functools.partial(loss, **params)
