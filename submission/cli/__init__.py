"""The one ``bratskit`` command (DESIGN.md, "One command"): the group, its sub-commands
(the container's in :mod:`.predict`, the team's in :mod:`.workbench` and
:mod:`.evaluation`) and those of the packages the runtime image leaves out (``train``,
``export``).

Each sub-command parses its flags, calls one domain function and prints what it returns;
errors end it through :func:`submission.exit_codes.exit_on_error`, the one owner of the
exit codes (``bratskit --help`` lists them).
"""

from __future__ import annotations

import importlib
import logging

import click

from submission import __version__
from submission.cli import evaluation, predict, workbench
from submission.exit_codes import MEANINGS, UnavailableError, exit_on_error

__all__ = ["main"]


class _Bratskit(click.Group):
    """The command group; its help ends with the exit codes of every sub-command."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Exit codes"):
            formatter.write_dl([(str(code), meaning) for code, meaning in MEANINGS.items()])
        super().format_epilog(ctx, formatter)


@click.group(cls=_Bratskit, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bratskit")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """bratskit: train, export and ship BraTS segmentation ensembles."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


def _optional_command(module: str, name: str, provider: str, summary: str) -> click.Command:
    """A sub-command of a package the runtime image leaves out (train/, export/), or, when
    the package is absent, one that says who provides it (exit 4)."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        pass

    @click.command(
        name=name,
        help=f"{summary} (provided by {provider}).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    @exit_on_error()
    def unavailable() -> None:
        raise UnavailableError(
            f"bratskit {name} is provided by {provider}, which this installation "
            "does not include yet."
        )

    return unavailable


for _command in (
    predict.bundle_command,
    predict.predict,
    workbench.synth,
    workbench.validate,
    evaluation.evaluate,
    workbench.package,
    workbench.tune,
    workbench.rehearse,
    workbench.view,
):
    main.add_command(_command)
for _optional in (
    ("train.cli", "train", "the train/ package (models and k-fold training)", "k-fold training"),
    ("export.cli", "export", "the export/ package (ONNX/TorchScript bundles)", "export runs"),
    ("export.import_cli", "import", "the export/ package (nnU-Net, MONAI)", "import models"),
):
    main.add_command(_optional_command(*_optional))
