"""``bratskit export`` flags, exit codes and the all-or-nothing output folder."""

from __future__ import annotations

import shutil

import pytest

from export.staging import staged_folder
from submission.exit_codes import EXIT_INPUT, EXIT_USAGE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing --out"),
        (["--out", "B"], "pass one or more training RUN folders"),
        (["RUN", "--out", "B", "--format", "onnx,tflite"], "formats must be from onnx"),
        (["RUN", "--out", "B", "--format", ""], "formats must be from onnx"),
        (["RUN", "--out", "B", "--opset", "9"], "opset 9 is outside 13..20"),
        (["RUN", "--out", "B", "--regions", "WT"], "--regions apply to --onnx imports only"),
        (["RUN", "--info", "B"], "--info takes only the bundle folder"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message, tmp_path, run_export):
    args = [str(tmp_path / a) if a in ("RUN", "B") else a for a in args]
    result = run_export(*args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_the_output_may_not_hold_an_input(tiny_run, tmp_path, run_export):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    for out in (run, tmp_path):
        result = run_export(run, "--out", out, "--force")
        assert result.exit_code == EXIT_USAGE and "holds the input" in result.stderr
    assert (run / "config.yaml").is_file()


def test_unusable_inputs_exit_3(tmp_path, run_export):
    result = run_export(tmp_path / "nowhere", "--out", tmp_path / "b")
    assert result.exit_code == EXIT_INPUT and "is not a training run" in result.stderr
    result = run_export("--info", tmp_path / "nowhere")
    assert result.exit_code == EXIT_INPUT and "does not exist" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_export("--info", tmp_path / "empty")
    assert result.exit_code == EXIT_INPUT and "has no manifest.json" in result.stderr


def test_a_failed_build_leaves_neither_bundle_nor_temporary_folder(tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError, match="parity"), staged_folder(out) as tmp:
        (tmp / "seg").mkdir()
        (tmp / "seg" / "fold0.onnx").write_bytes(b"half")
        raise RuntimeError("parity failed")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    assert (out / "manifest.json").read_text() == "{}"
