"""Dense prediction of a preprocessed volume with any model, full-volume or sliding window.

A *forward* is any callable ``forward(batch_ncdhw) -> probs_nrdhw``: float32 input
(N, C, d, h, w) in, float32 per-region probabilities (N, R, d, h, w) out, the same spatial
size as the input. An ONNX Runtime session, a TorchScript module or an eager torch model
is wrapped into one by its caller; this module never imports torch.

A model admits only some input sizes (:class:`SizeRule`): each axis a multiple of the
network's total stride, and possibly one exact size (a net whose last axis must be 108).

    full volume     the image is zero-padded to the smallest admissible size, one forward
                    call, the padding removed (:func:`predict_volume` without a patch).
    sliding window  overlapping patches blended with a Gaussian importance map, as nnU-Net
                    does (:func:`sliding_window`), so patch borders, where the receptive
                    field is truncated, count less than patch centres.
    mirroring TTA   the mean over the 8 flips of the three spatial axes (:func:`flip_tta`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from submission.predict.options import check_overlap

Forward = Callable[[np.ndarray], np.ndarray]
"""``forward(batch_ncdhw float32) -> probs_nrdhw float32`` with the input's spatial size."""

Pads = tuple[tuple[int, int], ...]
"""(before, after) zeros added on each spatial axis by :func:`pad_to`."""


@dataclass(frozen=True)
class SizeRule:
    """Input sizes a model admits, per spatial axis (D, H, W).

    Attributes:
        divisors: each axis must be a multiple of this (the network's total stride).
        fixed: an exact size the axis must have, or None. It wins over the divisor.
    """

    divisors: tuple[int, int, int] = (1, 1, 1)
    fixed: tuple[int | None, int | None, int | None] = (None, None, None)

    def __post_init__(self) -> None:
        if len(self.divisors) != 3 or any(int(d) < 1 for d in self.divisors):
            raise ValueError(f"divisors must be three integers >= 1, got {self.divisors}")
        if len(self.fixed) != 3 or any(f is not None and int(f) < 1 for f in self.fixed):
            raise ValueError(f"fixed must be three sizes >= 1 or None, got {self.fixed}")

    def fit(self, shape_dhw: Sequence[int]) -> tuple[int, int, int]:
        """Smallest admissible size >= ``shape_dhw`` on each axis.

        A fixed axis returns its fixed size even when the shape is larger; callers that
        pad to the result must check (:func:`pad_to` refuses to shrink).
        """
        _check_spatial(shape_dhw, "shape")
        return tuple(
            int(f) if f is not None else -(-int(n) // int(d)) * int(d)
            for n, d, f in zip(shape_dhw, self.divisors, self.fixed)
        )

    def admits(self, shape_dhw: Sequence[int]) -> bool:
        """Whether the model accepts an input of spatial size ``shape_dhw``."""
        _check_spatial(shape_dhw, "shape")
        return all(
            int(n) == int(f) if f is not None else int(n) % int(d) == 0
            for n, d, f in zip(shape_dhw, self.divisors, self.fixed)
        )

    def problem(self, shape_dhw: Sequence[int]) -> str | None:
        """What is wrong with an input of spatial size ``shape_dhw``, or None if admitted.

        The text completes "<model> needs ...", e.g. "every spatial size divisible by 8,
        got (96, 90, 64): crop or pad to a multiple of 8".
        """
        shape = tuple(int(n) for n in shape_dhw)
        for axis, (size, want) in enumerate(zip(shape, self.fixed)):
            if want is not None and size != want:
                return (
                    f"spatial axis {axis} ({'DHW'[axis]}) of size exactly {want}, got {shape}: "
                    f"crop or pad that axis to {want}"
                )
        if self.admits(shape):
            return None
        if len(set(self.divisors)) == 1:
            d = self.divisors[0]
            return (
                f"every spatial size divisible by {d}, got {shape}: "
                f"crop or pad to a multiple of {d}"
            )
        return (
            f"spatial sizes (D, H, W) divisible by {self.divisors}, got {shape}: "
            "crop or pad each axis to a multiple of its divisor"
        )


def _check_spatial(shape_dhw: Sequence[int | None], what: str) -> None:
    if len(shape_dhw) != 3:
        raise ValueError(f"{what} must have 3 spatial axes (D, H, W), got {tuple(shape_dhw)}")


def _check_image(image_cdhw: np.ndarray) -> None:
    if np.ndim(image_cdhw) != 4:
        raise ValueError(
            f"expected an image (C, D, H, W), got an array of shape {np.shape(image_cdhw)}"
        )


def pad_to(image_cdhw: np.ndarray, size_dhw: Sequence[int]) -> tuple[np.ndarray, Pads]:
    """Zero-pad the last three axes up to ``size_dhw``, ``total // 2`` zeros before.

    Leading axes (channels, regions, ...) are kept, so any (..., D, H, W) array works.

    Returns:
        The padded array (same dtype; the input itself when nothing is added) and the
        (before, after) pads per spatial axis, for :func:`unpad`.

    Raises:
        ValueError: a target size is smaller than the array on that axis.
    """
    _check_spatial(size_dhw, "size")
    shape = image_cdhw.shape[-3:]
    if any(int(s) < n for n, s in zip(shape, size_dhw)):
        raise ValueError(f"cannot pad spatial shape {shape} to the smaller {tuple(size_dhw)}")
    pads = tuple((int(s - n) // 2, int(s - n) - int(s - n) // 2) for n, s in zip(shape, size_dhw))
    if not any(a or b for a, b in pads):
        return image_cdhw, pads
    return np.pad(image_cdhw, ((0, 0),) * (image_cdhw.ndim - 3) + pads), pads


def unpad(array_xdhw: np.ndarray, pads: Pads) -> np.ndarray:
    """Remove :func:`pad_to`'s padding from the last three axes (a view)."""
    shape = array_xdhw.shape[-3:]
    window = tuple(slice(a, n - b) for n, (a, b) in zip(shape, pads))
    return array_xdhw[(...,) + window]


def gaussian_importance(patch_dhw: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """nnU-Net's Gaussian importance map for blending patches.

    A separable Gaussian centred on the patch centre ((n - 1) / 2 on each axis, so the
    map is mirror-symmetric for odd and even sizes) with sigma = ``sigma_scale`` * patch
    size, scaled to a maximum of 1; values below the smallest non-zero one (float32
    underflow far from the centre) are raised to it, so no voxel has zero weight.

    Returns:
        float32 (d, h, w), read-only (the array is cached and shared).
    """
    _check_spatial(patch_dhw, "patch")
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
    return _gaussian(tuple(int(p) for p in patch_dhw), float(sigma_scale))


@functools.lru_cache(maxsize=16)
def _gaussian(patch_dhw: tuple[int, int, int], sigma_scale: float) -> np.ndarray:
    if any(p < 1 for p in patch_dhw):
        raise ValueError(f"patch sizes must be >= 1, got {patch_dhw}")
    profiles = []
    for n in patch_dhw:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        profiles.append(np.exp(-0.5 * (x / (n * sigma_scale)) ** 2))
    weights = np.einsum("i,j,k->ijk", *profiles)
    weights = (weights / weights.max()).astype(np.float32)
    positive = weights[weights > 0]
    weights = np.maximum(weights, positive.min())
    weights.flags.writeable = False
    return weights


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of windows of ``patch`` voxels covering ``[0, size)``.

    The step is ``round(patch * (1 - overlap))`` (at least 1); the last window ends
    exactly at ``size`` (it may overlap its neighbour more). ``size <= patch`` gives [0].
    """
    if patch < 1 or size < 1:
        raise ValueError(f"size and patch must be >= 1, got size={size}, patch={patch}")
    check_overlap(overlap)
    if size <= patch:
        return [0]
    step = max(1, round(patch * (1 - overlap)))
    starts = list(range(0, size - patch, step))
    return [*starts, size - patch]


def _run(forward: Forward, batch_ncdhw: np.ndarray) -> np.ndarray:
    """Call ``forward`` and check its output is (N, R, *spatial) for the input (N, C, ...)."""
    out = np.asarray(forward(batch_ncdhw), dtype=np.float32)
    n, spatial = batch_ncdhw.shape[0], batch_ncdhw.shape[2:]
    if out.ndim != 5 or out.shape[0] != n or out.shape[2:] != spatial:
        raise ValueError(
            f"forward returned shape {out.shape} for input {batch_ncdhw.shape}; "
            f"expected (N, R, D, H, W) = ({n}, R, {', '.join(map(str, spatial))})"
        )
    return out


def sliding_window(
    image_cdhw: np.ndarray,
    forward: Forward,
    patch_dhw: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 1,
    gaussian: bool = True,
) -> np.ndarray:
    """Predict a volume patch by patch and blend the overlapping outputs.

    The image is zero-padded so every axis is at least the patch, windows
    (:func:`window_starts` per axis, C order) go to ``forward`` ``batch_size`` at a time,
    and each voxel gets the weighted mean of the windows covering it, weighted by
    :func:`gaussian_importance` (``gaussian``) or uniformly. Memory beyond one batch: two
    float32 accumulators of the padded volume's size.

    Args:
        image_cdhw: (C, D, H, W), any real dtype; the forward gets float32.

    Returns:
        float32 probs_rdhw (R, D, H, W) on the image's grid.
    """
    _check_image(image_cdhw)
    _check_spatial(patch_dhw, "patch")
    patch = tuple(int(p) for p in patch_dhw)
    if any(p < 1 for p in patch) or batch_size < 1:
        raise ValueError(f"patch sizes and batch_size must be >= 1, got {patch}, {batch_size}")
    image = np.asarray(image_cdhw, dtype=np.float32)
    padded, pads = pad_to(image, tuple(max(n, p) for n, p in zip(image.shape[1:], patch)))
    space = padded.shape[1:]
    weights = gaussian_importance(patch) if gaussian else np.ones(patch, np.float32)
    starts = list(itertools.product(*(window_starts(n, p, overlap) for n, p in zip(space, patch))))
    acc: np.ndarray | None = None
    weight_sum = np.zeros(space, dtype=np.float32)
    for i in range(0, len(starts), batch_size):
        windows = [
            tuple(slice(a, a + p) for a, p in zip(s, patch)) for s in starts[i : i + batch_size]
        ]
        batch = np.stack([padded[(slice(None),) + w] for w in windows])
        out = _run(forward, batch)
        if acc is None:
            acc = np.zeros((out.shape[1], *space), dtype=np.float32)
        elif out.shape[1] != acc.shape[0]:
            raise ValueError(f"forward returned {out.shape[1]} regions, earlier {acc.shape[0]}")
        for window, probs_rdhw in zip(windows, out):
            acc[(slice(None),) + window] += probs_rdhw * weights
            weight_sum[window] += weights
    assert acc is not None and weight_sum.min() > 0, "every voxel is covered by a window"
    acc /= weight_sum
    return np.ascontiguousarray(unpad(acc, pads))


def resolve_patch(
    rule: SizeRule, patch_dhw: Sequence[int | None], shape_dhw: Sequence[int]
) -> tuple[int, int, int]:
    """The patch :func:`predict_volume` slides for a requested ``patch_dhw``.

    A None axis takes ``rule.fit`` of the volume on that axis (the whole axis, or the
    fixed size); a fixed axis forces its fixed size.

    Raises:
        ValueError: an explicit size differs from a fixed one or is not admissible.
    """
    _check_spatial(patch_dhw, "patch")
    whole = rule.fit(shape_dhw)
    patch = []
    for axis, (p, f, w) in enumerate(zip(patch_dhw, rule.fixed, whole)):
        if p is not None and f is not None and int(p) != int(f):
            raise ValueError(
                f"patch {tuple(patch_dhw)} has {p} voxels on axis {axis}, but the model needs "
                f"exactly {f} there; use {f} or None on that axis"
            )
        patch.append(w if p is None else int(p))
    if not rule.admits(patch):
        raise ValueError(
            f"patch {tuple(patch)} is not admitted by the model ({rule}); "
            f"the nearest larger admissible patch is {rule.fit(patch)}"
        )
    return tuple(patch)


def training_window(
    rule: SizeRule, patch_dhw: Sequence[int], shape_dhw: Sequence[int]
) -> tuple[int | None, int, int] | None:
    """The sliding window a member trained on random ``patch_dhw`` patches predicts a
    volume of ``shape_dhw`` with: the patch along every axis where the volume (fitted to
    ``rule``) is larger, the whole axis (None) elsewhere; None when the patch covers the
    whole volume, which then goes through one call.

    A network normalised per sample (GroupNorm, InstanceNorm) sees statistics of its
    training patch; on a larger volume they shift, so nnU-Net and MONAI predict such
    networks with windows of their training patch. Measured on the demo (``tiny``, 64^3
    patches of 80 x 96 x 64 volumes): fold WT 0.721 on the whole volume, 0.788 in 64^3
    windows, from the same weights.
    """
    _check_spatial(patch_dhw, "patch")
    whole = rule.fit(shape_dhw)
    window = tuple(int(p) if int(p) < w else None for p, w in zip(patch_dhw, whole))
    return None if all(w is None for w in window) else window


def predict_volume(
    image_cdhw: np.ndarray,
    forward: Forward,
    rule: SizeRule,
    patch_dhw: Sequence[int | None] | None = None,
    overlap: float = 0.5,
    batch_size: int = 1,
) -> np.ndarray:
    """Per-region probabilities of a preprocessed image with a model of size rule ``rule``.

    Without ``patch_dhw`` the whole volume, zero-padded to ``rule.fit(shape)``, goes
    through one forward call (batch of 1). With it, :func:`sliding_window` with the patch
    from :func:`resolve_patch` (None on an axis means the whole axis).

    Args:
        image_cdhw: (C, D, H, W) preprocessed image.

    Returns:
        float32 probs_rdhw (R, D, H, W) on the image's grid.

    Raises:
        ValueError: bad image or patch, a volume larger than a fixed axis without a
            patch, or a forward returning the wrong shape.
    """
    _check_image(image_cdhw)
    shape = image_cdhw.shape[1:]
    if patch_dhw is not None:
        patch = resolve_patch(rule, patch_dhw, shape)
        return sliding_window(image_cdhw, forward, patch, overlap, batch_size)
    size = rule.fit(shape)
    if any(s < n for n, s in zip(shape, size)):
        raise ValueError(
            f"volume {shape} is larger than the model's fixed size {rule.fixed}; "
            "pass a patch_dhw to predict it with a sliding window"
        )
    padded, pads = pad_to(np.asarray(image_cdhw, dtype=np.float32), size)
    out = _run(forward, np.ascontiguousarray(padded[None]))
    return np.ascontiguousarray(unpad(out[0], pads))


def flip_tta(image_cdhw: np.ndarray, predict: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Mirroring test-time augmentation: the mean over all 8 flips of the spatial axes.

    Each flipped image goes through ``predict`` (image_cdhw -> probs_rdhw, e.g. a
    ``functools.partial`` of :func:`predict_volume`) and its output is flipped back
    before averaging.

    Returns:
        float32 probs_rdhw (R, D, H, W).
    """
    _check_image(image_cdhw)
    total: np.ndarray | None = None
    flips = [axes for k in range(4) for axes in itertools.combinations((1, 2, 3), k)]
    for axes in flips:
        probs = np.asarray(predict(np.ascontiguousarray(np.flip(image_cdhw, axes))))
        if probs.ndim != 4 or probs.shape[1:] != image_cdhw.shape[1:]:
            raise ValueError(
                f"predict returned shape {probs.shape} for image {image_cdhw.shape}; "
                "expected (R, D, H, W) on the image's grid"
            )
        probs = np.flip(probs, axes).astype(np.float32)
        if total is None:
            total = probs
        elif probs.shape != total.shape:
            raise ValueError(f"predict returned shape {probs.shape}, earlier {total.shape}")
        else:
            total += probs
    assert total is not None
    return total / np.float32(len(flips))
