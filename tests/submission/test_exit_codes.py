"""The exit codes' one owner: the README, ``entrypoint.sh`` and ``--help`` say what
:mod:`submission.exit_codes` says, and its guard gives every category its code and one line,
through the real command."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from submission.cli import main
from submission.exit_codes import (
    EXIT_CODE_OF,
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    MEANINGS,
    BadValueError,
    FailedError,
    UnavailableError,
    UnusableError,
    exit_code_of,
    exit_on_error,
)
from submission.io.cases import CaseError, InputError
from submission.io.nifti import NiftiError
from submission.io.parameters import ParametersError
from submission.predict.backends import BackendError
from submission.predict.bundle import BundleError
from submission.predict.interruption import Interrupted
from submission.predict.output_folder import OutputError
from submission.workbench.tuning import TuningError
from submission.workbench.view import CaseChoiceError, ViewError

ROOT = Path(__file__).parents[2]


def bratskit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)], capture_output=True, text=True
    )


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_the_readme_table_is_the_modules():
    section = (ROOT / "README.md").read_text().split("\n### Exit codes\n", 1)[1]
    section = section.split("\n#", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section, flags=re.MULTILINE)
    assert {int(code): meaning for code, meaning in rows} == MEANINGS


def test_entrypoint_names_every_code_in_order_and_its_owner():
    lines = (ROOT / "entrypoint.sh").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Exit codes are"))
    comment = " ".join(line.lstrip("# ") for line in lines[start:] if line.startswith("#"))
    assert "submission/exit_codes.py" in comment
    assert [int(c) for c in re.findall(r"(?:: |; )(\d+) ", comment)] == list(MEANINGS)


def test_help_lists_every_code_with_its_meaning():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    words = " ".join(result.output.split("Exit codes:", 1)[1].split())
    assert words == " ".join(f"{code} {meaning}" for code, meaning in MEANINGS.items())


def _raising(error: Exception, reading=None) -> click.Command:
    @click.command()
    @exit_on_error(reading)
    def command() -> None:
        click.echo("started")
        raise error

    return command


@pytest.mark.parametrize(("category", "code"), list(EXIT_CODE_OF.items()))
def test_each_category_ends_the_command_with_its_code_and_one_line(category, code):
    result = CliRunner().invoke(_raising(category("folder /x does not exist")))
    assert (result.exit_code, result.stderr) == (code, "error: folder /x does not exist\n")
    assert result.stdout == "started\n"


def test_the_categories_have_the_readme_codes():
    assert {
        FailedError: EXIT_FAILED,
        BadValueError: EXIT_USAGE,
        UnusableError: EXIT_INPUT,
        UnavailableError: EXIT_UNAVAILABLE,
    } == EXIT_CODE_OF
    assert set(EXIT_CODE_OF.values()) == set(MEANINGS) - {0, EXIT_SIGINT, EXIT_SIGTERM}
    assert (EXIT_SIGINT, EXIT_SIGTERM) == (128 + signal.SIGINT, 128 + signal.SIGTERM)
    assert Interrupted(signal.SIGTERM).exit_code == EXIT_SIGTERM


@pytest.mark.parametrize(
    ("error", "builtin", "code"),
    [
        (InputError("input folder /x does not exist"), ValueError, EXIT_INPUT),
        (CaseError("BraTS2021_00001", "missing t1c"), ValueError, EXIT_INPUT),
        (NiftiError("/x.nii.gz: not 3-D"), ValueError, EXIT_INPUT),
        (ParametersError("parameters file /x is not valid YAML"), ValueError, EXIT_INPUT),
        (OutputError("output folder /x is not writable"), OSError, EXIT_INPUT),
        (BundleError("manifest.json: unknown format version 9"), ValueError, EXIT_INPUT),
        (TuningError("no case with a reference label map"), ValueError, EXIT_INPUT),
        (ViewError("labels [7] are not in the 2021 scheme"), ValueError, EXIT_INPUT),
        (CaseChoiceError("no case 'nope'"), ValueError, EXIT_USAGE),
        (BackendError("no CUDA GPU here"), RuntimeError, EXIT_UNAVAILABLE),
    ],
)
def test_domain_errors_keep_their_builtin_base_and_get_their_categorys_code(error, builtin, code):
    assert isinstance(error, builtin)
    assert exit_code_of(error) == code
    result = CliRunner().invoke(_raising(error))
    assert (result.exit_code, result.stderr) == (code, f"error: {error}\n")


def test_a_reading_gives_a_builtin_its_category_and_a_category_wins_over_it():
    reading = {ValueError: BadValueError, OSError: UnusableError}
    assert exit_code_of(ValueError("top-k must lie in 1..3"), reading) == EXIT_USAGE
    assert exit_code_of(FileNotFoundError(2, "No such file", "/x"), reading) == EXIT_INPUT
    assert exit_code_of(BundleError("altered file"), reading) == EXIT_INPUT
    result = CliRunner().invoke(_raising(ValueError("top-k must lie in 1..3"), reading))
    assert (result.exit_code, result.stderr) == (EXIT_USAGE, "error: top-k must lie in 1..3\n")


def test_any_other_exception_is_a_bug_and_keeps_its_traceback():
    assert exit_code_of(ValueError("x")) is None and exit_code_of(KeyError("x")) is None
    result = CliRunner().invoke(_raising(ZeroDivisionError("a bug"), {OSError: UnusableError}))
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)
    assert "error:" not in result.stderr


def test_clicks_own_exits_pass_through_even_where_a_reading_covers_them():
    # click.exceptions.Exit is a RuntimeError: ctx.exit(0) must stay 0.
    @click.command()
    @click.pass_context
    @exit_on_error({RuntimeError: UnavailableError, Exception: UnusableError})
    def command(ctx: click.Context) -> None:
        ctx.exit(0)

    assert CliRunner().invoke(command).exit_code == 0
    result = CliRunner().invoke(_raising(click.UsageError("give --run or --splits")))
    assert result.exit_code == EXIT_USAGE and "Usage:" in result.stderr


# Through the real command, one case per category (exit 1, an export failing its parity
# check, is tests/export/test_build.py::test_a_failing_member_fails_the_export_...).


def test_a_bad_value_exits_2_with_one_line(case_factory, tmp_path):
    result = bratskit("view", case_factory(), "--png", tmp_path / "x.png", "--case-id", "nope")
    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith("error: no case 'nope' in ") and result.stderr.count("\n") == 1


def test_an_unusable_folder_exits_3_with_one_line(tmp_path):
    result = bratskit("validate", tmp_path / "nope")
    assert result.returncode == EXIT_INPUT
    assert (
        result.stderr
        == f"error: input folder {tmp_path / 'nope'} does not exist or is not a folder\n"
    )


def test_a_package_this_installation_lacks_exits_4_with_one_line(case_factory, tmp_path):
    """The 2025 scheme without panoptica (it ended in a traceback before the guard)."""
    root = case_factory("2023-folders", ["BraTS-GLI-00001-000"])
    (tmp_path / "pred").mkdir()
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(root), "--scheme", "2025"]
    result = run_python(
        "import sys; sys.modules['panoptica'] = None\n"
        f"from submission.cli import main; main({args!r}, prog_name='bratskit')"
    )
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert result.stderr.startswith("error: the 2025 scheme needs panoptica")
    assert "Traceback" not in result.stderr


def test_a_command_of_an_absent_package_exits_4_with_one_line():
    result = run_python(
        "import sys; sys.modules['export.cli'] = None\n"
        "from submission.cli import main; main(['export', '--out', 'x'], prog_name='bratskit')"
    )
    assert result.returncode == EXIT_UNAVAILABLE
    assert result.stderr == (
        "error: bratskit export is provided by the export/ package (ONNX/TorchScript "
        "bundles), which this installation does not include yet.\n"
    )
