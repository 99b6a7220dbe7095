"""The localisation window (paper 002, section 2.3): placed on the tumour, clamped at the
volume's borders, centred where the volume is smaller; cut and pasted back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from submission.predict.tumour_window import extract_window, paste_window, tumour_window_start

SHAPE = (64, 48, 40)


def blob(lo, hi, shape=SHAPE):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def test_window_is_centred_on_the_tumour_bounding_box():
    # bounding box 20..27, 10..15, 14..19: centres 23.5, 12.5, 16.5
    start = tumour_window_start(blob((20, 10, 14), (28, 16, 20)), 16)
    assert start == (16, 5, 9)  # the window's centre s + 7.5 is the box's centre
    window = blob(start, np.add(start, 16))
    assert window[blob((20, 10, 14), (28, 16, 20))].all()  # the whole tumour is inside


def test_window_is_clamped_inside_the_volume_at_both_borders():
    assert tumour_window_start(blob((0, 0, 0), (3, 2, 2)), 16) == (0, 0, 0)
    far = tumour_window_start(blob((60, 45, 38), (64, 48, 40)), 16)
    assert far == (64 - 16, 48 - 16, 40 - 16)
    # an offset (training jitter) moves the centre, and the clamp still holds
    assert tumour_window_start(blob((30, 20, 18), (34, 24, 22)), 16, offset=(5, -3, 100)) == (
        29,
        11,
        24,
    )


def test_axes_smaller_than_the_window_are_centred_and_padded():
    mask = blob((2, 3, 1), (5, 6, 4), shape=(10, 48, 6))
    start = tumour_window_start(mask, (16, 16, 16))
    assert start[0] == -3 and start[2] == -5  # (16 - 10) / 2 and (16 - 6) / 2 before it
    assert start[1] == 0  # the other axis is still placed on the tumour, clamped


def test_empty_mask_gives_the_volume_centre_and_regions_use_their_union():
    assert tumour_window_start(np.zeros(SHAPE, bool), 16) == (24, 16, 12)
    regions = np.stack([blob((20, 10, 14), (24, 12, 16)), blob((24, 12, 16), (28, 16, 20))])
    assert tumour_window_start(regions, 16) == tumour_window_start(regions.any(axis=0), 16)


@pytest.mark.parametrize(
    ("mask", "crop", "message"),
    [
        (np.zeros((4, 4)), 2, "expected a"),
        (np.zeros((4, 4, 4)), 0, "crop_dhw must be one int or 3 ints, each >= 1"),
        (np.zeros((4, 4, 4)), (2, 2), "crop_dhw must be one int or 3 ints"),
    ],
)
def test_bad_arguments_name_the_value(mask, crop, message):
    with pytest.raises(ValueError, match=message):
        tumour_window_start(mask, crop)


def test_extract_then_paste_restores_the_window_and_fills_the_rest():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(2, *SHAPE)).astype(np.float32)
    start = (10, -4, 30)  # crosses the lower border of axis 1 and the upper of axis 2
    window = extract_window(volume, start, (16, 16, 16), fill=-7)
    assert window.shape == (2, 16, 16, 16) and window.dtype == np.float32
    np.testing.assert_array_equal(window[:, :, 4:, :10], volume[:, 10:26, 0:12, 30:40])
    assert (window[:, :, :4] == -7).all() and (window[:, :, :, 10:] == -7).all()
    back = paste_window(window, start, SHAPE, fill=0)
    inside = (slice(None), slice(10, 26), slice(0, 12), slice(30, 40))
    np.testing.assert_array_equal(back[inside], volume[inside])
    outside = np.ones(back.shape, dtype=bool)
    outside[inside] = False
    assert not back[outside].any()


def test_extract_copies_and_keeps_leading_axes():
    volume = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
    window = extract_window(volume, (1, 2, 3), 4)
    np.testing.assert_array_equal(window, volume[1:5, 2:6, 3:7])
    window[...] = -1
    assert (volume >= 0).all()  # never a view into the input
    assert paste_window(window, (100, 0, 0), SHAPE).sum() == 0  # wholly outside: all fill
