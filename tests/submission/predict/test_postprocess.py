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


@pytest.mark.parametrize(
    ("rule", "labels"),
    [
        # after nesting, ET removed: its voxels stay TC (necrosis), also v3 and v4, which
        # the TC model did not predict (v4 not even WT)
        ("necrosis", [1, 1, 2, 1, 1, 0]),
        # after nesting, ET removed with TC and WT: v1 leaves the TC its model predicted
        ("background", [1, 0, 2, 0, 0, 0]),
        # paper 002, 2.6: ET emptied before nesting, TC and WT are their models' own
        ("empty", [1, 1, 2, 2, 0, 0]),
    ],
)
def test_et_below_threshold_under_each_rule(rule, labels):
    """The ET model predicts 3 voxels: v1 inside the TC model's TC, v3 inside the WT
    model's WT only, v4 outside both; an ET threshold of 4 voxels removes them."""
    r = regions_from(
        [1, 1, 1, 1, 0, 0],  # WT model
        [1, 1, 0, 0, 0, 0],  # TC model
        [0, 1, 0, 1, 1, 0],  # ET model
    )
    assert postprocess(r, et_threshold=4, et_replace=rule).ravel().tolist() == labels
    # 3 voxels are not fewer than 3: ET kept and nested (TC and WT grown) by every rule
    kept = [1, 4, 2, 4, 4, 0]
    assert postprocess(r, et_threshold=3, et_replace=rule).ravel().tolist() == kept
    assert postprocess(r, et_threshold=0, et_replace=rule).ravel().tolist() == kept


def test_unknown_et_replace_names_the_choices():
    with pytest.raises(ValueError, match="necrosis, background, empty, got 'edema'"):
        postprocess(regions_from([1], [1], [1]), et_threshold=4, et_replace="edema")
