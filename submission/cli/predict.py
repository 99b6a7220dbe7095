"""The container's commands: ``bratskit predict`` (what ``entrypoint.sh`` runs) and
``bratskit bundle`` (what ``make build`` verifies and bakes in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from submission.cli.types import (
    SCHEME_CHOICE,
    TASK_NAME_CHOICE,
    THRESHOLD,
    any_path,
    dir_path,
    file_path,
    runtime_options,
)
from submission.exit_codes import EXIT_FAILED, EXIT_OK, BadValueError, exit_on_error
from submission.predict.options import CONFIDENCE_EMPTY, ENSEMBLE_METHODS, ET_REPLACEMENTS

__all__ = ["bundle_command", "predict"]


class _BundleGroup(click.Group):
    """``bratskit bundle BUNDLE ...`` describes; ``bratskit bundle merge ...`` merges."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands:
            args = ["describe", *args]
        return super().resolve_command(ctx, args)


@click.group(name="bundle", cls=_BundleGroup)
def bundle_command() -> None:
    """bratskit bundle BUNDLE [--formats F] [--copy-to DIR] [--json]: verify every sha256
    and describe the bundle (see `bratskit bundle describe --help`); bratskit bundle merge
    A B ... --out C: one bundle of several."""


@bundle_command.command(name="merge")
@click.argument("sources", nargs=-1, required=True, metavar="BUNDLE...", type=dir_path)
@click.option("--out", required=True, type=any_path, help="The new bundle folder.")
@exit_on_error()
def merge_command(sources: tuple[Path, ...], out: Path) -> None:
    """Merge bundles (our folds, imported nnU-Net or MONAI models) into one ensemble;
    then run bratskit tune on it."""
    from submission.predict.bundle_description import describe
    from submission.predict.bundle_files import merge_bundles

    click.echo(describe(merge_bundles(list(sources), out), out))


@bundle_command.command(name="describe", hidden=True)
@click.argument("bundle_dir", metavar="BUNDLE", type=dir_path)
@click.option("--formats", help="Only these file formats, e.g. onnx,onnx-fp16 [all].")
@click.option(
    "--copy-to",
    type=dir_path,
    help="Copy the files of --formats and a manifest listing only them to this new folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead.")
@exit_on_error()
def describe_command(
    bundle_dir: Path, formats: str | None, copy_to: Path | None, as_json: bool
) -> None:
    """Verify a BUNDLE (manifest and every file's sha256) and describe it."""
    from submission.predict.bundle import FILE_FORMATS
    from submission.predict.bundle_description import describe, summary
    from submission.predict.bundle_files import copy_bundle, load_bundle

    chosen = tuple(f.strip() for f in formats.split(",")) if formats else FILE_FORMATS
    if copy_to is not None:
        manifest, shown = copy_bundle(bundle_dir, copy_to, chosen), copy_to
    else:
        manifest, shown = load_bundle(bundle_dir, chosen), bundle_dir
    text = json.dumps(summary(manifest, shown), indent=2) if as_json else describe(manifest, shown)
    click.echo(text)


@click.command()
@click.option("--input", "input_dir", required=True, type=any_path, help="Input cases.")
@click.option("--output", "output_dir", required=True, type=any_path, help="Where <id>.nii.gz go.")
@click.option("--bundle", required=True, type=any_path, help="Model bundle folder.")
@click.option("--ensemble", type=click.Choice(ENSEMBLE_METHODS), help="[bundle's choice]")
@click.option("--top-k", type=click.IntRange(1), help="Members averaged by confidence [N/2].")
@click.option(
    "--confidence-empty",
    type=click.Choice(CONFIDENCE_EMPTY),
    help="Confidence of a member that segments nothing: zero (ranked last), exclude (left "
    "out unless all are empty) or background (mean 1-p, ranked first) [bundle's, exclude].",
)
@click.option("--et-threshold", type=click.IntRange(0), help="ET minimum voxels [bundle's].")
@click.option(
    "--et-replace",
    type=click.Choice(ET_REPLACEMENTS),
    help="What ET below --et-threshold becomes: necrosis (TC), background (out of TC and "
    "WT), or empty (paper 002 2.6: ET emptied before nesting, TC and WT as their models "
    "predicted) [bundle's, necrosis].",
)
@click.option("--threshold", type=THRESHOLD, help="Probability, or WT=P,TC=P,ET=P [bundle's, 0.5].")
@click.option(
    "--task", type=TASK_NAME_CHOICE, help="Write the labels of this task [bundle's scheme]."
)
@click.option("--labels", type=SCHEME_CHOICE, help="Label scheme written [the task's, bundle's].")
@click.option("--tta", is_flag=True, help="Mirroring test-time augmentation (8 flips).")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), help="Sliding window.")
@click.option(
    "--max-memory",
    type=click.FloatRange(min=0, min_open=True),
    help="GB of activations per call; above it the sliding window is used.",
)
@runtime_options(precision=True)
@click.option("--sequential", is_flag=True, help="Do not overlap reading and writing with compute.")
@click.option(
    "--resume",
    is_flag=True,
    help="Keep outputs that are valid and newer than their case's inputs; predict the rest.",
)
@click.option(
    "--parameters",
    "parameters_file",
    type=file_path,
    help="YAML file of the options above (MLCube parameters_file); flags given here win.",
)
@click.pass_context
@exit_on_error({ValueError: BadValueError})  # the engine's checks of the options given
def predict(
    ctx: click.Context,
    input_dir: Path,
    output_dir: Path,
    bundle: Path,
    parameters_file: Path | None,
    **flags,
) -> None:
    """Segment every case of INPUT into OUTPUT with a bundle (the container's job).

    SIGTERM (``docker stop``) or SIGINT ends it with 143 or 130: the write in progress is
    finished, nothing temporary is left, and the cases not reached have no new output.
    """
    from submission.io.parameters import flag_values
    from submission.predict.engine import Engine
    from submission.predict.interruption import Interrupted, interruptible
    from submission.predict.options import PredictOptions, RuntimeOptions
    from submission.predict.runner import run_cases

    if parameters_file is not None:
        flags.update(flag_values(ctx, parameters_file, flags))
    runtime = RuntimeOptions(*(flags.pop(k) for k in ("backend", "device", "precision", "threads")))
    run = {"overlap_io": not flags.pop("sequential"), "resume": flags.pop("resume")}
    flags["max_memory_gb"] = flags.pop("max_memory")
    task = flags.pop("task")
    if task is not None and flags["labels"] is None:
        from submission.tasks import get_task

        flags["labels"] = get_task(task).scheme
    with interruptible():
        try:
            engine = Engine(bundle, PredictOptions(**flags), runtime)
            report = run_cases(input_dir, output_dir, engine, **run)
        except Interrupted as stop:
            done = (
                f"{len(stop.written)} case(s) written to {output_dir}, {len(stop.left)} not "
                "reached (no new output)"
                if stop.written or stop.left
                else "before any case"
            )
            click.echo(f"{stop}: {done}; exit {stop.exit_code}", err=True)
            sys.exit(stop.exit_code)
    click.echo(report.summary(output_dir))
    for case_id, problem in sorted(report.failed.items()):
        click.echo(f"FAILED {case_id}: {problem}", err=True)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)
