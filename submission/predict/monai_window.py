"""The sliding window of the ``monai`` pipeline (:mod:`submission.predict.monai_pipeline`),
numpy only: MONAI's ``sliding_window_inference`` (``monai/inferers/utils.py``: window grid
from ``_get_scan_interval`` and ``monai.data.utils.dense_patch_slices``, weights from
``compute_importance_map``, padding, weighted sum divided by the summed weights) of one
network given as a numpy forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from submission.predict.monai_pipeline import MonaiPipeline

#: MONAI's ``PytorchPadMode`` -> :func:`numpy.pad` mode (both reflect without the edge).
PADDING_MODES = dict(constant="constant", reflect="reflect", replicate="edge", circular="wrap")
#: ``compute_importance_map``'s floor for the Gaussian weights.
MIN_WEIGHT = 1e-3

Forward = Callable[[np.ndarray], np.ndarray]


def scan_interval(image_size, roi, overlap: float) -> tuple[int, ...]:
    """``monai.inferers.utils._get_scan_interval``: ``int(roi * (1 - overlap))`` (at
    least 1), or the roi itself where it equals the image."""
    return tuple(r if r == n else max(int(r * (1 - overlap)), 1) for n, r in zip(image_size, roi))


def window_starts(image_size, roi, interval) -> list[tuple[int, ...]]:
    """``monai.data.utils.dense_patch_slices``' window starts, first axis outermost: per
    axis ``k * interval`` up to the first that reaches the end, the last shifted back
    inside the image."""
    per_axis = []
    for n, r, step in zip(image_size, roi, interval):
        count = next((d + 1 for d in range(math.ceil(n / step)) if d * step + r >= n), 1)
        per_axis.append([k * step - max(k * step + r - n, 0) for k in range(count)])
    grid = np.meshgrid(*per_axis, indexing="ij")
    return [tuple(int(v) for v in s) for s in np.stack([g.ravel() for g in grid], axis=1)]


def importance_map(roi, mode: str, sigma_scale: float) -> np.ndarray:
    """``monai.data.utils.compute_importance_map`` in float32: ones, or the product of 1-D
    Gaussians ``exp(x^2 / (-2 sigma^2))`` on ``x = -(n-1)/2 .. (n-1)/2`` with
    ``sigma = sigma_scale * n`` (peak 1, not normalised); then every weight below
    ``max(min weight, 1e-3)`` is raised to it."""
    if mode == "constant":
        weights = np.ones(tuple(roi), dtype=np.float32)
    else:
        weights = None
        for n in roi:
            x = np.arange(n, dtype=np.float32) - np.float32((n - 1) / 2.0)
            g = np.exp(x**2 / np.float32(-2 * (n * sigma_scale) ** 2)).astype(np.float32)
            weights = g if weights is None else weights[..., None] * g
    floor = max(float(weights.min()), MIN_WEIGHT)
    return np.maximum(weights, np.float32(floor)).astype(np.float32)


def sliding_window(image_cxyz: np.ndarray, forward: Forward, pipeline: MonaiPipeline):
    """``monai.inferers.utils.sliding_window_inference`` of one network: float32 logits
    (K, *image). Padding to the roi where smaller (``diff // 2`` before, the rest after,
    ``F.pad``'s ``padding_mode`` and ``cval``), windows at :func:`window_starts`, outputs
    times :func:`importance_map` summed and divided by the summed weights, padding cut."""
    roi = tuple(pipeline.roi)
    size = image_cxyz.shape[1:]
    pad = [(0, 0)] + [
        (max(r - n, 0) // 2, max(r - n, 0) - max(r - n, 0) // 2) for n, r in zip(size, roi)
    ]
    padded = image_cxyz
    if any(p for pair in pad for p in pair):
        mode = PADDING_MODES[pipeline.padding_mode]
        extra = {"constant_values": pipeline.cval} if mode == "constant" else {}
        padded = np.pad(image_cxyz, pad, mode=mode, **extra).astype(np.float32, copy=False)
    full = padded.shape[1:]
    weights = importance_map(roi, pipeline.mode, pipeline.sigma_scale)
    starts = window_starts(full, roi, scan_interval(full, roi, pipeline.overlap))
    out = count = None
    for start in starts:
        box = tuple(slice(s, s + r) for s, r in zip(start, roi))
        window = np.ascontiguousarray(padded[(slice(None), *box)][None], dtype=np.float32)
        logits = np.asarray(forward(window), dtype=np.float32)
        if logits.ndim != 5 or logits.shape[0] != 1 or logits.shape[2:] != roi:
            raise ValueError(
                f"a network returned shape {logits.shape} for a window of {window.shape}; "
                f"expected (1, K, {', '.join(map(str, roi))})"
            )
        if out is None:
            out = np.zeros((logits.shape[1], *full), dtype=np.float32)
            count = np.zeros(full, dtype=np.float32)
            for s in starts:
                count[tuple(slice(a, a + r) for a, r in zip(s, roi))] += weights
        out[(slice(None), *box)] += logits[0] * weights
    out /= count
    crop = tuple(slice(before, before + n) for (before, _), n in zip(pad[1:], size))
    return out[(slice(None), *crop)]
