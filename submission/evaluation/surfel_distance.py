"""Surfel-weighted robust Hausdorff distance, as DeepMind's ``surface-distance`` computes it.

The official BraTS 2023 lesion-wise script (Saluja et al., BraTS-2023-Metrics) scores
each lesion's HD95 with ``surface_distance.compute_surface_distances`` followed by
``compute_robust_hausdorff(..., 95)`` (CONTRACT.md section 5, "2023 lesion-wise"). That
differs from medpy's HD95 used in 2021: surface points sit on voxel corners (the
2x2x2 neighbour code of every corner), and the 95th percentile is taken over the
surface *area* (each surface element weighted by its marching-cubes area), not over
a count of border voxels. This module repeats that computation step for step so the
numbers agree with the organisers' script to floating-point rounding.

The surfel-area table is DeepMind's ``_NEIGHBOUR_CODE_TO_NORMALS`` (surface-distance,
Copyright 2018 Google Inc., Apache License 2.0), stored compactly: one
space-separated entry per neighbour code 0..255, three digits per triangle normal
holding ``8 * abs(component)``. Every component is a multiple of 1/8 and its sign
never matters (an area is the norm of the components times positive spacings), so
the encoding loses nothing the areas depend on.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

_NORMALS_X8 = """
000 111 111 220220 111 202202 111111 400222111 111 111111 202202 400222111 220220
400222111 400222111 400400 111 022022 111111 040222111 111111 004222111 111111111
111222222111 111111 022022111 202202111 111333022202 111220220 333022111220 400111222111
400111222 111 111111 022022 040111222 111111 111202202 022022111 333022111202 111111
111111111 004222111 222222111111 111220220 400222111111 022333111220 400222111 220220
040222111 040111222 040040 220220111 333202111220 111040222111 040222111 111220220
040222111111 333220111202 040222111 220220220220 220220111 111220220 220220 111 111111
111111 111220220 022022 004222111 022022111 333022111220 111111 111111111 111202202
400222111111 040222111 222222111111 202333022111 400222111 202202 004222111 111202202
202333220111 004222111 004004 111111222004 111222004 202202111 004222111111 202202202202
111202202 202333220111 004222111 111202202 202202 111111 111111111 111022022
040111222111 022022111 004222111111 022022022022 022022111 111111111 111111111111
004222111111 111111111 040222111111 111111111 022022111 111111 400222111 222111222111
333022111202 040222111 333220022111 111222004 111022022 022022 400222111111 111111111
202202111 111111 220220111 111111 111111 111 111 111111 111111 220220111 111111
202202111 111111111 400222111111 022022 111022022 111222004 333220022111 040222111
333022111202 222111222111 400222111 111111 022022111 111111111 040222111111 111111111
004222111111 111111111111 111111111 022022111 022022022022 004222111111 022022111
040111222111 111022022 111111111 111111 202202 111202202 004222111 202333220111
111202202 202202202202 004222111111 202202111 111222004 111111222004 004004 004222111
202333220111 111202202 004222111 202202 400222111 202333022111 222222111111 040222111
400222111111 111202202 111111111 111111 333022111220 022022111 004222111 022022
111220220 111111 111111 111 220220 111220220 220220111 220220220220 040222111
333220111202 040222111111 111220220 040222111 111040222111 333202111220 220220111 040040
040111222 040222111 220220 400222111 022333111220 400222111111 111220220 222222111111
004222111 111111111 111111 333022111202 022022111 111202202 111111 040111222 022022
111111 111 400111222 400111222111 333022111220 111220220 111333022202 202202111
022022111 111111 111222222111 111111111 004222111 111111 040222111 111111 022022 111
400400 400222111 400222111 220220 400222111 202202 111111 111 400222111 111111 202202
111 220220 111 111 000
"""

#: Weights of the 2x2x2 neighbourhood bits (DeepMind's ENCODE_NEIGHBOURHOOD_3D_KERNEL).
_NEIGHBOUR_KERNEL = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])
_FULL_NEIGHBOURHOOD = 0b11111111


def _normals() -> list[np.ndarray]:
    entries = _NORMALS_X8.split()
    assert len(entries) == 256, "surfel table must hold one entry per neighbour code"
    return [np.array([int(d) for d in e], dtype=np.float64).reshape(-1, 3) / 8 for e in entries]


@lru_cache(maxsize=16)
def surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Surface area (mm^2) of the marching-cubes surfels of each 2x2x2 neighbour code.

    Args:
        spacing: voxel size in mm along the three array axes.

    Returns:
        float64 (256,), indexed by neighbour code.
    """
    s0, s1, s2 = (float(s) for s in spacing)
    table = np.zeros(256)
    for code, normals in enumerate(_normals()):
        area = 0
        for normal in normals:
            # Same arithmetic, in the same order, as DeepMind's table builder.
            scaled = np.array([normal[0] * s1 * s2, normal[1] * s0 * s2, normal[2] * s0 * s1])
            area += np.linalg.norm(scaled)
        table[code] = area
    return table


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    slices = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        slices.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(slices)


def _neighbour_codes(mask: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    # One voxel of zero padding on the high side, as DeepMind crops, so that the
    # 2x2x2 correlation sees the object's far faces.
    crop = np.zeros(tuple(s.stop - s.start + 1 for s in box), dtype=np.uint8)
    crop[tuple(slice(0, -1) for _ in box)] = mask[box]
    return ndimage.correlate(crop, _NEIGHBOUR_KERNEL, mode="constant", cval=0)


def _percentile_distance(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    # DeepMind sorts (distance, area) pairs lexicographically, then walks the
    # cumulative area fraction.
    order = np.lexsort((areas, distances))
    distances, areas = distances[order], areas[order]
    cumulative = np.cumsum(areas) / np.sum(areas)
    idx = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(idx, len(distances) - 1)])


def robust_hausdorff(
    ref_dhw: np.ndarray,
    pred_dhw: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    percent: float = 95.0,
) -> float:
    """Area-weighted ``percent``-th percentile symmetric surface distance in mm.

    Equals ``compute_robust_hausdorff(compute_surface_distances(ref, pred, spacing),
    percent)`` of DeepMind's surface-distance.

    Args:
        ref_dhw: bool-like 3-D mask (the ground truth).
        pred_dhw: bool-like 3-D mask of the same shape.
        spacing: voxel size in mm along the three array axes.
        percent: percentile, 95 for HD95.

    Returns:
        The distance; ``inf`` when either mask is empty (DeepMind's convention; callers
        apply the challenge penalty).
    """
    ref = np.asarray(ref_dhw).astype(bool)
    pred = np.asarray(pred_dhw).astype(bool)
    if ref.shape != pred.shape or ref.ndim != 3:
        raise ValueError(f"need two 3-D masks of one shape, got {ref.shape} and {pred.shape}")
    if not ref.any() or not pred.any():
        return float("inf")
    box = _bounding_box(ref | pred)
    codes_ref = _neighbour_codes(ref, box)
    codes_pred = _neighbour_codes(pred, box)
    border_ref = (codes_ref != 0) & (codes_ref != _FULL_NEIGHBOURHOOD)
    border_pred = (codes_pred != 0) & (codes_pred != _FULL_NEIGHBOURHOOD)
    sampling = tuple(float(s) for s in spacing)
    distmap_ref = ndimage.distance_transform_edt(~border_ref, sampling=sampling)
    distmap_pred = ndimage.distance_transform_edt(~border_pred, sampling=sampling)
    table = surfel_area_table(sampling)
    ref_to_pred = _percentile_distance(
        distmap_pred[border_ref], table[codes_ref[border_ref]], percent
    )
    pred_to_ref = _percentile_distance(
        distmap_ref[border_pred], table[codes_pred[border_pred]], percent
    )
    return max(ref_to_pred, pred_to_ref)
