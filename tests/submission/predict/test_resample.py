"""Resampling to the members' spacing and back (native-space MET and MEN-RT)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from submission.predict.preprocess import CropInfo, _window, uncrop, zscore_nonzero
from submission.predict.resample import (
    SPACING_TOLERANCE,
    covering_crop,
    needs_resampling,
    resample_case,
    resample_image,
    resample_labels,
    resample_probabilities,
    resample_regions,
    target_shape,
    voxel_spacing,
)


def affine(spacing, rotation, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rotation @ np.diag(spacing)
    out[:3, 3] = origin
    return out


def brain_block(shape=(30, 32, 24), value=None, seed=0) -> np.ndarray:
    """(2, *shape) float32: zeros around an ellipsoid 'brain' of random or constant values."""
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1)[:, None, None, None] / 2
    radius = np.array(shape, dtype=np.float32)[:, None, None, None] * 0.35
    inside = (((grid - centre) / radius) ** 2).sum(axis=0) <= 1
    rng = np.random.default_rng(seed)
    values = rng.uniform(200, 1200, (2, *shape)) if value is None else np.full((2, *shape), value)
    return np.where(inside, values, 0).astype(np.float32)


# -- spacing of a grid ------------------------------------------------------------------


@pytest.mark.parametrize(
    "rotation",
    [
        np.eye(3),
        np.diag([-1.0, -1.0, 1.0]),  # BraTS LPS
        np.eye(3)[[2, 0, 1]],  # a sagittal acquisition: voxel axes permuted
        Rotation.from_euler("xyz", [12, -30, 47], degrees=True).as_matrix(),  # oblique
    ],
)
def test_spacing_is_the_norm_of_each_affine_column_whatever_the_orientation(rotation):
    a = affine((0.9, 0.45, 3.0), rotation, origin=(-90, 126, -72))
    assert voxel_spacing(a) == pytest.approx((0.9, 0.45, 3.0))
    # what NIfTI readers report as the header's zooms
    header_zooms = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), a).header.get_zooms()
    assert voxel_spacing(a) == pytest.approx(header_zooms, abs=1e-6)


def test_tolerance_is_relative_and_ignores_float32_header_rounding():
    float32 = tuple(float(np.float32(v)) for v in (0.9, 0.9, 3.0))  # 0.8999999762...
    assert not needs_resampling(float32, (0.9, 0.9, 3.0))
    assert not needs_resampling((1.0, 1.0, 1.0 + SPACING_TOLERANCE / 2), (1.0, 1.0, 1.0))
    assert needs_resampling((1.0, 1.0, 1.0 + 2 * SPACING_TOLERANCE), (1.0, 1.0, 1.0))
    assert needs_resampling((0.9, 0.9, 3.0), (1.0, 1.0, 1.0))
    assert needs_resampling((1.0, 1.0, 1.0), (0.5, 1.0, 1.0))


def test_target_shape_keeps_the_field_of_view():
    assert target_shape((240, 240, 155), (1, 1, 1), (0.9, 0.9, 3.0)) == (267, 267, 52)
    assert target_shape((160, 160, 32), (0.9, 0.9, 3.0), (1, 1, 1)) == (144, 144, 96)
    assert target_shape((3, 3, 1), (1, 1, 1), (10, 10, 10)) == (1, 1, 1)  # never empty


# -- images -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(27, 29, 8), (40, 41, 60)])
def test_image_background_stays_exactly_zero_and_brain_non_zero(shape):
    image = brain_block()
    out = resample_image(image, shape)
    assert out.shape == (2, *shape) and out.dtype == np.float32
    mask = resample_regions((image != 0)[:1], shape)[0]
    for channel in out:
        # cubic interpolation rings into the background: none of it survives
        np.testing.assert_array_equal(channel != 0, mask)


def test_brain_border_is_interpolated_from_brain_voxels_only():
    """A constant brain stays exactly constant up to its border, where plain cubic
    interpolation would blend it with the zero background (partial volume), and the
    non-zero z-score of a random brain keeps its statistics."""
    out = resample_image(brain_block(value=500.0), (26, 29, 9))
    np.testing.assert_allclose(out[out != 0], 500.0, rtol=1e-4)
    image = brain_block()
    _, before = zscore_nonzero(image)
    _, after = zscore_nonzero(resample_image(image, (27, 29, 8)))
    np.testing.assert_allclose(after.mean, before.mean, rtol=0.02)
    # noise is averaged by the interpolation: the standard deviation may only shrink
    assert np.all(after.std <= before.std * 1.02)


def test_all_zero_channel_stays_zero():
    image = brain_block()
    image[1] = 0  # MET 2026's absent t2w
    out = resample_image(image, (20, 21, 30))
    assert not out[1].any() and out[0].any()


def test_cubic_resampling_of_a_smooth_image_round_trips():
    shape = (36, 36, 30)
    grid = np.indices(shape, dtype=np.float32)
    smooth = 600 + 200 * np.sin(grid[0] / 6) * np.cos(grid[1] / 7) + 10 * grid[2]
    image = smooth[None].astype(np.float32)  # no background: a pure interpolation test
    back = resample_image(resample_image(image, (40, 40, 10)), shape)
    inner = (slice(None), slice(3, -3), slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(back[inner], image[inner], rtol=0.01)


# -- probabilities, regions, labels -----------------------------------------------------


def smooth_probabilities(shape=(36, 40, 30)) -> np.ndarray:
    """(2, *shape) float32 sigmoids of two smooth ellipsoidal distance fields."""
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape, dtype=np.float32)[:, None, None, None] / 2
    dist = np.sqrt((((grid - centre) / np.array([8, 9, 12])[:, None, None, None]) ** 2).sum(0))
    return np.stack([1 / (1 + np.exp(4 * (dist - r))) for r in (1.0, 0.6)]).astype(np.float32)


def test_linear_round_trip_of_smooth_probabilities():
    probs = smooth_probabilities()
    there = resample_probabilities(probs, (40, 44, 10))
    assert there.dtype == np.float32 and there.min() >= 0 and there.max() <= 1
    back = resample_probabilities(there, probs.shape[1:])
    assert back.shape == probs.shape
    assert np.abs(back - probs).max() < 0.1  # 3 mm slices across a steep sigmoid
    assert np.mean((back > 0.5) == (probs > 0.5)) > 0.995


def test_thick_slices_of_the_convention_are_exact_slices_of_the_fine_grid():
    """Edge-aligned voxels: 30 slices of 1 mm -> 10 of 3 mm samples slices 1, 4, 7, ..."""
    probs = smooth_probabilities()
    thick = resample_probabilities(probs, (36, 40, 10))
    np.testing.assert_allclose(thick, probs[..., 1::3], atol=1e-6)
    labels = (probs[0] > 0.5).astype(np.uint8) + (probs[1] > 0.5)
    np.testing.assert_array_equal(resample_labels(labels, (36, 40, 10)), labels[..., 1::3])


def test_a_window_of_the_output_is_that_part_of_the_whole():
    probs = smooth_probabilities()
    whole = resample_probabilities(probs, (33, 45, 11))
    part = resample_probabilities(probs, (33, 45, 11), ((4, 10, 2), (30, 41, 9)))
    np.testing.assert_allclose(part, whole[:, 4:30, 10:41, 2:9], atol=1e-6)


def test_regions_stay_nested_and_labels_keep_their_values():
    probs = smooth_probabilities()
    regions = probs > 0.5  # WT contains TC
    out = resample_regions(regions, (31, 47, 12))
    assert out.dtype == bool and out.shape == (2, 31, 47, 12)
    assert not (out[1] & ~out[0]).any() and out[1].any()
    labels = np.where(regions[1], 4, np.where(regions[0], 2, 0)).astype(np.uint8)
    resampled = resample_labels(labels, (31, 47, 12))
    assert resampled.dtype == np.uint8 and set(np.unique(resampled)) == {0, 2, 4}
    # doubling repeats each voxel twice
    np.testing.assert_array_equal(
        resample_labels(labels, (72, 80, 60)), labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    )


def test_resample_case_returns_the_same_arrays_at_the_training_spacing():
    image = brain_block()
    regions = np.zeros((3, *image.shape[1:]), bool)
    same_image, same_regions = resample_case(image, regions, (1.0, 1.0, 1.004), (1, 1, 1))
    assert same_image is image and same_regions is regions
    new_image, new_regions = resample_case(image, regions, (0.9, 0.9, 3.0), (1, 1, 1))
    assert new_image.shape == (2, 27, 29, 72) and new_regions.shape == (3, 27, 29, 72)
    assert new_regions.dtype == bool
    assert resample_case(image, None, (0.9, 0.9, 3.0), (1, 1, 1))[1] is None


@pytest.mark.parametrize(
    ("src", "dst", "lo", "hi"),
    [
        ((40, 40, 72), (44, 44, 24), (5, 7, 20), (30, 33, 50)),  # 1 mm -> 0.9 x 0.9 x 3
        ((44, 44, 24), (40, 40, 72), (0, 3, 1), (44, 40, 23)),  # back, touching an edge
        ((17, 23, 31), (29, 13, 31), (2, 2, 0), (16, 20, 31)),
    ],
)
def test_covering_crop_holds_every_voxel_the_resampled_probabilities_reach(src, dst, lo, hi):
    crop = _window(src, lo, hi)
    probs = np.random.default_rng(1).uniform(0.01, 1, (1, *crop.out_shape)).astype(np.float32)
    full = resample_probabilities(uncrop(probs, crop), dst)
    cover = covering_crop(crop, dst)
    assert isinstance(cover, CropInfo) and cover.in_shape == dst
    assert all(p == (0, 0) for p in cover.pad)
    outside = full.copy()
    outside[(slice(None), *(slice(a, b) for a, b in zip(cover.start, cover.stop)))] = 0
    assert not outside.any()
    # and it is tight to within a voxel on each side
    reached = np.argwhere(full[0] > 0)
    assert np.all(reached.min(0) - np.array(cover.start) <= 1)
    assert np.all(np.array(cover.stop) - (reached.max(0) + 1) <= 1)
