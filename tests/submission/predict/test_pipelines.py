"""Label-based imported members: label probabilities -> region probabilities -> the
ensemble's region masks; ``argmax`` writes what nnU-Net's argmax writes."""

import numpy as np
import pytest

from submission.brats import get_scheme, regions_to_labels
from submission.predict.ensemble import argmax_masks, region_masks
from submission.predict.pipelines import label_regions, region_probabilities

SCHEME = get_scheme("2021")
#: nnU-Net's BraTS 2021 label-based channel order: background, edema, necrosis, enhancing.
LABELS = (0, 2, 1, 4)


def _softmax(rng, shape, k=4):
    logits = rng.normal(size=(k, *shape)).astype(np.float32) * 3
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def test_regions_of_a_label_based_member_are_those_its_labels_make_up():
    assert label_regions(LABELS, SCHEME.regions) == ("WT", "TC", "ET")
    assert label_regions((0, 2, 1), SCHEME.regions) == ()  # no ET: neither TC nor WT
    assert label_regions((0, 4), SCHEME.regions) == ("ET",)


def test_region_probability_is_the_sum_of_its_labels():
    p = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32).reshape(4, 1, 1, 1)
    regions = region_probabilities(p, LABELS, ("WT", "TC", "ET"), SCHEME.regions)
    np.testing.assert_allclose(regions.ravel(), [0.9, 0.7, 0.4], rtol=1e-6)


def test_argmax_of_regions_is_the_argmax_of_the_labels():
    rng = np.random.default_rng(0)
    probs = _softmax(rng, (12, 10, 8))
    regions = region_probabilities(probs, LABELS, ("WT", "TC", "ET"), SCHEME.regions)
    masks = argmax_masks(
        dict(zip(("WT", "TC", "ET"), regions)), SCHEME.region_names, SCHEME.regions
    )
    expected = np.array(LABELS, dtype=np.uint8)[np.argmax(probs, axis=0)]
    np.testing.assert_array_equal(regions_to_labels(masks, SCHEME), expected)
    # ...and differs from thresholding the regions at 0.5 somewhere (it is another rule).
    thresholded = region_masks(
        {r: [p] for r, p in zip(("WT", "TC", "ET"), regions)},
        SCHEME.region_names,
        "mean",
        dict.fromkeys(SCHEME.region_names, 0.5),
    )
    assert (regions_to_labels(thresholded, SCHEME) != expected).any()


def test_argmax_ensemble_averages_members_then_takes_the_most_probable_label():
    rng = np.random.default_rng(1)
    a, b = _softmax(rng, (6, 5, 4)), _softmax(rng, (6, 5, 4))
    per_member = [
        region_probabilities(p, LABELS, ("WT", "TC", "ET"), SCHEME.regions) for p in (a, b)
    ]
    probs = {r: [m[i] for m in per_member] for i, r in enumerate(("WT", "TC", "ET"))}
    masks = region_masks(probs, SCHEME.region_names, "argmax", {}, scheme_regions=SCHEME.regions)
    expected = np.array(LABELS, dtype=np.uint8)[np.argmax((a + b) / 2, axis=0)]
    np.testing.assert_array_equal(regions_to_labels(masks, SCHEME), expected)


def test_argmax_needs_one_label_per_region():
    regions = {"WT": frozenset({1, 2, 4}), "TC": frozenset({1, 4})}  # TC owns 1 and 4
    probs = {"WT": np.full((2, 2, 2), 0.9), "TC": np.full((2, 2, 2), 0.8)}
    with pytest.raises(ValueError, match="TC owns"):
        argmax_masks(probs, ("WT", "TC"), regions)
