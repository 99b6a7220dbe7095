"""K-fold splits: seeded, disjoint, saved once and never silently regenerated."""

from __future__ import annotations

import json

import pytest

from train.splits import SplitError, fold_cases, load_or_create_splits, make_splits

IDS = [f"case{i:02d}" for i in range(23)]


def test_folds_partition_the_cases_and_depend_only_on_the_seed():
    splits = make_splits(IDS, 5, seed=7)
    val = [i for part in splits["folds"] for i in part]
    assert sorted(val) == IDS and len(set(val)) == len(IDS)
    assert sorted(len(p) for p in splits["folds"]) == [4, 4, 5, 5, 5]
    assert make_splits(list(reversed(IDS)), 5, seed=7) == splits
    assert make_splits(IDS, 5, seed=8) != splits


def test_fold_trains_on_the_other_folds_and_test_cases_are_held_out():
    splits = make_splits(IDS, 5, seed=0, test_fraction=0.2)
    assert len(splits["test"]) == 5
    train, val = fold_cases(splits, 2)
    assert not set(train) & set(val) and not set(train + val) & set(splits["test"])
    assert sorted(train + val + splits["test"]) == IDS


def test_saved_split_is_reused_and_a_changed_dataset_is_refused(tmp_path):
    first = load_or_create_splits(tmp_path, IDS, 5, seed=0)
    again = load_or_create_splits(tmp_path, IDS, 5, seed=99)  # seed ignored: file wins
    assert again == first == json.loads((tmp_path / "splits.json").read_text())
    with pytest.raises(SplitError, match="case22"):
        load_or_create_splits(tmp_path, IDS[:-1], 5, seed=0)
    with pytest.raises(SplitError, match="asks 3"):
        load_or_create_splits(tmp_path, IDS, 3, seed=0)


def test_too_few_cases_for_the_folds():
    with pytest.raises(SplitError, match="cannot make 5 folds"):
        make_splits(IDS[:4], 5, seed=0)
