"""Fold ensembles over N members' per-region probabilities (N, R, D, H, W).

A voxel belongs to a region when its probability is strictly greater than the
region's threshold, in every method, so the three agree on what "segments" means.

    ``mean``        regression voting ensemble (paper 002, section 2.5): average the
                    members' probabilities, then threshold.
    ``vote``        classification voting ensemble (paper 002, section 2.5): binarise each
                    member, keep voxels where more than N/2 members agree.
    ``confidence``  confidence-based top-k (paper 004, section 3.2): per region, a member's
                    confidence is its mean probability over the voxels it segments (0 when
                    it segments nothing); the k most confident members are averaged with
                    equal weights, then thresholded. k = ceil(N/2) by default ("top N/2").
                    Ties are broken by member order: the earlier member wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from submission.predict.options import check_ensemble, check_thresholds, check_top_k


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
    probs_nrdhw: np.ndarray, threshold: float | Sequence[float] = 0.5
) -> np.ndarray:
    """Paper 004 (3.2) confidence of each member for each region.

    Returns:
        float64 (N, R): mean probability over the voxels the member segments
        (probability > threshold), 0 where it segments none.
    """
    _check(probs_nrdhw)
    thr = _thresholds(threshold, probs_nrdhw.shape[1])
    n, r = probs_nrdhw.shape[:2]
    scores = np.zeros((n, r))
    for i in range(n):
        segmented = probs_nrdhw[i] > thr
        counts = segmented.reshape(r, -1).sum(axis=1)
        sums = np.where(segmented, probs_nrdhw[i], 0).reshape(r, -1).sum(axis=1, dtype=np.float64)
        scores[i] = np.divide(sums, counts, out=np.zeros(r), where=counts > 0)
    return scores


def top_k_members(scores_nr: np.ndarray, k: int) -> np.ndarray:
    """Indices (R, k) of the k most confident members per region; ties go to the earlier one."""
    # A stable sort on the negated score keeps member order among equal scores.
    return np.argsort(-scores_nr, axis=0, kind="stable")[:k].T


def ensemble_probabilities(
    probs_nrdhw: np.ndarray,
    method: str = "mean",
    threshold: float | Sequence[float] = 0.5,
    top_k: int | None = None,
) -> np.ndarray:
    """Combine members into one score per voxel and region, before thresholding.

    Returns:
        float32 (R, D, H, W). For ``mean`` and ``confidence`` the averaged probability;
        for ``vote`` the fraction of members that segment the voxel.
    """
    _check(probs_nrdhw)
    check_ensemble(method)
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
    chosen = top_k_members(confidence_scores(probs_nrdhw, threshold), k)
    return np.stack([probs_nrdhw[chosen[ri], ri].mean(axis=0, dtype=np.float32) for ri in range(r)])


def ensemble(
    probs_nrdhw: np.ndarray,
    method: str = "mean",
    threshold: float | Sequence[float] = 0.5,
    top_k: int | None = None,
) -> np.ndarray:
    """Region masks of a fold ensemble.

    Args:
        probs_nrdhw: float (N, R, D, H, W) member probabilities in [0, 1].
        method: ``mean``, ``vote`` or ``confidence`` (see the module docstring).
        threshold: one threshold, or one per region (R values).
        top_k: members averaged by ``confidence``; default ceil(N/2).

    Returns:
        bool (R, D, H, W).
    """
    combined = ensemble_probabilities(probs_nrdhw, method, threshold, top_k)
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
) -> np.ndarray:
    """The ensemble's region masks from each member's probabilities per region: what the
    engine segments with and what ``bratskit tune`` scores.

    Args:
        probs: region -> float (d, h, w) probabilities of each member that predicts it.
        region_names: the label scheme's regions, the output order; a region no member
            predicts (the resection cavity) stays empty.
        method, top_k: as for :func:`ensemble`.
        thresholds: region -> probability threshold
            (:func:`submission.predict.options.region_thresholds`).
        cache: kept across calls on the same ``probs``, it reuses each region's mask for
            the same method, top-k and threshold (tune scores every combination of
            per-region thresholds on one case).

    Returns:
        bool (R, d, h, w) in ``region_names`` order.
    """
    shape = next(iter(probs.values()))[0].shape
    out = np.zeros((len(region_names), *shape), dtype=bool)
    for i, region in enumerate(region_names):
        if region not in probs:
            continue
        key = (method, top_k, region, thresholds[region])
        mask = None if cache is None else cache.get(key)
        if mask is None:
            stacked = np.stack(probs[region])[:, None]
            mask = ensemble(stacked, method, thresholds[region], top_k)[0]
            if cache is not None:
                cache[key] = mask
        out[i] = mask
    return out
