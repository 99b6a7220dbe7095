"""The evaluation package's command, ``evaluate``: score predictions against references
as the organisers do (:mod:`submission.evaluation`)."""

from __future__ import annotations

from pathlib import Path

import click

from submission.cli.types import SCHEME_CHOICE, TASK_CHOICE, dir_path, file_path
from submission.exit_codes import UnavailableError, UnusableError, exit_on_error

__all__ = ["evaluate"]


@click.command()
@click.option("--pred", required=True, type=dir_path, help="Predictions <id>.nii.gz.")
@click.option("--ref", required=True, type=dir_path, help="References, flat or in folders.")
@click.option(
    "--scheme",
    type=click.Choice(["2021", "2023", "2025"]),
    default="2021",
    show_default=True,
    help="Whose metrics: CaPTk 2021, lesion-wise 2023, panoptica 2025.",
)
@click.option(
    "--task",
    type=TASK_CHOICE,
    help="The task (or auto, from the reference case ids): sets --labels and --cohort to "
    "the task's label scheme and official configuration.",
)
@click.option(
    "--labels",
    type=SCHEME_CHOICE,
    help="Label scheme of the files [the task's; else 2021 for --scheme 2021, else 2023].",
)
@click.option(
    "--cohort",
    help="Cohort parameters for 2023/2025 (gli, ssa, ped, men, met; 2025 also mets, "
    "menpre, menrt, goat) [the task's, else gli].",
)
@click.option("--csv", "csv_path", type=file_path)
@click.option("--json", "json_path", type=file_path)
@click.option(
    "--markdown",
    "markdown_path",
    type=file_path,
    help="Markdown summary: statistics per region, Dice and HD95 per case.",
)
@click.option(
    "--boxplot",
    "boxplot_path",
    type=file_path,
    help="PNG box plot of Dice and HD95 per region (needs matplotlib).",
)
@click.option(
    "--report",
    "report_dir",
    type=dir_path,
    help="Write evaluation.md, boxplot.png, cases.csv and summary.json to this folder.",
)
# Folder checks and plots raise builtins: ValueError and OSError mean an unusable folder or
# file, ImportError a package this installation lacks (matplotlib, panoptica).
@exit_on_error({ValueError: UnusableError, OSError: UnusableError, ImportError: UnavailableError})
def evaluate(
    pred: Path,
    ref: Path,
    scheme: str,
    task: str | None,
    labels: str | None,
    cohort: str | None,
    **outputs: Path | None,
) -> None:
    """Score predictions against references as the organisers do."""
    from submission.evaluation import evaluate_folders
    from submission.evaluation.outputs import write_outputs

    result = evaluate_folders(pred, ref, scheme, labels=labels, cohort=cohort, task=task)
    click.echo(result.format_table())
    for case_id in result.missing:
        click.echo(f"missing prediction: {case_id} (scored as the organisers do)")
    write_outputs(result, **outputs)
    if outputs["report_dir"] is not None:
        click.echo(f"wrote report to {outputs['report_dir']}")
