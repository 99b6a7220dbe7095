"""A member's manifest form: written and parsed back, optional keys defaulted."""

from __future__ import annotations

import pytest

from submission.predict.members import Member, ModelFile, member_from_dict
from submission.predict.sliding_window import SizeRule

MEMBER = Member(
    key="stage1-wt",
    fold=2,
    regions=("WT",),
    files={
        "onnx": ModelFile("a/f2.onnx", "ab" * 32, "fp32", {"max_abs_diff": 1e-7}),
        "onnx-fp16": ModelFile("a/f2.fp16.onnx", "cd" * 32, "fp16"),
    },
    stage="localization",
    architecture={"name": "resunet", "params": {"base_filters": 8}},
    size_rule=SizeRule((16, 16, 8), (None, None, 32)),
    patch=(64, 64, 32),
    outputs="logits",
)


def test_member_round_trips_through_its_dict():
    raw = MEMBER.to_dict()
    assert raw["size_rule"] == {"divisors": [16, 16, 8], "fixed": [None, None, 32]}
    assert raw["files"]["onnx"]["parity"] == {"max_abs_diff": 1e-7}
    assert member_from_dict(raw) == MEMBER
    assert MEMBER.name == "stage1-wt/fold2"


def test_optional_keys_take_their_defaults():
    member = member_from_dict(
        {
            "key": "seg",
            "fold": "1",
            "regions": ["WT", "TC"],
            "files": {"onnx": {"path": "x", "sha256": "0"}},
        }
    )
    assert (member.fold, member.stage, member.outputs, member.patch) == (
        1,
        "segmentation",
        "probabilities",
        None,
    )
    assert member.size_rule == SizeRule((1, 1, 1), (None, None, None))
    assert member.files["onnx"] == ModelFile("x", "0", "fp32", None)
    with pytest.raises(KeyError):
        member_from_dict({"key": "seg", "fold": 0, "files": {}})
