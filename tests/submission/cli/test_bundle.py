"""``bratskit bundle``: verify and describe a bundle, copy the files of some formats (what
``make build`` bakes into the image)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from submission.predict.bundle import read_manifest
from submission.predict.bundle_files import load_bundle, sha256_file
from submission.predict.members import ModelFile
from tests.submission.predict.onnx_bundles import channel_bundle, pointwise_member, write_bundle


def bratskit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)], capture_output=True, text=True
    )


def two_format_bundle(root: Path) -> Path:
    """channel_bundle whose members also list an ``onnx-fp16`` file (a copy, for the test)."""
    bundle = channel_bundle(root)
    manifest = read_manifest(bundle)
    members = []
    for m in manifest.members:
        src = bundle / m.files["onnx"].path
        fp16 = src.with_name(src.stem + ".fp16.onnx")
        shutil.copy(src, fp16)
        rel = str(fp16.relative_to(bundle))
        files = {**m.files, "onnx-fp16": ModelFile(rel, sha256_file(fp16), "fp16")}
        members.append(replace(m, files=files))
    return write_bundle(bundle, members)


def test_verifies_and_describes(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    result = bratskit("bundle", bundle)
    assert result.returncode == 0, result.stderr
    assert "label scheme      2021" in result.stdout and "seg/fold2" in result.stdout


def test_json_summary_names_the_manifest_sha256(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    result = bratskit("bundle", bundle, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert summary["manifest_sha256"] == digest
    assert (summary["label_scheme"], summary["members"], summary["formats"]) == (
        "2021",
        3,
        ["onnx"],
    )


def test_an_altered_file_is_an_input_error(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    model = next(bundle.rglob("*.onnx"))
    model.write_bytes(model.read_bytes() + b"\0")
    result = bratskit("bundle", bundle)
    assert result.returncode == 3
    assert "was altered or replaced" in result.stderr


def test_copy_keeps_only_the_chosen_formats(tmp_path):
    bundle = two_format_bundle(tmp_path / "b")
    out = tmp_path / "image-bundle"
    result = bratskit("bundle", bundle, "--formats", "onnx", "--copy-to", out)
    assert result.returncode == 0, result.stderr
    copied = load_bundle(out)
    assert copied.formats == {"onnx"}
    assert sorted(p.name for p in out.rglob("*.onnx")) == [f"seg-fold{k}.onnx" for k in range(3)]
    assert copied.members == tuple(
        replace(m, files={"onnx": m.files["onnx"]}) for m in read_manifest(bundle).members
    )


@pytest.mark.parametrize(
    ("formats", "message"),
    [("torchscript", "has no file of torchscript"), ("onnx,tflite", "unknown file format")],
)
def test_copy_refuses_formats_the_bundle_cannot_give(tmp_path, formats, message):
    bundle = channel_bundle(tmp_path / "b")
    out = tmp_path / "copy"
    result = bratskit("bundle", bundle, "--formats", formats, "--copy-to", out)
    assert result.returncode == 3 and message in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_copy_refuses_a_folder_with_files(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = bratskit("bundle", bundle, "--copy-to", out)
    assert result.returncode == 3 and "is not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_manifest_formats_are_those_every_member_has(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    extra = pointwise_member(bundle, "more", 0, ("WT",), np.ones((1, 4)), np.zeros(1))
    members = list(read_manifest(bundle).members)
    members[0] = replace(members[0], files={**members[0].files, "torchscript": extra.files["onnx"]})
    assert write_bundle(bundle, members) and read_manifest(bundle).formats == {"onnx"}


def _other_bundle(root: Path, key: str = "other") -> Path:
    """Two members of another key, predicting WT and TC from t2f and ET from t1c."""
    weights = np.zeros((3, 4))
    weights[[0, 1, 2], [3, 3, 1]] = 4.0
    members = [
        pointwise_member(root, key, fold, ("WT", "TC", "ET"), weights, np.zeros(3))
        for fold in range(2)
    ]
    return write_bundle(root, members)


def test_merge_makes_one_ensemble_of_every_member(tmp_path):
    a, b = channel_bundle(tmp_path / "a", folds=2), _other_bundle(tmp_path / "b")
    result = bratskit("bundle", "merge", a, b, "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    merged = load_bundle(tmp_path / "m")  # every sha256 verified in the new folder
    assert [m.name for m in merged.members] == [
        "seg/fold0",
        "seg/fold1",
        "other/fold0",
        "other/fold1",
    ]
    assert merged.recommended.ensemble == "mean"
    for m in merged.members:
        source = a if m.key == "seg" else b
        assert (tmp_path / "m" / m.files["onnx"].path).read_bytes() == (
            source / m.files["onnx"].path
        ).read_bytes()


def test_merge_refuses_collisions_and_disagreements(tmp_path):
    a = channel_bundle(tmp_path / "a", folds=2)
    again = bratskit("bundle", "merge", a, a, "--out", tmp_path / "m")
    assert again.returncode == 3
    assert "member seg/fold0, seg/fold1 is in more than one bundle" in again.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
    b = _other_bundle(tmp_path / "b")
    manifest = read_manifest(b)
    write_bundle(b, list(manifest.members), label_scheme="2023")
    other = bratskit("bundle", "merge", a, b, "--out", tmp_path / "n")
    assert other.returncode == 3 and "scheme 2023 differs from" in other.stderr
    write_bundle(b, list(manifest.members), task="gli-2023")
    write_bundle(a, list(read_manifest(a).members), task="gli-2021")
    tasks = bratskit("bundle", "merge", a, b, "--out", tmp_path / "t")
    assert tasks.returncode == 3 and "tasks gli-2021, gli-2023" in tasks.stderr
    one = bratskit("bundle", "merge", a, "--out", tmp_path / "o")
    assert one.returncode == 3 and "at least two bundles" in one.stderr
