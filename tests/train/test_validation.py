"""Out-of-fold validation predicts a case as the member's bundle will: a member trained on
random patches in sliding windows of its patch, others in one call."""

from __future__ import annotations

import dataclasses

import torch

from submission.predict.preprocess import Preprocessing
from train.cache import build_cache, training_cases
from train.recipe_files import load_config
from train.trainer import build_member_model
from train.validation import validate


def test_a_random_patch_member_is_validated_in_windows_of_its_patch(synth_train, tmp_path):
    cases = training_cases(synth_train)[:2]
    cached = list(build_cache(cases, tmp_path, Preprocessing(divisor=8), progress=False).values())
    member = dataclasses.replace(
        load_config("tiny").members[0],
        arch_params={"base_filters": 4, "levels": 3, "out_channels": 3},
        crop=(16, 16, 16),
    )
    model = build_member_model(member)
    shapes = []
    model.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape[2:])))
    checked = validate(model, cached, member, torch.device("cpu"))
    assert set(checked.dice) == {"WT", "TC", "ET"}
    assert len(shapes) > len(cached) and set(shapes) == {(16, 16, 16)}  # the brains are larger
    shapes.clear()
    validate(model, cached, dataclasses.replace(member, sampling="centre"), torch.device("cpu"))
    assert len(shapes) == len(cached)  # one call per case: the whole cropped volume
    assert all(max(s) > 16 for s in shapes)
