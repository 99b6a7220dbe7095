"""Crop policies (paper 002 2.1 centre crop; brain bounding box) and their inverses."""

import numpy as np
import pytest

from submission.predict.preprocess import (
    Preprocessing,
    brain_crop_info,
    centre_crop_info,
    crop,
    preprocess_case,
    uncrop,
    zscore_nonzero,
)


def brats_like(shape=(240, 240, 155), box=((40, 190), (30, 200), (5, 150))):
    image = np.zeros((4, *shape), np.float32)
    sl = tuple(slice(a, b) for a, b in box)
    image[(slice(None),) + sl] = np.random.default_rng(0).uniform(
        1, 100, (4, *(b - a for a, b in box))
    )
    return image


def test_centre_crop_is_papers_192_192_160():
    info = centre_crop_info((240, 240, 155))
    assert info.out_shape == (192, 192, 160)
    assert info.start == (24, 24, 0) and info.stop == (216, 216, 155)
    assert info.pad == ((0, 0), (0, 0), (3, 2))  # the 5 empty slices of 002, 2.1


def test_uncrop_of_crop_restores_the_grid_centre():
    image = brats_like()
    info = centre_crop_info(image.shape[1:])
    cropped = crop(image, info)
    assert cropped.shape == (4, 192, 192, 160)
    restored = uncrop(cropped, info)
    inside = (slice(None), slice(24, 216), slice(24, 216), slice(None))
    np.testing.assert_array_equal(restored[inside], image[inside])
    assert restored.shape == image.shape


def test_brain_crop_keeps_every_brain_voxel_and_divides():
    image = brats_like()
    info = brain_crop_info(image, margin=4, divisor=16)
    assert all(s % 16 == 0 for s in info.out_shape)
    cropped = crop(image, info)
    assert cropped.sum() == pytest.approx(image.sum(), rel=1e-6)
    np.testing.assert_array_equal(uncrop(cropped, info), image)
    assert np.prod(info.out_shape) < np.prod(centre_crop_info(image.shape[1:]).out_shape)


def test_brain_crop_pads_beyond_the_volume_when_needed():
    image = brats_like(shape=(20, 20, 20), box=((0, 20), (0, 20), (3, 17)))
    info = brain_crop_info(image, margin=0, divisor=16)
    assert info.out_shape == (32, 32, 16)
    assert info.pad[0] == (6, 6)
    np.testing.assert_array_equal(uncrop(crop(image, info), info), image)


def test_uncrop_fills_outside_and_works_on_region_maps():
    image = brats_like()
    _, info = preprocess_case(image, Preprocessing(crop="brain"))
    assert info == brain_crop_info(image, margin=4, divisor=16)
    probs = np.ones((3, *info.out_shape), np.float32)
    back = uncrop(probs, info, fill=0)
    assert back.shape == (3, 240, 240, 155)
    assert back[:, 0, 0, 0].tolist() == [0, 0, 0]
    assert back.sum() == 3 * np.prod([b - a for a, b in zip(info.start, info.stop)])


def test_blank_image_keeps_full_extent():
    info = brain_crop_info(np.zeros((4, 32, 32, 16)), margin=2, divisor=16)
    assert info.out_shape == (32, 32, 16)


def test_zscore_over_nonzero_and_inverse():
    image = brats_like(shape=(40, 40, 30), box=((5, 35), (5, 35), (5, 25)))
    norm, stats = zscore_nonzero(image)
    mask = image != 0
    for c in range(4):
        assert norm[c][mask[c]].mean() == pytest.approx(0, abs=1e-5)
        assert norm[c][mask[c]].std() == pytest.approx(1, abs=1e-4)
    assert not norm[~mask].any()
    # the statistics invert it: z * std + mean inside each channel's non-zero voxels
    restored = norm * stats.std[:, None, None, None] + stats.mean[:, None, None, None]
    np.testing.assert_allclose(np.where(mask, restored, 0), image, rtol=1e-5, atol=1e-3)


def test_zscore_constant_channel_is_only_centred():
    image = np.zeros((1, 4, 4, 4), np.float32)
    image[0, 1:3, 1:3, 1:3] = 7
    norm, stats = zscore_nonzero(image)
    assert not norm.any() and stats.std[0] == 1


def test_preprocess_case_crops_by_the_policy_then_z_scores():
    image = brats_like()
    for spec, info in (
        (Preprocessing(crop="brain", margin=2, divisor=8), brain_crop_info(image, 2, 8)),
        (Preprocessing(crop="centre", divisor=8), centre_crop_info(image.shape[1:])),
    ):
        norm, got = preprocess_case(image, spec)
        assert got == info and norm.dtype == np.float32
        np.testing.assert_array_equal(norm, zscore_nonzero(crop(image, info))[0])


def test_unknown_policy_names_the_choices():
    with pytest.raises(ValueError, match="centre, brain"):
        Preprocessing(crop="random")


def test_spacing_is_stated_only_when_set():
    """Manifests and training-cache keys of bundles without a spacing stay byte-identical."""
    assert Preprocessing().to_dict() == {
        "crop": "brain",
        "margin": 4,
        "divisor": 16,
        "normalise": "zscore_nonzero",
    }
    spec = Preprocessing(spacing=[1, 1, 3])  # a list, as JSON and YAML give it
    assert spec.spacing == (1.0, 1.0, 3.0)
    assert spec.to_dict()["spacing"] == [1.0, 1.0, 3.0]
    assert Preprocessing(**spec.to_dict()) == spec
    assert hash(spec) == hash(Preprocessing(spacing=(1.0, 1.0, 3.0)))


@pytest.mark.parametrize(
    "spacing", [[1, 1], [1, 1, 1, 1], [0, 1, 1], [1, -2, 1], [True, 1, 1], ["1", 1, 1], 1.0]
)
def test_bad_spacing_names_the_value_and_the_form(spacing):
    with pytest.raises(ValueError, match=r"three positive voxel sizes in mm.*got"):
        Preprocessing(spacing=spacing)


def test_nan_spacing_is_refused():
    with pytest.raises(ValueError, match="nan"):
        Preprocessing(spacing=[float("nan"), 1, 1])
