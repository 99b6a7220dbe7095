"""Fold ensembles over N members' per-region probabilities (N, R, D, H, W).

A voxel belongs to a region when its probability is strictly greater than the
region's threshold, in every method, so the three agree on what "segments" means.

    ``mean``        regression voting ensemble (paper 002, section 2.5): average the
                    members' probabilities, then threshold.
    ``vote``        classification voting ensemble (paper 002, section 2.5): binarise each
                    member, keep voxels where more than N/2 members agree.
    ``argmax``      label-based models (nnU-Net trained on labels, softmax): average the
                    members' probabilities, turn the regions back into one probability per
                    label and keep the most probable label per voxel, as nnU-Net's own
                    predictor does (``LabelManager.convert_probabilities_to_segmentation``);
                    no threshold (:func:`argmax_masks`).
    ``confidence``  confidence-based top-k (paper 004, section 3.2): "we could use the
                    subset of the probability maps with the top confidence for ensembling
                    [...] using the top N/2 probabilities (with equal weights) generally
                    gives the best performance", the confidence being "the average
                    probability value of the segmented region". Per region, a member's
                    confidence is its mean probability over the voxels it segments; the k
                    most confident members are averaged with equal weights, then
                    thresholded. k = ceil(N/2) by default ("top N/2"). Ties are broken by
                    member order: the earlier member wins.

The paper does not say what the confidence of a member that segments nothing is (its
segmented region has no average). ``confidence_empty`` chooses:

    ``zero``        its confidence is 0. A member that segments something scores
                    above the threshold (each voxel it segments does), so empty members
                    rank last and fill the top-k only when fewer than k members segment.
                    On a case without ET this picks the members with false-positive ET.
    ``exclude``     (default) empty members take no part unless every member is empty: the average
                    is over the top-k members that segment something, so fewer than k when
                    fewer than k segment (one member that segments decides alone); when all
                    are empty, over the first k (all at or below the threshold).
    ``background``  its confidence is its mean background confidence: the mean of 1 - p
                    over the voxels it does not segment, i.e. all of them, 1 - mean(p). On
                    a whole volume that is close to 1, so in practice empty members rank
                    first (the one furthest from segmenting first) and the region is
                    empty when at least k members see nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from submission.predict.options import (
    DEFAULT_CONFIDENCE_EMPTY,
    check_confidence_empty,
    check_ensemble,
    check_thresholds,
    check_top_k,
)


def _thresholds(threshold: float | Sequence[float], regions: int) -> np.ndarray:
    """Per-region thresholds shaped (R, 1, 1, 1) for broadcasting over (R, D, H, W)."""
    values = np.broadcast_to(np.asarray(threshold, dtype=np.float32), (regions,))
    check_thresholds(values.tolist())
    return values.reshape(regions, 1, 1, 1)


def _check(probs_nrdhw: np.ndarray) -> None:
    if probs_nrdhw.ndim != 5 or probs_nrdhw.shape[0] < 1:
        raise ValueError(
            f"expected member probabilities (N, R, D, H, W) with N >= 1, got {probs_nrdhw.shape}"
        )


def confidence_scores(
    probs_nrdhw: np.ndarray,
    threshold: float | Sequence[float] = 0.5,
    empty: str = DEFAULT_CONFIDENCE_EMPTY,
) -> np.ndarray:
    """Paper 004 (3.2) confidence of each member for each region.

    Args:
        empty: the score of a member that segments nothing in a region (module docstring):
            ``zero`` 0, ``exclude`` -inf (ranked below every other member), ``background``
            the mean of 1 - p over its voxels.

    Returns:
        float64 (N, R): mean probability over the voxels the member segments
        (probability > threshold); ``empty``'s score where it segments none.
    """
    _check(probs_nrdhw)
    check_confidence_empty(empty)
    thr = _thresholds(threshold, probs_nrdhw.shape[1])
    n, r = probs_nrdhw.shape[:2]
    scores = np.zeros((n, r))
    for i in range(n):
        segmented = probs_nrdhw[i] > thr
        counts = segmented.reshape(r, -1).sum(axis=1)
        sums = np.where(segmented, probs_nrdhw[i], 0).reshape(r, -1).sum(axis=1, dtype=np.float64)
        if empty == "zero":
            fill = np.zeros(r)
        elif empty == "exclude":
            fill = np.full(r, -np.inf)
        else:  # background: nothing segmented, so every voxel is the member's background
            fill = 1.0 - probs_nrdhw[i].reshape(r, -1).mean(axis=1, dtype=np.float64)
        scores[i] = np.divide(sums, counts, out=fill, where=counts > 0)
    return scores


def top_k_members(scores_nr: np.ndarray, k: int) -> np.ndarray:
    """Indices (R, k) of the k most confident members per region; ties go to the earlier one."""
    # A stable sort on the negated score keeps member order among equal scores.
    return np.argsort(-scores_nr, axis=0, kind="stable")[:k].T


def confidence_members(
    scores_nr: np.ndarray, k: int, empty: str = DEFAULT_CONFIDENCE_EMPTY
) -> list[np.ndarray]:
    """Per region, the indices of the members the confidence ensemble averages: the top k
    of :func:`top_k_members`, less, for ``exclude``, the empty members (-inf) among them
    unless all of them are empty."""
    chosen = []
    for ri, top in enumerate(top_k_members(scores_nr, k)):
        if empty == "exclude":
            segmenting = top[np.isfinite(scores_nr[top, ri])]
            top = segmenting if segmenting.size else top
        chosen.append(top)
    return chosen


def ensemble_probabilities(
    probs_nrdhw: np.ndarray,
    method: str = "mean",
    threshold: float | Sequence[float] = 0.5,
    top_k: int | None = None,
    confidence_empty: str = DEFAULT_CONFIDENCE_EMPTY,
) -> np.ndarray:
    """Combine members into one score per voxel and region, before thresholding.

    Returns:
        float32 (R, D, H, W). For ``mean`` and ``confidence`` the averaged probability;
        for ``vote`` the fraction of members that segment the voxel.
    """
    _check(probs_nrdhw)
    check_ensemble(method)
    if method == "argmax":  # one label per voxel: the regions are not separate
        raise ValueError("the argmax ensemble combines the regions: use region_masks")
    check_confidence_empty(confidence_empty)
    n, r = probs_nrdhw.shape[:2]
    if method == "mean":
        return probs_nrdhw.mean(axis=0, dtype=np.float32)
    if method == "vote":
        thr = _thresholds(threshold, r)
        votes = np.zeros(probs_nrdhw.shape[1:], dtype=np.uint16)
        for member in probs_nrdhw:
            votes += member > thr
        return votes.astype(np.float32) / n
    k = math.ceil(n / 2) if top_k is None else int(top_k)  # confidence
    check_top_k(k, n)
    scores = confidence_scores(probs_nrdhw, threshold, confidence_empty)
    chosen = confidence_members(scores, k, confidence_empty)
    return np.stack([probs_nrdhw[chosen[ri], ri].mean(axis=0, dtype=np.float32) for ri in range(r)])


def ensemble(
    probs_nrdhw: np.ndarray,
    method: str = "mean",
    threshold: float | Sequence[float] = 0.5,
    top_k: int | None = None,
    confidence_empty: str = DEFAULT_CONFIDENCE_EMPTY,
) -> np.ndarray:
    """Region masks of a fold ensemble.

    Args:
        probs_nrdhw: float (N, R, D, H, W) member probabilities in [0, 1].
        method: ``mean``, ``vote`` or ``confidence`` (see the module docstring).
        threshold: one threshold, or one per region (R values).
        top_k: members averaged by ``confidence``; default ceil(N/2).
        confidence_empty: ``confidence``'s score of a member that segments nothing,
            ``zero``, ``exclude`` or ``background`` (module docstring).

    Returns:
        bool (R, D, H, W).
    """
    combined = ensemble_probabilities(probs_nrdhw, method, threshold, top_k, confidence_empty)
    if method == "vote":
        # Strict majority: more than N/2 members, so an even split is rejected.
        return combined > 0.5
    return combined > _thresholds(threshold, probs_nrdhw.shape[1])


def region_masks(
    probs: Mapping[str, Sequence[np.ndarray]],
    region_names: Sequence[str],
    method: str,
    thresholds: Mapping[str, float],
    top_k: int | None = None,
    cache: dict[tuple, np.ndarray] | None = None,
    confidence_empty: str = DEFAULT_CONFIDENCE_EMPTY,
    scheme_regions: Mapping[str, frozenset[int]] | None = None,
) -> np.ndarray:
    """The ensemble's region masks from each member's probabilities per region: what the
    engine segments with and what ``bratskit tune`` scores.

    Args:
        probs: region -> float (d, h, w) probabilities of each member that predicts it.
        region_names: the label scheme's regions, the output order; a region no member
            predicts (the resection cavity) stays empty.
        method, top_k, confidence_empty: as for :func:`ensemble`.
        thresholds: region -> probability threshold
            (:func:`submission.predict.options.region_thresholds`).
        cache: kept across calls on the same ``probs``, it reuses each region's mask for
            the same method, top-k, confidence rule and threshold (tune scores every
            combination of per-region thresholds on one case).
        scheme_regions: region -> the labels it is the union of
            (:attr:`submission.brats.LabelScheme.regions`); ``argmax`` needs it.

    Returns:
        bool (R, d, h, w) in ``region_names`` order.
    """
    shape = next(iter(probs.values()))[0].shape
    if method == "argmax":
        if scheme_regions is None:
            raise ValueError("the argmax ensemble needs the label scheme's regions")
        means = {r: np.mean(np.stack(p), axis=0) for r, p in probs.items()}
        return argmax_masks(means, region_names, scheme_regions)
    out = np.zeros((len(region_names), *shape), dtype=bool)
    for i, region in enumerate(region_names):
        if region not in probs:
            continue
        rule = confidence_empty if method == "confidence" else None  # mean, vote: no rule
        key = (method, top_k, rule, region, thresholds[region])
        mask = None if cache is None else cache.get(key)
        if mask is None:
            stacked = np.stack(probs[region])[:, None]
            mask = ensemble(stacked, method, thresholds[region], top_k, confidence_empty)[0]
            if cache is not None:
                cache[key] = mask
        out[i] = mask
    return out


def argmax_masks(
    probs: Mapping[str, np.ndarray],
    region_names: Sequence[str],
    scheme_regions: Mapping[str, frozenset[int]],
) -> np.ndarray:
    """Region masks of the most probable label per voxel, from region probabilities.

    A label-based member's region probability is the sum of its labels' probabilities
    (:mod:`submission.predict.pipelines`), so each label's probability is its innermost
    region's minus the regions directly inside that one (ED = WT - TC, NCR = TC - ET,
    ET = ET) and background's is 1 minus the outermost regions'. The argmax of those is
    the label nnU-Net's predictor writes (its ``argmax`` over softmax outputs); ties go
    to the lower label index, background first, as numpy's and torch's argmax do.

    Args:
        probs: region -> float (d, h, w) probabilities (the members' mean); a region of
            ``region_names`` missing here has probability 0.
        region_names: the output order.
        scheme_regions: region -> its labels; every region must own exactly one label
            that none of its sub-regions holds (the glioma schemes, MEN-RT).

    Raises:
        ValueError: a region owns no or several labels of its own.

    Returns:
        bool (R, d, h, w) in ``region_names`` order.
    """
    shape = next(iter(probs.values())).shape
    own: dict[str, int] = {}
    inside: dict[str, list[str]] = {}
    for region, labels in scheme_regions.items():
        subs = [r for r, other in scheme_regions.items() if other < labels]
        children = [r for r in subs if not any(scheme_regions[r] < scheme_regions[s] for s in subs)]
        rest = labels - frozenset().union(*(scheme_regions[r] for r in subs))
        if len(rest) != 1:
            raise ValueError(
                f"the argmax ensemble needs one label per region; {region} owns {sorted(rest)}"
            )
        own[region], inside[region] = next(iter(rest)), children
    zero = np.zeros(shape, dtype=np.float32)
    order = sorted(own, key=own.get)  # label order: nnU-Net's channel order is ascending
    label_probs = [1.0 - sum((probs.get(r, zero) for r in _outermost(scheme_regions)), zero)]
    for region in order:
        sub = sum((probs.get(c, zero) for c in inside[region]), zero)
        label_probs.append(probs.get(region, zero) - sub)
    winner = np.argmax(np.stack(label_probs), axis=0)  # 0 background, i + 1 order[i]
    label_of = np.array([0] + [own[r] for r in order])[winner]
    return np.stack([np.isin(label_of, sorted(scheme_regions[r])) for r in region_names]).astype(
        bool
    )


def _outermost(scheme_regions: Mapping[str, frozenset[int]]) -> list[str]:
    """The regions no other region contains."""
    return [
        r
        for r, labels in scheme_regions.items()
        if not any(labels < other for other in scheme_regions.values())
    ]
