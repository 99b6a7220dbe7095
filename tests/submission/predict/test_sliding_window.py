"""Dense prediction: size rules, padding, Gaussian blending, sliding window, mirroring TTA.

The models are numpy functions. A pointwise model (each output voxel a function of the
input voxel only) must be reproduced exactly by any correct blending, whatever the patch,
overlap, padding or batching; position-dependent models pin the blending and the flips.
"""

import functools

import numpy as np
import pytest

from submission.predict.sliding_window import (
    SizeRule,
    flip_tta,
    gaussian_importance,
    pad_to,
    predict_volume,
    resolve_patch,
    sliding_window,
    training_window,
    unpad,
    window_starts,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def pointwise(batch_ncdhw: np.ndarray) -> np.ndarray:
    """Two 'regions' from two input channels, voxel by voxel: (N, 2, d, h, w)."""
    x0, x1 = batch_ncdhw[:, :1], batch_ncdhw[:, 1:2]
    return np.concatenate([sigmoid(x0), sigmoid(2 * x0 - x1)], axis=1).astype(np.float32)


def image(shape_dhw, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, *shape_dhw)).astype(np.float32)


def recording(forward):
    """The forward, plus the list of input shapes it was called with."""
    shapes = []

    def wrapped(batch):
        shapes.append(batch.shape)
        return forward(batch)

    return wrapped, shapes


def counting():
    """A forward returning, for every patch, the number of patches it has seen before."""
    seen = [0]

    def forward(batch):
        out = np.empty((batch.shape[0], 1, *batch.shape[2:]), np.float32)
        for i in range(batch.shape[0]):
            out[i] = seen[0]
            seen[0] += 1
        return out

    return forward, seen


# --- SizeRule, padding ---------------------------------------------------------------


def test_size_rule_fit_and_admits():
    rule = SizeRule((16, 16, 8))
    assert rule.fit((155, 190, 137)) == (160, 192, 144)
    assert rule.fit((160, 192, 144)) == (160, 192, 144)
    assert rule.admits((160, 192, 144))
    assert not rule.admits((160, 192, 140))
    assert SizeRule().fit((5, 6, 7)) == (5, 6, 7) and SizeRule().admits((5, 6, 7))


def test_size_rule_fixed_axis_wins_over_divisor():
    rule = SizeRule((16, 16, 16), (None, None, 108))
    assert rule.fit((100, 100, 100)) == (112, 112, 108)
    assert rule.fit((100, 100, 120)) == (112, 112, 108)  # fixed even when smaller
    assert rule.admits((112, 112, 108))  # 108 is no multiple of 16
    assert not rule.admits((112, 112, 112))


def test_size_rule_rejects_bad_fields():
    with pytest.raises(ValueError, match="divisors"):
        SizeRule((0, 1, 1))
    with pytest.raises(ValueError, match="fixed"):
        SizeRule((1, 1, 1), (None, 0, None))
    with pytest.raises(ValueError, match="3 spatial axes"):
        SizeRule().fit((4, 4))


def test_pad_to_puts_half_before_and_unpad_inverts():
    array = image((3, 4, 5))
    padded, pads = pad_to(array, (6, 4, 8))
    assert padded.shape == (2, 6, 4, 8)
    assert pads == ((1, 2), (0, 0), (1, 2))
    np.testing.assert_array_equal(padded[:, 1:4, :, 1:6], array)
    assert padded.sum() == pytest.approx(array.sum(), rel=1e-6)
    np.testing.assert_array_equal(unpad(padded, pads), array)
    with pytest.raises(ValueError, match="cannot pad"):
        pad_to(array, (2, 4, 5))


# --- windows and weights -------------------------------------------------------------


def test_window_starts_examples():
    assert window_starts(12, 8, 0.5) == [0, 4]
    assert window_starts(20, 8, 0.5) == [0, 4, 8, 12]
    assert window_starts(20, 8, 0.0) == [0, 8, 12]  # last window flush with the end
    assert window_starts(8, 8, 0.5) == [0]
    assert window_starts(5, 8, 0.5) == [0]
    assert window_starts(10, 3, 0.9) == list(range(8))  # step never below 1
    with pytest.raises(ValueError, match="overlap"):
        window_starts(10, 4, 1.0)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
@pytest.mark.parametrize("patch", [1, 4, 7, 8])
def test_window_starts_cover_every_index(patch, overlap):
    for size in range(1, 30):
        starts = window_starts(size, patch, overlap)
        assert starts[0] == 0 and starts == sorted(set(starts))
        assert starts[-1] + patch == max(size, patch)
        covered = np.zeros(max(size, patch), bool)
        for s in starts:
            covered[s : s + patch] = True
        assert covered.all()


def test_gaussian_importance_properties():
    weights = gaussian_importance((7, 9, 11))
    assert weights.dtype == np.float32 and weights.shape == (7, 9, 11)
    assert weights.max() == 1 and weights.min() > 0
    assert np.unravel_index(weights.argmax(), weights.shape) == (3, 4, 5)
    for axis in range(3):
        np.testing.assert_array_equal(weights, np.flip(weights, axis))
    even = gaussian_importance((4, 6, 8))
    np.testing.assert_array_equal(even, even[::-1, ::-1, ::-1])
    assert even[1:3, 2:4, 3:5].min() == even.max() == 1  # the 8 central voxels tie


def test_gaussian_importance_is_cached_read_only_and_never_zero():
    assert gaussian_importance([5, 5, 5]) is gaussian_importance((5, 5, 5))
    with pytest.raises(ValueError):
        gaussian_importance((5, 5, 5))[0, 0, 0] = 2
    far = gaussian_importance((1, 1, 400), sigma_scale=0.01)  # underflows to 0 unclamped
    assert far.min() > 0


# --- sliding window ------------------------------------------------------------------

SHAPES = [(8, 8, 8), (13, 10, 7), (5, 17, 12), (3, 4, 21)]


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gaussian", [True, False])
def test_sliding_window_reproduces_a_pointwise_model(shape, overlap, gaussian):
    volume = image(shape)
    probs = sliding_window(volume, pointwise, (4, 8, 6), overlap, batch_size=3, gaussian=gaussian)
    assert probs.dtype == np.float32 and probs.shape == (2, *shape)
    np.testing.assert_allclose(probs, pointwise(volume[None])[0], rtol=0, atol=1e-6)


def test_sliding_window_batches_windows_and_batch_size_does_not_matter():
    volume = image((13, 10, 7))

    def patch_mean(batch):  # not pointwise: depends on the whole patch
        return pointwise(batch) * batch.mean(axis=(1, 2, 3, 4), keepdims=True)

    forward, shapes = recording(patch_mean)
    reference = sliding_window(volume, forward, (4, 4, 4), 0.5, batch_size=1)
    assert len(shapes) == 6 * 4 * 3 and shapes[0] == (1, 2, 4, 4, 4)
    for batch_size in (3, 7, 1000):
        forward, shapes = recording(patch_mean)
        out = sliding_window(volume, forward, (4, 4, 4), 0.5, batch_size=batch_size)
        assert shapes[0][0] == min(batch_size, 72)
        np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6)


def test_sliding_window_blends_within_window_values():
    forward, seen = counting()
    probs = sliding_window(image((9, 11, 10)), forward, (4, 4, 4), 0.5)
    assert probs.min() >= 0 and probs.max() <= seen[0] - 1
    assert probs.min() < probs.max()


def test_sliding_window_blending_by_hand():
    # Along the last axis (12 voxels, patch 8, overlap 0.5) windows start at 0 and 4 and
    # return 0 and 1; voxels 4..7 are covered by both.
    volume = image((4, 4, 12))
    forward, _ = counting()
    uniform = sliding_window(volume, forward, (4, 4, 8), 0.5, gaussian=False)
    np.testing.assert_allclose(uniform[0, 0, 0], [0] * 4 + [0.5] * 4 + [1] * 4, atol=1e-6)
    forward, _ = counting()
    blended = sliding_window(volume, forward, (4, 4, 8), 0.5)
    g = gaussian_importance((4, 4, 8))[0, 0].astype(np.float64)
    both = g[0:4] / (g[4:8] + g[0:4])  # window 1's weight at its indices 0..3
    expected = np.concatenate([np.zeros(4), both, np.ones(4)])
    for d, h in np.ndindex(4, 4):
        np.testing.assert_allclose(blended[0, d, h], expected, atol=1e-6)
    assert np.all(np.diff(expected) >= 0)


def test_sliding_window_without_overlap_tiles_exactly():
    forward, _ = counting()
    probs = sliding_window(image((4, 4, 8)), forward, (4, 4, 4), 0.0)
    np.testing.assert_array_equal(probs[0, :, :, :4], 0)
    np.testing.assert_array_equal(probs[0, :, :, 4:], 1)


def test_sliding_window_rejects_wrong_output_shape_and_bad_image():
    def short(batch):
        return pointwise(batch)[..., :-1]

    with pytest.raises(ValueError, match=r"forward returned shape \(1, 2, 4, 4, 3\)"):
        sliding_window(image((8, 8, 8)), short, (4, 4, 4))
    with pytest.raises(ValueError, match=r"\(C, D, H, W\)"):
        sliding_window(np.zeros((8, 8, 8), np.float32), pointwise, (4, 4, 4))


# --- predict_volume ------------------------------------------------------------------


def test_predict_volume_full_volume_pads_to_the_divisor():
    volume = image((10, 13, 7))
    forward, shapes = recording(pointwise)
    probs = predict_volume(volume, forward, SizeRule((8, 8, 4)))
    assert shapes == [(1, 2, 16, 16, 8)]
    assert probs.shape == (2, 10, 13, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, pointwise(volume[None])[0], atol=1e-6)


def test_predict_volume_respects_a_fixed_axis():
    volume = image((5, 6, 9))
    forward, shapes = recording(pointwise)
    probs = predict_volume(volume, forward, SizeRule((2, 2, 1), (None, None, 12)))
    assert shapes == [(1, 2, 6, 6, 12)] and probs.shape == (2, 5, 6, 9)
    with pytest.raises(ValueError, match="pass a patch_dhw"):
        predict_volume(image((5, 6, 13)), pointwise, SizeRule((1, 1, 1), (None, None, 12)))


def test_predict_volume_sliding_window_with_a_fixed_axis():
    volume = image((5, 6, 13))
    rule = SizeRule((2, 2, 1), (None, None, 12))
    forward, shapes = recording(pointwise)
    probs = predict_volume(volume, forward, rule, patch_dhw=(4, None, None))
    assert {s[2:] for s in shapes} == {(4, 6, 12)}  # None: whole axis, or the fixed size
    np.testing.assert_allclose(probs, pointwise(volume[None])[0], atol=1e-6)
    assert resolve_patch(rule, (4, 4, 12), (5, 6, 13)) == (4, 4, 12)


def test_a_patch_trained_member_slides_its_training_patch_only_where_the_volume_is_larger():
    rule = SizeRule((16, 16, 16))
    # The demo: 64^3 patches, brains cropped to 80 x 96 x 64.
    assert training_window(rule, (64, 64, 64), (80, 96, 64)) == (64, 64, None)
    assert training_window(rule, (64, 64, 64), (80, 96, 70)) == (64, 64, 64)  # 70 fits to 80
    assert training_window(rule, (128, 128, 128), (80, 96, 64)) is None  # one call
    assert training_window(rule, (80, 96, 64), (70, 90, 60)) is None  # fitted: 80, 96, 64
    volume = image((40, 20, 12))
    forward, shapes = recording(pointwise)
    window = training_window(SizeRule((4, 4, 4)), (16, 16, 16), volume.shape[1:])
    probs = predict_volume(volume, forward, SizeRule((4, 4, 4)), patch_dhw=window)
    assert {s[2:] for s in shapes} == {(16, 16, 12)} and len(shapes) > 1
    np.testing.assert_allclose(probs, pointwise(volume[None])[0], atol=1e-6)


def test_predict_volume_rejects_patches_the_model_does_not_admit():
    rule = SizeRule((8, 8, 8), (None, None, 16))
    with pytest.raises(ValueError, match="exactly 16"):
        predict_volume(image((9, 9, 9)), pointwise, rule, patch_dhw=(8, 8, 8))
    with pytest.raises(ValueError, match=r"nearest larger admissible patch is \(16, 8, 16\)"):
        predict_volume(image((9, 9, 9)), pointwise, rule, patch_dhw=(12, 8, 16))


def test_predict_volume_rejects_a_forward_of_the_wrong_spatial_shape():
    def cropped(batch):
        return pointwise(batch)[:, :, 1:]

    with pytest.raises(ValueError, match=r"returned shape \(1, 2, 7, 8, 8\).*\(1, 2, 8, 8, 8\)"):
        predict_volume(image((8, 8, 8)), cropped, SizeRule())
    with pytest.raises(ValueError, match="returned shape"):
        predict_volume(image((8, 8, 8)), cropped, SizeRule(), patch_dhw=(4, 4, 4))


# --- mirroring TTA -------------------------------------------------------------------


def test_flip_tta_of_a_pointwise_model_changes_nothing():
    volume = image((6, 5, 7))
    predict = functools.partial(
        predict_volume, forward=pointwise, rule=SizeRule((4, 4, 4)), patch_dhw=(4, 4, 4)
    )
    np.testing.assert_allclose(flip_tta(volume, predict), predict(volume), atol=1e-6)


def test_flip_tta_averages_mirrored_positions():
    def ramps(batch):  # sigmoid(x0) * r_d^2 + r_w, r the normalised coordinate
        n, _, d, h, w = batch.shape
        r_d = np.linspace(0, 1, d, dtype=np.float32)[:, None, None]
        r_w = np.linspace(0, 1, w, dtype=np.float32)[None, None, :]
        return (sigmoid(batch[:, :1]) * r_d**2 + r_w).astype(np.float32)

    volume = image((5, 3, 4))
    predict = functools.partial(predict_volume, forward=ramps, rule=SizeRule())
    probs = flip_tta(volume, predict)
    # Over the 8 flips r_d^2 is mirrored half the time: (r^2 + (1 - r)^2) / 2 for r in
    # 0, 1/4, 1/2, 3/4, 1; r_w averages to 1/2 everywhere.
    d_term = np.array([0.5, 0.3125, 0.25, 0.3125, 0.5])[:, None, None]
    expected = sigmoid(volume[0]) * d_term + 0.5
    assert probs.shape == (1, 5, 3, 4)
    np.testing.assert_allclose(probs[0], expected, atol=1e-6)


def test_flip_tta_rejects_a_predict_of_the_wrong_shape():
    with pytest.raises(ValueError, match="predict returned shape"):
        flip_tta(image((4, 4, 4)), lambda x: x[:, :-1])
