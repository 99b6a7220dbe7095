"""Reproducibility, geometry and crop sampling of train.augment."""

from __future__ import annotations

import numpy as np
import pytest

from submission.predict.tumour_window import extract_window
from train.augment import (
    AugmentConfig,
    apply_affine,
    augment,
    drop_modality,
    random_crop_start,
    tumour_crop_start,
    two_views,
)

SHAPE = (16, 16, 12)
NO_INTENSITY = AugmentConfig(intensity_p=0.0)
IDENTITY = AugmentConfig(flip_p=0.0, intensity_p=0.0, affine_p=0.0)


def _case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """z-scored-like image with zero background and nested, off-centre regions."""
    rng = np.random.default_rng(seed)
    image_cdhw = np.zeros((4, *SHAPE), dtype=np.float32)
    image_cdhw[:, 2:-2, 3:-2, 2:-1] = rng.normal(size=(4, 12, 11, 9))
    regions_rdhw = np.zeros((3, *SHAPE), dtype=np.uint8)
    regions_rdhw[0, 3:10, 4:12, 3:8] = 1
    regions_rdhw[1, 4:8, 5:9, 4:7] = 1
    regions_rdhw[2, 5:7, 5:7, 4:6] = 1
    return image_cdhw, regions_rdhw


def _voxel_id_case() -> tuple[np.ndarray, np.ndarray]:
    """Channel 0 holds a unique voxel id; region r marks ids divisible by r + 2."""
    ids_dhw = np.arange(1, np.prod(SHAPE) + 1, dtype=np.float32).reshape(SHAPE)
    image_cdhw = np.stack([ids_dhw, -ids_dhw])
    return image_cdhw, _masks_from_ids(ids_dhw)


def _masks_from_ids(ids_dhw: np.ndarray) -> np.ndarray:
    return np.stack([(ids_dhw % (r + 2) == 0) for r in range(3)]).astype(np.uint8)


@pytest.mark.parametrize("cfg", [AugmentConfig(), AugmentConfig(affine_p=1.0)])
def test_same_seed_same_output(cfg):
    image, regions = _case()
    first = augment(image, regions, cfg, np.random.default_rng(7))
    second = augment(image, regions, cfg, np.random.default_rng(7))
    other = augment(image, regions, cfg, np.random.default_rng(8))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])
    views_a = two_views(image, regions, cfg, np.random.default_rng(3))
    views_b = two_views(image, regions, cfg, np.random.default_rng(3))
    np.testing.assert_array_equal(views_a[0], views_b[0])
    np.testing.assert_array_equal(views_a[1], views_b[1])


def test_flips_move_masks_with_voxels():
    image, regions = _voxel_id_case()
    seen = set()
    for seed in range(12):
        out_image, out_regions = augment(image, regions, NO_INTENSITY, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_regions, _masks_from_ids(out_image[0]))
        np.testing.assert_array_equal(out_image[1], -out_image[0])
        assert out_image.flags.c_contiguous and out_regions.flags.c_contiguous
        seen.add(bool(out_image[0].flat[0] != 1))  # voxel id 1 moved: some axis flipped
    all_axes = AugmentConfig(flip_p=1.0, intensity_p=0.0)
    out_image, out_regions = augment(image, regions, all_axes, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, np.flip(image, (1, 2, 3)))
    np.testing.assert_array_equal(out_regions, np.flip(regions, (1, 2, 3)))
    assert seen == {True, False}


def test_identity_config_copies_inputs():
    image, regions = _case()
    out_image, out_regions = augment(
        image, regions.astype(bool), IDENTITY, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_regions, regions)
    assert out_regions.dtype == np.uint8
    out_image, out_regions = augment(image, regions, IDENTITY, np.random.default_rng(0))
    assert not np.shares_memory(out_image, image) and not np.shares_memory(out_regions, regions)


def test_affine_keeps_masks_binary_and_dtypes():
    image, regions = _case()
    cfg = AugmentConfig(affine_p=1.0, rotate_deg=30.0, scale_range=0.2)
    for seed in range(3):
        out_image, out_regions = augment(
            image, regions.astype(bool), cfg, np.random.default_rng(seed)
        )
        assert out_image.dtype == np.float32 and out_image.shape == image.shape
        assert out_regions.dtype == np.uint8 and out_regions.shape == regions.shape
        assert set(np.unique(out_regions)) <= {0, 1}
        assert not np.array_equal(out_regions, regions)


def test_affine_identity_and_masks_follow_image():
    image, regions = _case()
    same_image, same_regions = apply_affine(image, regions, (0.0, 0.0, 0.0), 1.0)
    np.testing.assert_allclose(same_image, image, atol=1e-5)
    np.testing.assert_array_equal(same_regions, regions)
    # Image channel equal to the WT mask: bilinear and nearest resampling must agree.
    wt_image = regions[:1].astype(np.float32)
    moved_image, moved_regions = apply_affine(wt_image, regions, np.deg2rad([20, -10, 5]), 1.1)
    from_image = moved_image[0] > 0.5
    overlap = (from_image & (moved_regions[0] == 1)).sum() / (from_image | moved_regions[0]).sum()
    assert overlap > 0.8


def test_intensity_keeps_background_zero():
    image, regions = _case()
    background = ~np.any(image != 0, axis=0)
    brain = ~background
    for seed in range(4):
        out_image, _ = augment(
            image, regions, AugmentConfig(flip_p=0.0), np.random.default_rng(seed)
        )
        assert (out_image[:, background] == 0).all()
        # out = in * (1 + U(-0.1, 0.1)) + U(-0.1, 0.1) on brain voxels
        bound = 0.1 * np.abs(image[:, brain]) + 0.1 + 1e-6
        assert (np.abs(out_image[:, brain] - image[:, brain]) <= bound).all()
        assert not np.allclose(out_image, image)


def test_intensity_after_affine_keeps_background_zero():
    image, regions = _case()
    for seed in range(3):
        # The draws do not depend on which transforms fire, so both runs move voxels alike.
        spatial_only = AugmentConfig(affine_p=1.0, intensity_p=0.0)
        moved, _ = augment(image, regions, spatial_only, np.random.default_rng(seed))
        both, _ = augment(image, regions, AugmentConfig(affine_p=1.0), np.random.default_rng(seed))
        moved_background = ~np.any(moved != 0, axis=0)
        assert moved_background.any()
        assert (both[:, moved_background] == 0).all()
        assert not np.allclose(both, moved)


def test_two_views_shapes_and_independence():
    image, regions = _case()
    views_image, views_regions = two_views(
        image, regions, AugmentConfig(), np.random.default_rng(0)
    )
    assert views_image.shape == (2, *image.shape) and views_image.dtype == np.float32
    assert views_regions.shape == (2, *regions.shape) and views_regions.dtype == np.uint8
    assert not np.allclose(views_image[0], views_image[1])
    # No affine: the shared flip leaves both views' masks identical.
    np.testing.assert_array_equal(views_regions[0], views_regions[1])
    spatial = AugmentConfig(affine_p=1.0)
    views_image, views_regions = two_views(image, regions, spatial, np.random.default_rng(0))
    assert not np.array_equal(views_regions[0], views_regions[1])


@pytest.mark.parametrize(
    ("shape", "crop"),
    [((16, 16, 12), (8, 8, 8)), ((6, 16, 5), (8, 8, 8)), ((8, 8, 8), 8), ((5, 4, 3), (6, 9, 4))],
)
def test_random_crop_shape_exact(shape, crop):
    image = np.arange(1, 2 * np.prod(shape) + 1, dtype=np.float32).reshape(2, *shape)
    crop_dhw = np.broadcast_to(crop, (3,))
    for seed in range(10):
        start = random_crop_start(shape, crop, np.random.default_rng(seed))
        patch = extract_window(image, start, crop)
        assert patch.shape == (2, *crop_dhw) and patch.dtype == image.dtype
        for s, c, n in zip(start, crop_dhw, shape):
            if n >= c:
                assert 0 <= s <= n - c
            else:  # centred: padding split (c - n) // 2 before, the rest after
                assert s == -((c - n) // 2)
        if all(n <= c for n, c in zip(shape, crop_dhw)):
            assert patch.sum() == image.sum()  # whole volume inside, rest zero padding


def test_random_crop_start_is_uniform_over_range():
    starts = {random_crop_start((12, 8, 8), (8, 8, 8), np.random.default_rng(s)) for s in range(60)}
    assert {s[0] for s in starts} == set(range(5))
    assert {s[1:] for s in starts} == {(0, 0)}


def test_extract_crop_padding_and_leading_axes():
    volume = np.arange(1, 28, dtype=np.int16).reshape(3, 3, 3)
    patch = extract_window(volume, (-1, 1, 2), (3, 3, 3), fill=-5)
    assert patch.shape == (3, 3, 3) and patch.dtype == np.int16
    np.testing.assert_array_equal(patch[0], np.full((3, 3), -5))
    np.testing.assert_array_equal(patch[1:, :2, :1], volume[:2, 1:, 2:])
    assert (patch[1:, 2:, :] == -5).all() and (patch[1:, :, 1:] == -5).all()
    nested = np.stack([np.stack([volume, volume])] * 2)  # (2, 2, 3, 3, 3)
    assert extract_window(nested, (0, 0, 0), 2).shape == (2, 2, 2, 2, 2)
    assert (extract_window(volume, (10, 0, 0), 2) == 0).all()  # window entirely outside
    inside = extract_window(volume, (0, 0, 0), 3)
    assert not np.shares_memory(inside, volume)


def test_tumour_crop_contains_centre_clamped_and_jitter_bounded():
    _, regions = _case()
    # WT bounding box: 3..9, 4..11, 3..7 -> centre (6, 7.5, 5)
    crop = (8, 8, 6)
    unjittered = tumour_crop_start(regions, crop, 0, np.random.default_rng(0))
    assert unjittered == ((3 + 9 + 1 - 8) // 2, (4 + 11 + 1 - 8) // 2, (3 + 7 + 1 - 6) // 2)
    for seed in range(40):
        start = tumour_crop_start(regions, crop, 2, np.random.default_rng(seed))
        for s, u, c, n, centre in zip(start, unjittered, crop, SHAPE, (6, 7.5, 5)):
            assert 0 <= s <= n - c  # clamped inside the volume
            assert abs(s - u) <= 2  # jitter bounded
            assert s <= centre < s + c  # tumour centre inside the window
    # Large jitter is clamped to the volume.
    for seed in range(20):
        start = tumour_crop_start(regions[0], crop, 50, np.random.default_rng(seed))
        assert all(0 <= s <= n - c for s, c, n in zip(start, crop, SHAPE))
    same = tumour_crop_start(regions[0], crop, 2, np.random.default_rng(5))
    assert same == tumour_crop_start(regions, crop, 2, np.random.default_rng(5))


def test_tumour_crop_empty_mask_and_small_volume():
    empty_dhw = np.zeros(SHAPE, dtype=bool)
    # Volume centre: (16 - 8) // 2 = 4, (16 - 8) // 2 = 4, (12 - 6) // 2 = 3
    assert tumour_crop_start(empty_dhw, (8, 8, 6), 0, np.random.default_rng(0)) == (4, 4, 3)
    small = np.zeros((4, 20, 6), dtype=bool)
    small[1, 15, 2] = True
    start = tumour_crop_start(small, 8, 3, np.random.default_rng(0))
    assert start[0] == -2 and start[2] == -1  # centred, padded along the small axes
    assert start[1] <= 15 < start[1] + 8


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="flip_p"):
        AugmentConfig(flip_p=1.5)
    with pytest.raises(ValueError, match="rotate_deg"):
        AugmentConfig(rotate_deg=-1.0)
    image, regions = _case()
    with pytest.raises(ValueError, match="spatial shape"):
        augment(image, regions[:, :8], AugmentConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="crop_dhw"):
        random_crop_start(SHAPE, (8, 8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="jitter"):
        tumour_crop_start(regions, 8, -1, np.random.default_rng(0))


def test_modality_dropout_zeroes_only_an_optional_channel_at_its_rate():
    image = np.ones((4, 3, 3, 3), dtype=np.float32)
    rng = np.random.default_rng(0)
    dropped = [drop_modality(image, (2,), 0.25, rng) for _ in range(2000)]
    zeroed = [d for d in dropped if d is not image]
    assert 0.2 < len(zeroed) / len(dropped) < 0.3
    for d in zeroed:
        assert not d[2].any() and d[[0, 1, 3]].all()
    assert image.all()  # the input is never changed
    assert drop_modality(image, (), 1.0, rng) is image  # a task without optional modalities
    assert drop_modality(image, (2,), 0.0, rng) is image


def test_bias_field_acts_on_the_intensities_behind_the_z_scores():
    """z' = (z + k) b - k per channel: a smooth positive field b on the raw intensity
    mu + sigma z, k = mu / sigma in the measured range; background stays zero."""
    image, regions = _case()
    brain = np.any(image != 0, axis=0)
    cfg = AugmentConfig(flip_p=0.0, intensity_p=0.0, bias_p=1.0, bias_field=0.1)
    zero = np.where(brain, np.float32(1e-30), np.float32(0))[None].repeat(4, 0)  # z = 0 in brain
    one = np.where(brain, np.float32(1), np.float32(0))[None].repeat(4, 0)
    out0, _ = augment(zero, regions, cfg, np.random.default_rng(5))
    out1, _ = augment(one, regions, cfg, np.random.default_rng(5))
    field = out1[:, brain] - out0[:, brain]  # ((1 + k) b - k) - (k b - k) = b
    assert (field > 0).all()
    # log b is a sum of 19 Legendre terms, each bounded by its coefficient's 0.1 + 0.05
    assert np.abs(np.log(field)).max() <= 19 * 0.15
    assert np.abs(np.log(field)).max() > 0.01
    k = np.empty((4, 1), dtype=np.float32)
    for c in range(4):
        away = np.abs(field[c] - 1) > 0.02  # k = out0 / (b - 1) where that is well-conditioned
        k[c] = np.median(out0[c, brain][away] / (field[c][away] - 1))
        assert 1.5 <= k[c] <= 5.0
        np.testing.assert_allclose(out0[c, brain], k[c] * (field[c] - 1), atol=1e-4)
    assert not np.allclose(field[0], field[1])  # each channel adds its own field
    logs = np.log(field)
    pairs = [np.corrcoef(logs[a], logs[b])[0, 1] for a in range(4) for b in range(a + 1, 4)]
    assert np.mean(pairs) > 0.3  # to a shared one (one coil): it brightens every channel
    out, _ = augment(image, regions, cfg, np.random.default_rng(5))
    assert (out[:, ~brain] == 0).all()
    np.testing.assert_allclose(out[:, brain], (image[:, brain] + k) * field - k, atol=1e-4)
    # bias_p 0 draws the same numbers and leaves the image as the other transforms left it
    off = AugmentConfig(flip_p=0.0, intensity_p=0.0, bias_p=0.0)
    np.testing.assert_array_equal(augment(image, regions, off, np.random.default_rng(5))[0], image)
    with pytest.raises(ValueError, match="bias_p"):
        AugmentConfig(bias_p=2.0)
