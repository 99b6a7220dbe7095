"""Post-processing: nesting, ET minimum volume (paper 002, 2.6), small components, labels."""

import numpy as np
import pytest

from submission.brats import get_scheme
from submission.predict.postprocess import (
    apply_et_threshold,
    enforce_nesting,
    postprocess,
    remove_small_components,
)

S2021 = get_scheme("2021")


def regions_from(wt, tc, et):
    return np.array([wt, tc, et], dtype=bool)[:, None, None, :]  # (3, 1, 1, V)


def test_labels_2021_default_mapping():
    r = regions_from([0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1])
    assert postprocess(r).ravel().tolist() == [0, 2, 1, 4]
    assert postprocess(r, "2023").ravel().tolist() == [0, 2, 1, 3]
    no_cyst = np.concatenate([r, np.zeros_like(r[:1])])  # 2024-ped's fourth region, CC
    assert postprocess(no_cyst, "2024-ped").ravel().tolist() == [0, 4, 2, 1]


def test_nesting_grows_outer_regions():
    r = regions_from([0, 0, 1], [0, 1, 0], [1, 0, 0])
    nested = enforce_nesting(r, S2021)
    np.testing.assert_array_equal(nested[:, 0, 0], [[1, 1, 1], [1, 1, 0], [1, 0, 0]])


def test_et_threshold_to_necrosis_and_to_background():
    r = regions_from([1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0])  # 2 ET voxels
    np.testing.assert_array_equal(
        apply_et_threshold(r, S2021, 3), regions_from([1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0])
    )
    np.testing.assert_array_equal(
        apply_et_threshold(r, S2021, 3, "background"),
        regions_from([0, 0, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]),
    )
    assert postprocess(r, et_threshold=3).ravel().tolist() == [1, 1, 1, 2]
    assert postprocess(r, et_threshold=3, et_replace="background").ravel().tolist() == [0, 0, 1, 2]


def test_et_threshold_is_strict_and_zero_disables():
    r = regions_from([1, 1, 1], [1, 1, 1], [1, 1, 0])  # exactly 2 ET voxels
    assert postprocess(r, et_threshold=2).ravel().tolist() == [4, 4, 1]  # not fewer than 2
    assert postprocess(r, et_threshold=0).ravel().tolist() == [4, 4, 1]
    assert postprocess(r, et_threshold=600).ravel().tolist() == [1, 1, 1]


def test_remove_small_components_26_connected():
    mask = np.zeros((6, 6, 6), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # diagonal neighbours: one component of 2
    mask[4:6, 4:6, 4:6] = True  # 8 voxels
    assert remove_small_components(mask, 3).sum() == 8
    assert remove_small_components(mask, 2).sum() == 10
    assert remove_small_components(mask, 9).sum() == 0
    assert remove_small_components(mask, 0).sum() == 10


def test_min_component_per_region():
    r = np.zeros((3, 8, 8, 8), bool)
    r[0, 0:4, 0:4, 0:4] = True  # WT 64 voxels
    r[0, 6, 6, 6] = True  # WT speck
    r[2, 1, 1, 1] = True  # ET single voxel inside WT
    seg = postprocess(r, min_component={"WT": 5})
    assert seg[6, 6, 6] == 0 and seg[1, 1, 1] == 4 and (seg == 2).sum() == 63
    seg = postprocess(r, min_component=5)  # ET speck removed too
    assert seg[1, 1, 1] == 2
    with pytest.raises(ValueError, match="unknown regions"):
        postprocess(r, min_component={"XX": 5})


def test_rc_region_of_2024_gli_is_kept_and_tumour_wins():
    r = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0], [1, 1, 0]], bool)[:, None, None, :]
    assert postprocess(r, "2024-gli").ravel().tolist() == [2, 4, 0]
