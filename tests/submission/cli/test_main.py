"""The `bratskit` command as a user runs it: real subprocesses, real files, exit codes."""

import subprocess
import sys

import pytest

from submission import __version__

BRATSKIT = [sys.executable, "-m", "submission"]


def bratskit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*BRATSKIT, *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("layout", ["2021", "2023"])
def test_synth_then_validate_exits_0(layout, tmp_path):
    out = tmp_path / f"synth-{layout}"
    result = bratskit(
        "synth", out, "--cases", 3, "--layout", layout, "--seed", 7, "--shape", 96, 96, 64
    )
    assert result.returncode == 0, result.stderr
    result = bratskit("validate", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok    ") == 3 and "3 valid, 0 invalid" in result.stdout
    seg = "_seg" if layout == "2021" else "-seg"
    assert len(list(out.glob(f"*/*{seg}.nii.gz"))) == 3


def test_validate_reports_bad_case_and_exits_1(case_factory):
    root = case_factory("2021-folders", ["BraTS2021_00001", "BraTS2021_00002"])
    (root / "BraTS2021_00002" / "BraTS2021_00002_t1ce.nii.gz").unlink()
    result = bratskit("validate", root)
    assert result.returncode == 1
    assert "ok    BraTS2021_00001" in result.stdout
    assert "FAIL  BraTS2021_00002: expected 4 modalities, missing t1c" in result.stdout


def test_validate_output_and_package(case_factory, tmp_path):
    import nibabel as nib
    import numpy as np

    from submission.io.nifti import grid_of, write_label_map

    root = case_factory("2021-flat", ["BraTS2021_00042"])
    out = tmp_path / "out"
    out.mkdir()
    grid = grid_of(nib.load(root / "BraTS2021_00042_t1.nii.gz"))
    write_label_map(np.zeros(grid.shape, np.uint8), grid, out / "BraTS2021_00042.nii.gz")
    assert bratskit("validate", root, "--output", out).returncode == 0
    result = bratskit("package", out, "--zip", tmp_path / "up.zip", "--input", root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "up.zip").is_file()
    (out / "extra.nii.gz").write_bytes(b"")
    result = bratskit("validate", root, "--output", out)
    assert result.returncode == 1 and "FAIL  extra.nii.gz: unexpected entry" in result.stdout


def test_empty_input_exits_3(tmp_path):
    (tmp_path / "in").mkdir()
    result = bratskit("validate", tmp_path / "in")
    assert result.returncode == 3 and "no BraTS case" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "{tmp}/nope"],
        ["validate", "{input}", "--output", "{tmp}/nope"],
        ["package", "{tmp}/nope", "--zip", "{tmp}/up.zip"],
        ["evaluate", "--pred", "{input}", "--ref", "{tmp}/nope"],
        ["predict", "--input", "{input}", "--output", "{tmp}/out", "--bundle", "{tmp}/nope"],
    ],
)
def test_missing_folders_exit_3_naming_the_folder(args, case_factory, tmp_path):
    root = case_factory()
    result = bratskit(*(a.format(tmp=tmp_path, input=root) for a in args))
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"{tmp_path}/nope" in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize(("command", "module"), [("train", "train.cli"), ("export", "export.cli")])
def test_commands_of_missing_packages_say_who_provides_them(command, module):
    """The runtime image has no train/ or export/: their commands exit 4 and say why."""
    blocked = (
        f"import sys; sys.modules[{module!r}] = None; "
        f"from submission.cli import main; main([{command!r}, 'x'], prog_name='bratskit')"
    )
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True)
    assert result.returncode == 4
    assert f"bratskit {command} is provided by the {command}/ package" in result.stderr


def test_python_m_submission_is_the_whole_bratskit_command():
    """The image installs no console script: entrypoint.sh runs ``python -m submission``, which
    must answer as ``bratskit``, with its version and every sub-command."""
    result = bratskit("--version")
    assert (result.returncode, result.stdout) == (0, f"bratskit, version {__version__}\n")
    result = bratskit("--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: bratskit [OPTIONS]")
    listed = result.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[0] for line in listed.splitlines()] == [
        "bundle",
        "evaluate",
        "export",
        "import",
        "package",
        "predict",
        "rehearse",
        "synth",
        "train",
        "tune",
        "validate",
        "view",
    ]
    result = bratskit("view")
    assert result.returncode == 2 and "Usage: bratskit view [OPTIONS] CASE" in result.stderr


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--input", "not a folder"),
        ("--output", "is a file, not a folder"),
        ("--bundle", "not a folder"),
    ],
)
def test_a_file_given_for_a_predict_folder_exits_3_naming_it(flag, message, case_factory, tmp_path):
    from tests.submission.predict.onnx_bundles import channel_bundle

    folders = {
        "--input": case_factory(),
        "--output": tmp_path / "out",
        "--bundle": channel_bundle(tmp_path / "bundle"),
    }
    folders[flag] = tmp_path / "a-file"
    folders[flag].write_text("keep")
    result = bratskit("predict", *(str(x) for pair in folders.items() for x in pair))
    assert result.returncode == 3, result.stdout + result.stderr
    assert str(folders[flag]) in result.stderr and message in result.stderr
    assert folders[flag].read_text() == "keep"
