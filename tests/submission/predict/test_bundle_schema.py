"""A bundle whose manifest has a value of the wrong type or size, or a model file that
cannot be read or loaded, is refused when the bundle is loaded: a BundleError naming the
field or the file (exit 3), before any case runs (issue 13, weaknesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from submission.predict.bundle import (
    BundleError,
    Manifest,
    Recommended,
    manifest_from_dict,
    read_manifest,
)
from submission.predict.bundle_files import sha256_file
from submission.predict.members import Member, ModelFile
from submission.predict.sliding_window import SizeRule
from tests.submission.predict.onnx_bundles import channel_bundle


def edited(bundle, path, value):
    """``bundle`` with the manifest value at ``path`` (keys and list indices) replaced by
    ``value`` (``KeyError``: removed), unchecked."""
    raw = json.loads((bundle / "manifest.json").read_text())
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    if value is KeyError:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    (bundle / "manifest.json").write_text(json.dumps(raw))
    return bundle


M2 = ("members", 2)
BAD = [
    (
        ("recommended", "et_threshold"),
        "600",
        'recommended.et_threshold: expected an integer, got "600"',
    ),
    (
        ("recommended", "et_threshold"),
        True,
        "recommended.et_threshold: expected an integer, got true",
    ),
    (("recommended", "top_k"), 1.5, "recommended.top_k: expected an integer, got 1.5"),
    (("recommended", "threshold"), "0.5", "recommended.threshold: expected a number or a mapping"),
    (
        ("recommended", "threshold"),
        {"WT": "0.3", "TC": 0.5, "ET": 0.5},
        'recommended.threshold.WT: expected a number, got "0.3"',
    ),
    (("recommended", "overlap"), None, "recommended.overlap: expected a number, got null"),
    (("recommended", "ensemble"), 3, "recommended.ensemble: expected a string, got 3"),
    (
        ("recommended", "confidence_empty"),
        0,
        "recommended.confidence_empty: expected a string, got 0",
    ),
    (("recommended", "colour"), "red", "recommended: unknown key 'colour'"),
    (("recommended",), [], "recommended: expected a mapping (a JSON object), got []"),
    (("members",), {"seg": {}}, 'members: expected a non-empty list of members, got {"seg": {}}'),
    (("members",), [], "members: expected a non-empty list of members, got []"),
    (("members",), KeyError, "top level: missing key 'members'"),
    (("members", 1), "seg", 'members[1]: expected a mapping (a JSON object), got "seg"'),
    ((*M2, "patch"), [0, 0, 0], "members[2].patch: expected three integers 1..1024, got [0, 0, 0]"),
    (
        (*M2, "patch"),
        [4096] * 3,
        "members[2].patch: expected three integers 1..1024, got [4096, 4096, 4096]",
    ),
    ((*M2, "patch"), [16, 16], "members[2].patch: expected three integers 1..1024, got [16, 16]"),
    ((*M2, "patch"), [16.0, 16, 16], "members[2].patch: expected three integers 1..1024"),
    (
        (*M2, "size_rule", "divisors"),
        [10**9] * 3,
        "members[2].size_rule.divisors: expected three integers 1..256",
    ),
    (
        (*M2, "size_rule", "divisors"),
        "888",
        'members[2].size_rule.divisors: expected three integers 1..256, got "888"',
    ),
    (
        (*M2, "size_rule", "fixed"),
        [0, None, None],
        "members[2].size_rule.fixed: expected three integers 1..1024 or null",
    ),
    ((*M2, "fold"), 1.5, "members[2].fold: expected an integer >= 0, got 1.5"),
    ((*M2, "fold"), "2", 'members[2].fold: expected an integer >= 0, got "2"'),
    ((*M2, "fold"), -1, "members[2].fold: expected an integer >= 0, got -1"),
    ((*M2, "key"), "", 'members[2].key: expected a non-empty string, got ""'),
    ((*M2, "regions"), "WT", 'members[2].regions: expected a list, got "WT"'),
    ((*M2, "architecture"), "resunet", "members[2].architecture: expected a mapping"),
    ((*M2, "files"), [], "members[2].files: expected a non-empty mapping of file format to file"),
    (
        (*M2, "files", "onnx", "sha256"),
        "abc",
        'members[2].files.onnx.sha256: expected 64 lowercase hexadecimal digits, got "abc"',
    ),
    (
        (*M2, "files", "onnx", "precision"),
        "fp64",
        'members[2].files.onnx.precision: expected one of ["fp32", "fp16"], got "fp64"',
    ),
    (
        (*M2, "files", "onnx", "parity"),
        {"max_abs_diff": "small"},
        'members[2].files.onnx.parity.max_abs_diff: expected a number, got "small"',
    ),
    ((*M2, "weights"), "x", "members[2]: unknown key 'weights'"),
    ((*M2, "window"), 3, 'members[2].window: expected one of ["volume", "patch"], got 3'),
    (
        (*M2, "window"),
        "tiles",
        'members[2].window: expected one of ["volume", "patch"], got "tiles"',
    ),
    (
        ("preprocessing", "divisor"),
        10**9,
        "preprocessing.divisor: expected an integer 1..256, got 1000000000",
    ),
    (
        ("preprocessing", "margin"),
        "4",
        'preprocessing.margin: expected an integer 0..1024, got "4"',
    ),
    (("preprocessing", "crop"), "middle", "preprocessing: unknown crop policy 'middle'"),
    (
        ("localization",),
        {"window": [0, 0, 0]},
        "localization.window: expected three integers 1..1024, got [0, 0, 0]",
    ),
    (("channels",), "t1n,t1c,t2w,t2f", 'channels: expected a list, got "t1n,t1c,t2w,t2f"'),
    (("label_scheme",), 2021, "label_scheme: expected a string, got 2021"),
    (("signed_by",), "me", "top level: unknown key 'signed_by'"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD)
def test_a_bad_manifest_value_is_a_bundle_error_naming_the_field(tmp_path, path, value, message):
    bundle = edited(channel_bundle(tmp_path / "b"), path, value)
    with pytest.raises(BundleError) as raised:
        read_manifest(bundle)
    assert str(raised.value).startswith(f"manifest.json: {message}")


def test_a_patch_window_needs_the_members_patch(tmp_path):
    bundle = edited(channel_bundle(tmp_path / "b"), (*M2, "window"), "patch")
    assert read_manifest(bundle).members[2].window == "patch"
    edited(bundle, (*M2, "patch"), None)
    with pytest.raises(BundleError, match="window 'patch' needs the member's patch"):
        read_manifest(bundle)


def test_every_field_of_a_full_manifest_passes_the_schema():
    files = {
        "onnx": ModelFile(
            "wt/fold0.onnx",
            "ab" * 32,
            "fp32",
            {"max_abs_diff": 3e-7, "tolerance": 1e-4, "input_shape": [1, 4, 32, 32, 32]},
        ),
        "onnx-fp16": ModelFile("wt/fold0.fp16.onnx", "cd" * 32, "fp16", None),
    }
    architecture = {"name": "effunet", "params": {"depth": 32}}
    members = (
        Member("wt", 0, ("WT",), files, "localization", architecture, SizeRule(), (32,) * 3),
        Member(
            "seg",
            0,
            ("WT", "TC", "ET"),
            files,
            size_rule=SizeRule((32, 32, 1), (None, None, 32)),
            outputs="logits",
        ),
    )
    manifest = Manifest(
        members,
        localization=(128, 128, 128),
        recommended=Recommended(
            "confidence", 1, 600, "background", {"WT": 0.3, "TC": 0.5, "ET": 0.4}, 0.25
        ),
        bratskit_version="0.1.0",
        created="2026-11-21T10:00:00+00:00",
    )
    assert manifest_from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def bratskit(*args):
    return subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)], capture_output=True, text=True
    )


def test_predict_and_bundle_exit_3_naming_the_field_before_any_case(case_factory, tmp_path):
    inputs = case_factory()
    bundle = edited(channel_bundle(tmp_path / "b"), ("members",), {"seg": {}})
    out = tmp_path / "out"
    result = bratskit("predict", "--input", inputs, "--output", out, "--bundle", bundle)
    assert result.returncode == 3, result.stderr
    assert "error: manifest.json: members: expected a non-empty list" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
    edited(bundle, ("members",), [])
    result = bratskit("bundle", bundle)
    assert result.returncode == 3 and "manifest.json: members: expected" in result.stderr


def test_a_folder_where_a_model_file_should_be_is_exit_3_naming_it(case_factory, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    model = bundle / "seg-fold1.onnx"
    model.unlink()
    model.mkdir()
    out = tmp_path / "out"
    result = bratskit("predict", "--input", case_factory(), "--output", out, "--bundle", bundle)
    assert result.returncode == 3, result.stderr
    assert f"seg/fold1: onnx file {model} is not a file (a folder?)" in result.stderr


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_a_model_file_no_backend_can_load_is_exit_3_naming_it(
    case_factory, tmp_path, backend, content
):
    # The sha256 matches (the manifest is rewritten): the file itself was exported broken.
    bundle = channel_bundle(tmp_path / "b")
    model = bundle / "seg-fold0.onnx"
    data = model.read_bytes()
    model.write_bytes(b"not a model " * 8 if content == "garbage" else data[: len(data) // 3])
    edited(bundle, ("members", 0, "files", "onnx", "sha256"), sha256_file(model))
    out = tmp_path / "out"
    result = bratskit(
        "predict", "--input", case_factory(), "--output", out, "--bundle", bundle,
        "--backend", backend, "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert f"error: {backend} cannot load {model}: " in result.stderr
    assert "re-export the bundle" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
