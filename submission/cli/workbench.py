"""The team's commands around the predict path: ``synth``, ``validate``, ``package``,
``rehearse``, ``tune`` and ``view`` (the workbench package; ``evaluate``, the evaluation
package's, is in :mod:`submission.cli.evaluation`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from submission.brats import LAYOUT_YEARS
from submission.cli.types import SCHEME_CHOICE, TASK_CHOICE, dir_path, file_path, runtime_options
from submission.exit_codes import EXIT_FAILED, EXIT_OK, UnusableError, exit_on_error
from submission.predict.options import CONFIDENCE_EMPTY, ET_REPLACEMENTS
from submission.tasks import TaskError, get_task
from submission.workbench.rehearse_checks import DEFAULT_TEST_CASES, RULES

__all__ = ["package", "rehearse", "synth", "tune", "validate", "view"]


@click.command()
@click.argument("out", type=dir_path)
@click.option("--cases", default=5, show_default=True, type=click.IntRange(1))
@click.option(
    "--task",
    help="BraTS task whose cases to write (gli-2021, gli-2023, gli-post, met, ped, men, "
    "men-rt, ssa, goat, or the organisers' GLI, MET, PED, MEN, MEN-RT, SSA, GoAT): its ids, "
    "file names, modalities, label scheme and pathology [the layout's glioma].",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUT_YEARS),
    help="File naming [the task's; without --task, 2021]; with --task it must be the task's.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--shape", nargs=3, type=click.IntRange(16), default=(240, 240, 155), show_default=True
)
@click.option(
    "--first",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Number the cases from here (a held-out set beside a training set).",
)
@click.option(
    "--absent",
    "absent_rates",
    multiple=True,
    metavar="MODALITY=RATE",
    help="Leave an optional modality out of this share of the cases, evenly by case index "
    "(t2w=0.25: cases 3, 7, 11, ...); repeatable; t2w=0 writes it everywhere "
    "[met: t2w=0.25].",
)
@click.option(
    "--skull/--no-skull",
    default=None,
    help="Scalp and skull around the brain: not skull-stripped [ped: --skull; else no].",
)
@click.option(
    "--spacing",
    nargs=3,
    type=click.FloatRange(0.25, 8),
    default=None,
    metavar="X Y Z",
    help="Resample every case to this voxel size in mm [men-rt: 1 1 2.5, 0.9 0.9 3 or "
    "1 1 2 by case; else 1 mm, BraTS space].",
)
@exit_on_error()
def synth(
    out: Path,
    cases: int,
    task: str | None,
    layout: str | None,
    seed: int,
    shape: tuple[int, int, int],
    first: int,
    absent_rates: tuple[str, ...],
    skull: bool | None,
    spacing: tuple[float, float, float] | None,
) -> None:
    """Write synthetic BraTS-like cases with ground truth (*_seg / *-seg, MEN-RT *_gtv) to
    OUT, one folder per case."""
    from submission.workbench.synth import SynthError, read_absent_rates, write_synthetic_dataset

    try:
        absent = read_absent_rates(absent_rates)
    except SynthError as exc:
        raise click.BadParameter(str(exc), param_hint="--absent") from None
    # Per-case progress arrives through logging.
    ids = write_synthetic_dataset(
        out,
        cases=cases,
        layout=layout,
        seed=seed,
        shape=tuple(shape),
        first=first,
        task=task,
        absent=absent,
        skull=skull,
        spacing=spacing,
    )
    kind = get_task(task).name if task is not None else (layout or "2021")
    click.echo(f"wrote {len(ids)} {kind} cases to {out}")


@click.command()
@click.argument("input_dir", metavar="INPUT", type=dir_path)
@click.option("--output", type=dir_path, help="Also check this output folder against INPUT.")
@click.option(
    "--task",
    type=TASK_CHOICE,
    help="Check the cases by this task's modalities (t1c alone for MEN-RT, t2w optional "
    "for MET) and the outputs by its labels and output-name rule (auto: from the input's "
    "case ids).",
)
@click.option("--labels", type=SCHEME_CHOICE, help="Label scheme [the task's, else 2021].")
@exit_on_error()
def validate(input_dir: Path, output: Path | None, task: str | None, labels: str | None) -> None:
    """Check INPUT (and OUTPUT against it) by the challenge rules; exit 0 only if all valid."""
    from submission.workbench.validate import validate_input, validate_output

    reports = [(validate_input(input_dir, task), f"input {input_dir}")]
    if output is not None:
        reports.append((validate_output(input_dir, output, labels, task), f"output {output}"))
    for report, title in reports:
        click.echo(report.text(title))
    sys.exit(EXIT_OK if all(report.ok for report, _ in reports) else EXIT_FAILED)


@click.command()
@click.argument("out", type=dir_path)
@click.option("--zip", "zip_path", required=True, type=file_path)
@click.option("--labels", type=SCHEME_CHOICE, default="2021", show_default=True)
@click.option(
    "--input",
    "input_dir",
    type=dir_path,
    help="Input cases, to check shapes, affines and completeness too.",
)
@exit_on_error({ValueError: UnusableError})  # e.g. the archive inside the folder it zips
def package(out: Path, zip_path: Path, labels: str, input_dir: Path | None) -> None:
    """Validate the predictions in OUT, then zip them for a validation-phase upload."""
    from submission.workbench.package import package_predictions

    report = package_predictions(out, zip_path, labels=labels, input_dir=input_dir)
    click.echo(report.text(f"predictions {out}"))
    if not report.ok:
        click.echo("nothing packaged: fix the files above first", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"wrote {zip_path} ({len(report.findings)} predictions)")


@click.command()
@click.argument("image")
@click.option("--input", "input_dir", required=True, type=dir_path, help="Cases to run on.")
@click.option(
    "--task",
    help="The task (a registry name such as gli-post or men-rt, or the organisers' GLI, MET, "
    "PED, MEN, MEN-RT, SSA, GoAT): the input's modalities, the outputs' label scheme and "
    "name rule [the scheme the image's org.bratskit.label-scheme label names, else 2021].",
)
@click.option("--rules", type=click.Choice(list(RULES)), default="2026", show_default=True)
@click.option(
    "--test-cases",
    type=click.IntRange(1),
    default=DEFAULT_TEST_CASES,
    show_default=True,
    help="Cases in the test phase, for the projected run time.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(1),
    help="Seconds for the whole test set instead of the rules' (2026: 8 h; 2025: none).",
)
@click.option("--keep-output", type=dir_path, help="Keep the image's outputs in this folder.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@exit_on_error()
def rehearse(
    image: str,
    input_dir: Path,
    task: str | None,
    rules: str,
    test_cases: int,
    time_limit: float | None,
    keep_output: Path | None,
    as_json: bool,
) -> None:
    """Run IMAGE on --input exactly as the organisers will, check what it wrote and report
    seconds per case, peak memory, the projected test-phase time, size and CUDA needs;
    exit 0 only when the submission would pass."""
    from submission.workbench.rehearse import rehearse as run_rehearsal

    try:
        task = None if task is None else get_task(task).name
    except TaskError as exc:
        raise click.BadParameter(str(exc), param_hint="--task") from None
    result = run_rehearsal(
        image, input_dir, rules, None, test_cases, keep_output, time_limit, task=task
    )
    click.echo(result.to_json() if as_json else result.text())
    if not result.ok:
        click.echo(f"--- container log (tail)\n{result.logs[-3000:]}", err=True)
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


@click.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=dir_path)
@click.option(
    "--data", "data_dir", required=True, type=dir_path, help="Cases with reference labels."
)
@click.option("--run", "run_dir", type=dir_path, help="Training run: out-of-fold scores.")
@click.option("--splits", "splits_path", type=file_path, help="A splits.json instead of --run.")
@click.option("--et-thresholds", help="ET minimum volumes to try [0,50,100,...,1000].")
@click.option("--probability-thresholds", help="Region thresholds to try [0.3,0.4,0.5].")
@click.option(
    "--confidence-empty",
    "confidence_rules",
    help="Confidence rules for members that segment nothing to try, of "
    f"{','.join(CONFIDENCE_EMPTY)} [all].",
)
@click.option(
    "--et-replace",
    type=click.Choice(ET_REPLACEMENTS),
    help="What ET below the ET threshold becomes while scoring, stored with the winner: "
    "necrosis (TC), background (out of TC and WT) or empty (paper 002 2.6: ET emptied "
    "before nesting, TC and WT as their models predicted) [bundle's].",
)
@click.option("--json", "json_path", type=file_path)
@click.option("--dry-run", is_flag=True, help="Print the scores; leave the bundle unchanged.")
@runtime_options(precision=False)
@exit_on_error({OSError: UnusableError, KeyError: UnusableError})  # splits.json unreadable
def tune(
    bundle_dir: Path,
    data_dir: Path,
    run_dir: Path | None,
    splits_path: Path | None,
    et_thresholds: str | None,
    probability_thresholds: str | None,
    confidence_rules: str | None,
    et_replace: str | None,
    json_path: Path | None,
    dry_run: bool,
    backend: str,
    device: str,
    threads: int | None,
) -> None:
    """Choose BUNDLE's ensemble, top-k, confidence rule, ET and region thresholds on
    labelled cases.

    With --run (or --splits) the cases are the run's training cases, each predicted only
    by the members of the fold that held it out; without, --data must be cases no member
    trained on.
    """
    from submission.workbench.tuning_run import GridError, read_grids, store_result, tune_bundle

    if run_dir is not None and splits_path is not None:
        raise click.UsageError("give --run or --splits, not both")
    if run_dir is not None:
        splits_path = run_dir / "splits.json"
    try:
        grids = read_grids(et_thresholds, probability_thresholds, confidence_rules)
    except GridError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.flag) from None
    runtime = (backend, device, threads)
    result, manifest = tune_bundle(bundle_dir, data_dir, splits_path, grids, et_replace, runtime)
    click.echo(result.report())
    click.echo(store_result(result, manifest, bundle_dir, json_path, dry_run))


@click.command()
@click.argument("case_dir", metavar="CASE", type=click.Path(path_type=Path))
@click.option("--png", "png_path", required=True, type=file_path, help="Picture to write.")
@click.option("--seg", "seg_path", type=file_path, help="Predicted label map on the case's grid.")
@click.option(
    "--ref", "ref_path", type=file_path, help="Reference label map [the case's _seg/-seg file]."
)
@click.option(
    "--labels",
    type=SCHEME_CHOICE,
    help="Label scheme of the label maps [detected: a 4 means 2021, a 3 means 2023].",
)
@click.option("--case-id", help="The case to draw when CASE holds several.")
@exit_on_error()
def view(case_dir: Path, png_path: Path, **maps_and_choices: str | Path | None) -> None:
    """Picture of CASE: modalities and label maps in three planes through the tumour."""
    from submission.workbench.view import write_view  # matplotlib only when it draws

    case_id, maps, scores = write_view(case_dir, png_path, **maps_and_choices)
    drawn = ", ".join(f"{m.role} {m.path}" for m in maps) or "no label maps"
    click.echo(f"wrote {png_path}: case {case_id}, {drawn}")
    if scores is not None:
        click.echo("Dice " + " ".join(f"{r} {v:.3f}" for r, v in scores.items()))
