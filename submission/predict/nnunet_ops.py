"""nnU-Net v2's cropping, normalisation, sliding window and post-processing, with numpy and
scipy (resampling: :mod:`submission.predict.nnunet_resampling`).

The runtime image has neither torch nor nnunetv2, so the steps of nnU-Net v2 (2.8.1)
around its network are rewritten here, each reproducing the function its docstring cites
(paths relative to the ``nnunetv2`` package) call for call: the same scipy routines with
the same arguments, the same dtypes and the same memory layout where the result depends
on it (a float32 mean's summation order does). The tests compare every function with the
real one (``tests/submission/predict/test_nnunet_pipeline.py``).

Arrays here are in nnU-Net's axis order: SimpleITK's (z, y, x), then the plans'
``transpose_forward``; ``data_c3d`` is (C, a0, a1, a2) in that order.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

#: Divisor floor of the z-score: ``ZScoreNormalization.run`` (float32 target dtype).
ZSCORE_EPS = 1e-8

Bbox = list[list[int]]
Forward = Callable[[np.ndarray], np.ndarray]
"""float32 (1, C, *window) in the network's axes -> float32 logits (1, K, *window)."""

#: ``compute_gaussian(..., value_scaling_factor=10)`` in nnU-Net's predictor.
GAUSSIAN_PEAK = 10.0


def create_nonzero_mask(data_c3d: np.ndarray) -> np.ndarray:
    """``preprocessing/cropping/cropping.py``: ``create_nonzero_mask``: the union of every
    channel's non-zero voxels, holes filled.

    scipy's ``binary_fill_holes`` (default 6-connected structure) keeps what a dilation from
    outside the array through the background cannot reach; that is exactly the background
    not 6-connected to a face of the array, found here with one ``ndimage.label`` (same
    structure), four times faster than the iterated dilation and equal voxel for voxel.
    """
    mask = data_c3d[0] != 0
    for c in range(1, data_c3d.shape[0]):
        mask |= data_c3d[c] != 0
    background, count = ndimage.label(~mask)
    if count == 0:
        return mask
    faces = (background[0], background[-1], background[:, 0], background[:, -1])
    outside = np.zeros(count + 1, dtype=bool)
    for face in (*faces, background[:, :, 0], background[:, :, -1]):
        outside[np.unique(face)] = True
    outside[0] = False
    return ~outside[background]


def get_bbox_from_mask(mask_3d: np.ndarray) -> Bbox:
    """``acvl_utils/cropping_and_padding/bounding_boxes.py``: ``get_bbox_from_mask``:
    half-open [start, stop) per axis; an empty mask gives the whole array."""
    bbox = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask_3d.any(axis=other))
        if hits.size:
            bbox.append([int(hits[0]), int(hits[-1]) + 1])
        else:
            bbox.append([0, int(mask_3d.shape[axis])])
    return bbox


def bbox_slices(bbox: Bbox) -> tuple[slice, ...]:
    """``bounding_box_to_slice``."""
    return tuple(slice(a, b) for a, b in bbox)


def crop_to_nonzero(data_c3d: np.ndarray) -> tuple[np.ndarray, np.ndarray, Bbox]:
    """``preprocessing/cropping/cropping.py``: ``crop_to_nonzero`` without a segmentation.

    Returns:
        (the cropped view of ``data_c3d``, bool mask of the filled non-zero region in the
        crop (nnU-Net's ``seg >= 0``; its seg is 0 inside, -1 outside), the bbox).
    """
    mask = create_nonzero_mask(data_c3d)
    bbox = get_bbox_from_mask(mask)
    slicer = bbox_slices(bbox)
    return data_c3d[(slice(None), *slicer)], mask[slicer], bbox


def zscore_(image_3d: np.ndarray, mask_3d: np.ndarray | None) -> None:
    """``preprocessing/normalization/default_normalization_schemes.py``:
    ``ZScoreNormalization.run`` on a float32 channel, in place.

    With ``use_mask_for_norm`` (``mask_3d`` given: nnU-Net's ``seg >= 0``) the mean and std
    are the mask's and only the mask changes (outside it every channel is 0 by construction
    of the mask, and stays 0); without, the whole crop. The std is floored at 1e-8. The
    float32 statistics are numpy's, over the same arrays in the same memory layout as
    nnU-Net's, so they are bit-identical.
    """
    if mask_3d is not None:
        if not mask_3d.any():  # nnU-Net: NaN statistics of nothing, assigned to nothing
            return
        mean = image_3d[mask_3d].mean()
        std = image_3d[mask_3d].std()
        image_3d[mask_3d] = (image_3d[mask_3d] - mean) / (max(std, ZSCORE_EPS))
    else:
        mean = image_3d.mean()
        std = image_3d.std()
        image_3d -= mean
        image_3d /= max(std, ZSCORE_EPS)


def pad_to_patch(data_c3d: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, tuple]:
    """``acvl_utils/cropping_and_padding/padding.py``: ``pad_nd_image(data, patch,
    'constant', {'value': 0}, return_slicer=True)``: zeros to at least the patch on each
    axis, the content centred (the odd voxel after it).

    Returns:
        (padded array, or ``data_c3d`` itself when no axis is short; the spatial slices
        that remove the padding).
    """
    shape = data_c3d.shape[1:]
    diff = [max(int(p), s) - s for p, s in zip(patch, shape)]
    pads = [(d // 2, d // 2 + d % 2) for d in diff]
    revert = tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, shape))
    if not any(diff):
        return data_c3d, revert
    return np.pad(data_c3d, [(0, 0), *pads], mode="constant", constant_values=0), revert


@functools.lru_cache(maxsize=4)
def compute_gaussian(patch: tuple[int, ...], sigma_scale: float = 0.125) -> np.ndarray:
    """``inference/sliding_window_prediction.py``: ``compute_gaussian(patch, sigma_scale,
    value_scaling_factor=10, dtype=torch.float16)``: a unit impulse at the patch centre
    (``i // 2``) blurred with sigma ``sigma_scale * patch`` (scipy, float64), scaled to a
    peak of 10, cast to float16 (through float32, as torch casts doubles), its zeros
    replaced by its smallest non-zero value. Read-only float16 array of ``patch``'s shape.
    """
    impulse = np.zeros(patch)
    impulse[tuple(i // 2 for i in patch)] = 1
    gaussian = ndimage.gaussian_filter(
        impulse, [i * sigma_scale for i in patch], 0, mode="constant", cval=0
    )
    gaussian /= np.max(gaussian) / GAUSSIAN_PEAK
    gaussian = gaussian.astype(np.float32).astype(np.float16)
    zero = gaussian == 0
    gaussian[zero] = np.min(gaussian[~zero])
    gaussian.flags.writeable = False
    return gaussian


def compute_steps(image_size: Sequence[int], patch: Sequence[int], step: float) -> list[list[int]]:
    """``inference/sliding_window_prediction.py``: ``compute_steps_for_sliding_window``:
    per axis, the fewest window starts at most ``step * patch`` apart that cover the image,
    spread evenly (numpy's half-to-even rounding). ``image_size`` >= ``patch``."""
    steps = []
    for size, tile in zip(image_size, patch):
        count = int(np.ceil((size - tile) / (tile * step))) + 1
        width = (size - tile) / (count - 1) if count > 1 else 99999999999
        steps.append([int(np.round(width * i)) for i in range(count)])
    return steps


def _forward(forward: Forward, window_ncxyz: np.ndarray) -> np.ndarray:
    out = np.asarray(forward(window_ncxyz), dtype=np.float32)
    if out.ndim != 5 or out.shape[0] != 1 or out.shape[2:] != window_ncxyz.shape[2:]:
        raise ValueError(
            f"an nnU-Net member returned shape {out.shape} for input {window_ncxyz.shape}; "
            "expected (1, K, *input spatial): the network's logits"
        )
    return out


def _window_logits(forward: Forward, window: np.ndarray, flips) -> np.ndarray:
    """``_internal_maybe_mirror_and_predict``: float32 (K, *patch) logits of one window;
    with ``flips`` (every non-empty subset of the mirror axes) the mean of the plain pass
    and each mirrored pass mirrored back."""
    prediction = _forward(forward, window)
    if flips:
        for axes in flips:
            flipped = np.ascontiguousarray(np.flip(window, axes))
            prediction += np.flip(_forward(forward, flipped), axes)
        prediction /= len(flips) + 1
    return prediction[0]


def predict_logits(
    data_c3d: np.ndarray,
    forwards: Sequence[Forward],
    patch: Sequence[int],
    step: float = 0.5,
    gaussian: bool = True,
    sigma_scale: float = 0.125,
    mirror_axes: Sequence[int] = (),
) -> np.ndarray:
    """``inference/predict_from_raw_data.py``: ``predict_logits_from_preprocessed_data`` on
    a preprocessed float32 (C, *spatial) array in the network's axes.

    Per fold (``predict_sliding_window_return_logits``): zero-pad to at least the patch,
    windows at :func:`compute_steps` in C order, each window's logits times the Gaussian
    added into float16 sums, divided by the float16 sum of the weights, the padding cut
    off. The folds' float16 logits are summed and divided by their number.

    Args:
        mirror_axes: spatial axes to mirror over (TTA); empty: none.

    Returns:
        float16 (K, *spatial) logits.

    Raises:
        RuntimeError: float16 overflow (inf), where nnU-Net raises too.
    """
    if not forwards:
        raise ValueError("an nnU-Net pipeline needs at least one member (fold)")
    patch = tuple(int(p) for p in patch)
    padded, revert = pad_to_patch(data_c3d, patch)
    shape = padded.shape[1:]
    slicers = [
        tuple(slice(s, s + t) for s, t in zip(starts, patch))
        for starts in itertools.product(*compute_steps(shape, patch, step))
    ]
    axes = [a + 2 for a in mirror_axes]
    flips = [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
    weight16 = compute_gaussian(patch, sigma_scale) if gaussian else 1
    weight32 = weight16.astype(np.float32) if gaussian else None
    weights = np.zeros(shape, dtype=np.float16)  # nnU-Net's n_predictions
    for sl in slicers:
        weights[sl] += weight16
    total = None
    for forward in forwards:
        logits = None
        for sl in slicers:
            window = np.ascontiguousarray(padded[(slice(None), *sl)][None])
            prediction = _window_logits(forward, window, flips)
            if weight32 is not None:
                prediction *= weight32
            if logits is None:
                logits = np.zeros((prediction.shape[0], *shape), dtype=np.float16)
            logits[(slice(None), *sl)] += prediction
        np.divide(logits, weights, out=logits)
        if np.isinf(logits).any():
            raise RuntimeError(
                "nnU-Net's float16 accumulation overflowed (inf logits), as nnU-Net's own "
                "predictor would: this model's logits are too large to run faithfully"
            )
        logits = logits[(slice(None), *revert)]
        if total is None:
            total = logits
        else:
            total += logits
    if len(forwards) > 1:
        total /= len(forwards)
    return total


def apply_nonlinearity_(logits: np.ndarray, nonlinearity: str) -> np.ndarray:
    """``utilities/label_handling/label_handling.py``: ``LabelManager.apply_inference_nonlin``
    on float32 (K, ...) logits, in place: ``sigmoid`` (region-based models) or softmax
    over the channels."""
    if nonlinearity == "sigmoid":
        with np.errstate(over="ignore"):
            np.negative(logits, out=logits)
            np.exp(logits, out=logits)
        logits += 1
        np.reciprocal(logits, out=logits)
    else:
        logits -= logits.max(axis=0)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=0)
    return logits


def remove_all_but_largest_component(labels: np.ndarray, union: Sequence[int]) -> np.ndarray:
    """``postprocessing/remove_connected_components.py``:
    ``remove_all_but_largest_component_from_segmentation`` (background 0): the voxels of
    the ``union`` labels outside the largest 26-connected component of their union (every
    component of that size is kept; acvl_utils labels with skimage's full connectivity)
    become 0. Returns a new label map."""
    mask = np.isin(labels, np.asarray(union))
    out = np.array(labels, copy=True)
    component, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count:
        sizes = np.bincount(component.ravel())
        sizes[0] = 0
        out[mask & ~(sizes == sizes.max())[component]] = 0
    return out
