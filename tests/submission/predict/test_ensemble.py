"""Hand-computed expectations for the three ensemble methods (papers 002 2.5, 004 3.2)."""

import numpy as np
import pytest

from submission.predict.ensemble import (
    confidence_members,
    confidence_scores,
    ensemble,
    ensemble_probabilities,
    region_masks,
    top_k_members,
)


def members(*rows):
    """(N, R=1, 1, 1, V) from per-member lists of voxel probabilities."""
    return np.array(rows, dtype=np.float32)[:, None, None, None, :]


def voxels(mask):
    return mask[0, 0, 0].astype(int).tolist()


def test_mean_averages_then_thresholds_strictly():
    p = members([0.9, 0.6, 0.2, 0.5], [0.7, 0.4, 0.1, 0.5])
    # means: 0.8, 0.5, 0.15, 0.5 -> strictly above 0.5
    assert voxels(ensemble(p, "mean")) == [1, 0, 0, 0]
    assert voxels(ensemble(p, "mean", threshold=0.4)) == [1, 1, 0, 1]


def test_vote_needs_strict_majority_with_even_n():
    p = members(
        [0.9, 0.9, 0.9, 0.1], [0.9, 0.9, 0.1, 0.1], [0.9, 0.1, 0.1, 0.1], [0.9, 0.1, 0.1, 0.9]
    )
    # votes per voxel: 4, 2, 1, 1 -> more than N/2 = 2 only for the first
    assert voxels(ensemble(p, "vote")) == [1, 0, 0, 0]


def test_vote_odd_n_majority():
    p = members([0.9, 0.9, 0.1], [0.9, 0.1, 0.1], [0.1, 0.9, 0.9])
    assert voxels(ensemble(p, "vote")) == [1, 1, 0]


@pytest.mark.parametrize("method", ["mean", "vote", "confidence"])
def test_single_member_is_its_own_thresholded_map(method):
    p = members([0.9, 0.51, 0.5, 0.0])
    assert voxels(ensemble(p, method)) == [1, 1, 0, 0]


def test_confidence_scores_are_mean_prob_over_segmented_voxels():
    p = members([0.9, 0.7, 0.2, 0.1], [0.6, 0.3, 0.3, 0.3], [0.4, 0.4, 0.1, 0.0])
    scores = confidence_scores(p, empty="zero")
    # member 0: mean(0.9, 0.7) = 0.8; member 1: 0.6; member 2 segments nothing -> 0
    np.testing.assert_allclose(scores[:, 0], [0.8, 0.6, 0.0], atol=1e-6)


def test_confidence_averages_top_half_members():
    p = members(
        [0.9, 0.7, 0.2, 0.1], [0.6, 0.3, 0.3, 0.3], [0.4, 0.4, 0.1, 0.0], [0.55, 0.45, 0.9, 0.9]
    )
    # confidences: 0.8, 0.6, 0, mean(0.55, 0.9, 0.9)=0.7833 -> k = ceil(4/2) = 2: members 0, 3
    combined = ensemble_probabilities(p, "confidence")
    np.testing.assert_allclose(combined[0, 0, 0], [0.725, 0.575, 0.55, 0.5], atol=1e-6)
    assert voxels(ensemble(p, "confidence")) == [1, 1, 1, 0]
    # k = 1: member 0 alone
    assert voxels(ensemble(p, "confidence", top_k=1)) == [1, 1, 0, 0]


def test_confidence_ties_go_to_earlier_member():
    p = members([0.8, 0.1, 0.0], [0.1, 0.8, 0.0], [0.0, 0.0, 0.8])
    # all three have confidence 0.8; k = 2 keeps members 0 and 1
    np.testing.assert_array_equal(top_k_members(confidence_scores(p), 2), [[0, 1]])
    np.testing.assert_allclose(ensemble_probabilities(p, "confidence")[0, 0, 0], [0.45, 0.45, 0.0])


def test_confidence_with_members_that_predict_nothing():
    p = members([0.1, 0.2, 0.3], [0.0, 0.0, 0.0], [0.9, 0.2, 0.8])
    # zero: confidences 0, 0, 0.85: k = 2 -> member 2 and, by order among the zeros, member 0
    zero = {"confidence_empty": "zero"}
    np.testing.assert_array_equal(top_k_members(confidence_scores(p, empty="zero"), 2), [[2, 0]])
    np.testing.assert_allclose(
        ensemble_probabilities(p, "confidence", **zero)[0, 0, 0], [0.5, 0.2, 0.55]
    )
    assert voxels(ensemble(p, "confidence", **zero)) == [0, 0, 1]
    # exclude (the default): member 2 alone segments, so it decides alone
    np.testing.assert_allclose(ensemble_probabilities(p, "confidence")[0, 0, 0], [0.9, 0.2, 0.8])
    # nobody predicts anything: empty output for every method
    empty = members([0.1, 0.2], [0.0, 0.3])
    for method in ("mean", "vote", "confidence"):
        assert voxels(ensemble(empty, method)) == [0, 0]


def test_confidence_chooses_members_per_region():
    # region 0: member 1 most confident; region 1: member 0
    p = np.array([[[0.6, 0.6], [0.95, 0.95]], [[0.99, 0.99], [0.7, 0.1]]], dtype=np.float32)
    p = p[:, :, None, None, :]  # (N=2, R=2, 1, 1, 2)
    np.testing.assert_array_equal(top_k_members(confidence_scores(p), 1), [[1], [0]])
    out = ensemble_probabilities(p, "confidence", top_k=1)
    np.testing.assert_allclose(out[:, 0, 0], [[0.99, 0.99], [0.95, 0.95]])


def test_per_region_thresholds():
    p = np.full((1, 3, 1, 1, 1), 0.45, dtype=np.float32)
    assert ensemble(p, "mean", threshold=[0.4, 0.5, 0.3]).ravel().tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "median"}, "unknown ensemble method"),
        ({"method": "confidence", "top_k": 3}, "top-k must lie in 1..2"),
        ({"method": "confidence", "top_k": 0}, "top-k must lie in 1..2"),
        ({"threshold": 1.5}, "thresholds must lie"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ensemble(members([0.5], [0.5]), **kwargs)


def test_region_masks_per_region_in_the_scheme_order():
    """Per region its own members and threshold; a region no member predicts stays empty."""
    probs = {
        "WT": [np.array([[[0.9, 0.45, 0.2]]]), np.array([[[0.7, 0.45, 0.2]]])],
        "TC": [np.array([[[0.6, 0.6, 0.1]]])],  # one member only predicts TC
        "ET": [np.array([[[0.2, 0.9, 0.3]]]), np.array([[[0.2, 0.9, 0.2]]])],
    }
    thresholds = {"WT": 0.4, "TC": 0.5, "ET": 0.5}
    out = region_masks(probs, ("WT", "TC", "ET", "RC"), "mean", thresholds)
    assert out.dtype == bool and out.shape == (4, 1, 1, 3)
    assert out[:, 0, 0].astype(int).tolist() == [[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]]
    vote = region_masks(probs, ("ET", "WT"), "vote", {"WT": 0.8, "ET": 0.25})
    assert vote[:, 0, 0].astype(int).tolist() == [[0, 1, 0], [0, 0, 0]]


def test_region_masks_cache_reuses_a_region_only_for_the_same_choice():
    rng = np.random.default_rng(0)
    probs = {r: list(rng.uniform(size=(3, 4, 4, 4)).astype(np.float32)) for r in ("WT", "TC")}
    cache: dict = {}
    first = region_masks(probs, ("WT", "TC"), "confidence", {"WT": 0.5, "TC": 0.5}, 2, cache)
    assert sorted(cache) == [
        ("confidence", 2, "exclude", "TC", 0.5),
        ("confidence", 2, "exclude", "WT", 0.5),
    ]
    # one region's threshold changes: the other's mask comes from the cache, unchanged
    second = region_masks(probs, ("WT", "TC"), "confidence", {"WT": 0.5, "TC": 0.3}, 2, cache)
    np.testing.assert_array_equal(second[0], first[0])
    assert len(cache) == 3
    for out, t in ((first, 0.5), (second, 0.3)):
        expected = ensemble(np.stack(probs["TC"])[:, None], "confidence", t, 2)[0]
        np.testing.assert_array_equal(out[1], expected)
    assert region_masks(probs, ("WT", "TC"), "mean", {"WT": 0.5, "TC": 0.3}, None, cache).any()
    assert len(cache) == 5  # another method is another entry
    # another confidence rule is another entry; mean has no rule, so none for it
    thresholds = {"WT": 0.5, "TC": 0.3}
    region_masks(probs, ("WT", "TC"), "confidence", thresholds, 2, cache, "zero")
    region_masks(probs, ("WT", "TC"), "mean", thresholds, None, cache, "zero")
    assert len(cache) == 7 and ("confidence", 2, "zero", "TC", 0.3) in cache


# -- the confidence of a member that segments nothing (confidence_empty) ----------------
# Four members, two regions, threshold 0.5. Region 0: every member segments something, so
# the three rules agree. Region 1: members 1 and 3 segment nothing.
FOUR = np.array(
    [
        [[0.9, 0.9, 0.1, 0.1], [0.9, 0.7, 0.6, 0.1]],  # member 0
        [[0.6, 0.6, 0.6, 0.1], [0.1, 0.3, 0.1, 0.0]],  # member 1: empty in region 1
        [[0.8, 0.2, 0.2, 0.2], [0.6, 0.8, 0.7, 0.1]],  # member 2
        [[0.7, 0.7, 0.7, 0.7], [0.4, 0.2, 0.0, 0.2]],  # member 3: empty in region 1
    ],
    dtype=np.float32,
)[:, :, None, None, :]  # (N=4, R=2, 1, 1, V=4)


def test_confidence_scores_of_empty_members_under_each_rule():
    # region 0: mean p over the segmented voxels, the same for every rule
    region0 = [0.9, 0.6, 0.8, 0.7]
    # region 1: members 0 and 2 segment (0.9, 0.7, 0.6) and (0.6, 0.8, 0.7)
    segmenting = {0: (0.9 + 0.7 + 0.6) / 3, 2: (0.6 + 0.8 + 0.7) / 3}
    empty_scores = {
        "zero": (0.0, 0.0),
        "exclude": (-np.inf, -np.inf),
        # 1 - mean p over all four voxels: 1 - 0.125 and 1 - 0.2
        "background": (0.875, 0.8),
    }
    for rule, (s1, s3) in empty_scores.items():
        scores = confidence_scores(FOUR, empty=rule)
        np.testing.assert_allclose(scores[:, 0], region0, atol=1e-6)
        np.testing.assert_allclose(scores[:, 1], [segmenting[0], s1, segmenting[2], s3], atol=1e-6)


@pytest.mark.parametrize(
    ("rule", "k", "chosen", "mask1"),
    [
        # zero: empty members rank last (0 < any segmenting score) and fill the top-k
        ("zero", 2, [0, 2], [1, 1, 1, 0]),  # mean of 0, 2: 0.75, 0.75, 0.65, 0.1
        ("zero", 3, [0, 2, 1], [1, 1, 0, 0]),  # + member 1: 0.533, 0.6, 0.467, 0.067
        # exclude: only the two members that segment, even when k = 3
        ("exclude", 2, [0, 2], [1, 1, 1, 0]),
        ("exclude", 3, [0, 2], [1, 1, 1, 0]),
        # background: empty members rank first (0.875, 0.8 above 0.733 and 0.7)
        ("background", 2, [1, 3], [0, 0, 0, 0]),  # 0.25, 0.25, 0.05, 0.1
        ("background", 3, [1, 3, 0], [0, 0, 0, 0]),  # 0.467, 0.4, 0.233, 0.1
    ],
)
def test_confidence_empty_rules_choose_and_average(rule, k, chosen, mask1):
    scores = confidence_scores(FOUR, empty=rule)
    members_r = confidence_members(scores, k, rule)
    np.testing.assert_array_equal(members_r[1], chosen)
    expected1 = FOUR[chosen, 1].mean(axis=0)
    combined = ensemble_probabilities(FOUR, "confidence", top_k=k, confidence_empty=rule)
    np.testing.assert_allclose(combined[1], expected1, atol=1e-6)
    masks = ensemble(FOUR, "confidence", top_k=k, confidence_empty=rule)
    assert masks[1, 0, 0].astype(int).tolist() == mask1
    # region 0 has no empty member: every rule picks the same members and mask
    np.testing.assert_array_equal(members_r[0], [0, 2, 3][:k])
    assert masks[0, 0, 0].astype(int).tolist() == [1, 1, 0, 0]


def test_exclude_with_one_or_no_member_segmenting():
    p = members([0.05, 0.2, 0.3], [0.9, 0.6, 0.1], [0.0, 0.4, 0.1], [0.2, 0.2, 0.2])
    # one member segments: exclude averages it alone, zero dilutes it with member 0
    assert voxels(ensemble(p, "confidence", confidence_empty="exclude")) == [1, 1, 0]
    assert voxels(ensemble(p, "confidence", confidence_empty="zero")) == [0, 0, 0]  # .475, .4
    # nobody segments: every rule averages empty members, so the region stays empty
    empty = members([0.1, 0.2], [0.0, 0.3], [0.5, 0.0], [0.2, 0.2])
    for rule in ("zero", "exclude", "background"):
        assert voxels(ensemble(empty, "confidence", confidence_empty=rule)) == [0, 0]
    np.testing.assert_array_equal(
        confidence_members(confidence_scores(empty, empty="exclude"), 2, "exclude")[0], [0, 1]
    )


def test_unknown_confidence_rule_names_the_choices():
    with pytest.raises(ValueError, match="one of zero, exclude, background, got 'never'"):
        ensemble(members([0.5], [0.5]), "confidence", confidence_empty="never")
