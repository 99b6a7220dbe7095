"""The one ``bratskit`` command (DESIGN.md, "One command").

Each sub-command parses its flags, calls one domain function and prints what it returns;
errors end it through :func:`submission.exit_codes.exit_on_error`, the one owner of the
exit codes (``bratskit --help`` lists them).
"""

from __future__ import annotations

import importlib
import logging
import resource
import sys
from pathlib import Path

import click

from submission import __version__
from submission.brats import LAYOUT_YEARS, SCHEMES, TUMOUR_REGIONS
from submission.exit_codes import (
    EXIT_FAILED,
    EXIT_OK,
    MEANINGS,
    BadValueError,
    UnavailableError,
    UnusableError,
    exit_on_error,
)
from submission.predict.backends import BACKENDS, DEVICES, PRECISIONS
from submission.predict.ensemble import ENSEMBLE_METHODS
from submission.predict.postprocess import ET_REPLACEMENTS
from submission.workbench.validate import Report

SCHEME_CHOICE = click.Choice(list(SCHEMES))
BACKEND_CHOICE, DEVICE_CHOICE = click.Choice(["auto", *BACKENDS]), click.Choice(["auto", *DEVICES])
# Paths are not checked by click: a missing folder is an unusable folder (exit 3), with the
# library's message, not a usage error.
dir_path = click.Path(file_okay=False, path_type=Path)
file_path = click.Path(dir_okay=False, path_type=Path)


def _emit(report: Report, title: str) -> bool:
    click.echo(f"== {title}")
    for line in report.lines():
        click.echo(line)
    n_bad = len(report.failures)
    click.echo(f"{len(report.findings) - n_bad} valid, {n_bad} invalid")
    return report.ok


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


@main.command()
@click.argument("out", type=dir_path)
@click.option("--cases", default=5, show_default=True, type=click.IntRange(1))
@click.option("--layout", type=click.Choice(LAYOUT_YEARS), default="2021", show_default=True)
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
@exit_on_error()
def synth(
    out: Path, cases: int, layout: str, seed: int, shape: tuple[int, int, int], first: int
) -> None:
    """Write synthetic BraTS-like cases with ground truth (*_seg / *-seg) to OUT."""
    from submission.workbench.synth import write_synthetic_dataset

    # Per-case progress arrives through logging.
    ids = write_synthetic_dataset(
        out, cases=cases, layout=layout, seed=seed, shape=tuple(shape), first=first
    )
    click.echo(f"wrote {len(ids)} {layout} cases to {out}")


@main.command()
@click.argument("input_dir", metavar="INPUT", type=dir_path)
@click.option("--output", type=dir_path, help="Also check this output folder against INPUT.")
@click.option("--labels", type=SCHEME_CHOICE, default="2021", show_default=True)
@exit_on_error()
def validate(input_dir: Path, output: Path | None, labels: str) -> None:
    """Check INPUT (and OUTPUT against it) by the challenge rules; exit 0 only if all valid."""
    from submission.workbench.validate import validate_input, validate_output

    ok = _emit(validate_input(input_dir), f"input {input_dir}")
    if output is not None:
        ok &= _emit(validate_output(input_dir, output, labels), f"output {output}")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@main.command()
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
    "--labels",
    type=SCHEME_CHOICE,
    help="Label scheme of the files [2021 for --scheme 2021, else 2023].",
)
@click.option(
    "--cohort",
    default="gli",
    show_default=True,
    help="Cohort parameters for 2023/2025 (gli, ssa, ped, men, met).",
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
    pred: Path, ref: Path, scheme: str, labels: str | None, cohort: str, **outputs: Path | None
) -> None:
    """Score predictions against references as the organisers do."""
    from submission.evaluation import evaluate_folders
    from submission.evaluation.outputs import write_outputs

    result = evaluate_folders(pred, ref, scheme, labels=labels, cohort=cohort)
    click.echo(result.format_table())
    for case_id in result.missing:
        click.echo(f"missing prediction: {case_id} (scored as the organisers do)")
    write_outputs(result, **outputs)
    if outputs["report_dir"] is not None:
        click.echo(f"wrote report to {outputs['report_dir']}")


@main.command()
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
    if not _emit(report, f"predictions {out}"):
        click.echo("nothing packaged: fix the files above first", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"wrote {zip_path} ({len(report.findings)} predictions)")


@main.command(name="bundle")
@click.argument("bundle_dir", metavar="BUNDLE", type=dir_path)
@click.option("--formats", help="Only these file formats, e.g. onnx,onnx-fp16 [all].")
@click.option(
    "--copy-to",
    type=dir_path,
    help="Copy the files of --formats and a manifest listing only them to this new folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead.")
@exit_on_error()
def bundle_command(
    bundle_dir: Path, formats: str | None, copy_to: Path | None, as_json: bool
) -> None:
    """Verify a BUNDLE (manifest and every file's sha256) and describe it."""
    import json

    from submission.predict.bundle import (
        FILE_FORMATS,
        MANIFEST,
        copy_bundle,
        describe,
        load_bundle,
        sha256_file,
    )

    chosen = tuple(f.strip() for f in formats.split(",")) if formats else FILE_FORMATS
    if copy_to is not None:
        manifest, shown = copy_bundle(bundle_dir, copy_to, chosen), copy_to
    else:
        manifest, shown = load_bundle(bundle_dir, chosen), bundle_dir
    if not as_json:
        click.echo(describe(manifest, shown))
        return
    summary = {
        "bundle": str(shown),
        "manifest_sha256": sha256_file(Path(shown) / MANIFEST),
        "label_scheme": manifest.label_scheme,
        "members": len(manifest.members),
        "formats": sorted(manifest.formats),
        "bratskit_version": manifest.bratskit_version,
        "recommended": manifest.to_dict()["recommended"],
    }
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.option("--input", "input_dir", required=True, type=dir_path, help="Input cases.")
@click.option("--output", "output_dir", required=True, type=dir_path, help="Where <id>.nii.gz go.")
@click.option("--bundle", required=True, type=dir_path, help="Model bundle folder.")
@click.option("--ensemble", type=click.Choice(ENSEMBLE_METHODS), help="[bundle's choice]")
@click.option("--top-k", type=click.IntRange(1), help="Members averaged by confidence [N/2].")
@click.option("--et-threshold", type=click.IntRange(0), help="ET minimum voxels [bundle's].")
@click.option("--et-replace", type=click.Choice(ET_REPLACEMENTS), help="What small ET becomes.")
@click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), help="[0.5]")
@click.option("--labels", type=SCHEME_CHOICE, help="Label scheme written [bundle's].")
@click.option("--tta", is_flag=True, help="Mirroring test-time augmentation (8 flips).")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), help="Sliding window.")
@click.option(
    "--max-memory",
    type=click.FloatRange(min=0, min_open=True),
    help="GB of activations per call; above it the sliding window is used.",
)
@click.option("--device", type=DEVICE_CHOICE, default="auto", show_default=True)
@click.option("--backend", type=BACKEND_CHOICE, default="auto", show_default=True)
@click.option(
    "--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto", show_default=True
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads [all cores].")
@click.option("--sequential", is_flag=True, help="Do not overlap reading and writing with compute.")
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
    """Segment every case of INPUT into OUTPUT with a bundle (the container's job)."""
    from submission.predict.engine import Engine, PredictOptions, RuntimeOptions
    from submission.predict.runner import run_cases

    if parameters_file is not None:
        flags.update(_file_parameters(ctx, parameters_file, flags))
    runtime = RuntimeOptions(*(flags.pop(k) for k in ("backend", "device", "precision", "threads")))
    sequential = flags.pop("sequential")
    flags["max_memory_gb"] = flags.pop("max_memory")
    engine = Engine(bundle, PredictOptions(**flags), runtime)
    report = run_cases(input_dir, output_dir, engine, overlap_io=not sequential)
    n = len(report.written) + len(report.failed)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    mean = sum(report.seconds.values()) / max(len(report.seconds), 1)
    click.echo(
        f"{len(report.written)} of {n} cases written to {output_dir} in "
        f"{report.wall_seconds:.1f} s ({mean:.1f} s per case), peak RSS {peak_gb:.2f} GB"
    )
    for case_id, problem in sorted(report.failed.items()):
        click.echo(f"FAILED {case_id}: {problem}", err=True)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=dir_path)
@click.option(
    "--data", "data_dir", required=True, type=dir_path, help="Cases with reference labels."
)
@click.option("--run", "run_dir", type=dir_path, help="Training run: out-of-fold scores.")
@click.option("--splits", "splits_path", type=file_path, help="A splits.json instead of --run.")
@click.option("--et-thresholds", help="ET minimum volumes to try [0,50,100,...,1000].")
@click.option("--probability-thresholds", help="Region thresholds to try [0.3,0.4,0.5].")
@click.option("--json", "json_path", type=file_path)
@click.option("--dry-run", is_flag=True, help="Print the scores; leave the bundle unchanged.")
@click.option("--backend", type=BACKEND_CHOICE, default="auto", show_default=True)
@click.option("--device", type=DEVICE_CHOICE, default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), help="CPU threads [all cores].")
@exit_on_error({OSError: UnusableError, KeyError: UnusableError})  # splits.json unreadable
def tune(
    bundle_dir: Path,
    data_dir: Path,
    run_dir: Path | None,
    splits_path: Path | None,
    et_thresholds: str | None,
    probability_thresholds: str | None,
    json_path: Path | None,
    dry_run: bool,
    backend: str,
    device: str,
    threads: int | None,
) -> None:
    """Choose BUNDLE's ensemble, top-k, ET and region thresholds on labelled cases.

    With --run (or --splits) the cases are the run's training cases, each predicted only
    by the members of the fold that held it out; without, --data must be cases no member
    trained on.
    """
    from submission.predict.bundle import with_recommended, write_manifest
    from submission.predict.engine import Engine, RuntimeOptions
    from submission.workbench.tuning import (
        ET_THRESHOLDS,
        PROBABILITY_THRESHOLDS,
        read_splits,
        score_candidates,
    )

    if run_dir is not None and splits_path is not None:
        raise click.UsageError("give --run or --splits, not both")
    if run_dir is not None:
        splits_path = run_dir / "splits.json"
    et_values = _numbers(et_thresholds, int, ET_THRESHOLDS, "--et-thresholds")
    probabilities = _numbers(
        probability_thresholds, float, PROBABILITY_THRESHOLDS, "--probability-thresholds"
    )
    splits = None if splits_path is None else read_splits(splits_path)
    engine = Engine(bundle_dir, runtime=RuntimeOptions(backend, device, "fp32", threads))
    result = score_candidates(engine, data_dir, splits, et_values, probabilities)
    click.echo(f"== {result.mode}: {len(result.cases)} cases, mean Dice of WT, TC and ET")
    click.echo(result.table())
    best, current = result.best, result.current
    gain = result.score(best) - result.score(current)
    click.echo(
        f"best: {best} (mean Dice {result.score(best):.4f}); current defaults: {current} "
        f"({result.score(current):.4f}); improvement {gain:+.4f}"
    )
    if json_path is not None:
        result.to_json(json_path)
    if best == current:
        click.echo("the bundle's defaults are already the best: unchanged")
    elif dry_run:
        click.echo("--dry-run: bundle unchanged")
    else:
        manifest = with_recommended(
            engine.manifest,
            ensemble=best.ensemble,
            top_k=best.top_k,
            et_threshold=best.et_threshold,
            threshold=best.recommended_threshold,
        )
        write_manifest(bundle_dir, manifest)
        click.echo(f"wrote the new defaults into {bundle_dir / 'manifest.json'}")


@main.command()
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
        click.echo("Dice " + " ".join(f"{r} {scores[r]:.3f}" for r in TUMOUR_REGIONS))


def _numbers(text: str | None, kind: type, default: tuple, flag: str) -> tuple:
    """A comma-separated list of numbers, or ``default`` when not given."""
    if text is None:
        return default
    try:
        return tuple(kind(t) for t in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"comma-separated numbers, got {text!r}", param_hint=flag
        ) from None


def _file_parameters(ctx: click.Context, path: Path, flags: dict) -> dict:
    """The options of ``path`` that the command line left at their defaults, each checked
    by its flag's type (a bad value is a usage error naming the file)."""
    from submission.io.parameters import read_parameters

    params = {p.name: p for p in ctx.command.params if p.name in flags}
    values = read_parameters(path, set(params))
    chosen = {}
    for name, value in values.items():
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            continue
        # YAML reads `labels: 2023` as a number: choices and ranges convert from text.
        text = value if isinstance(value, bool) or value is None else str(value)
        try:
            chosen[name] = params[name].type_cast_value(ctx, text)
        except click.BadParameter as exc:
            raise click.BadParameter(f"{exc.message} (in {path})", ctx, params[name]) from None
    return chosen


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


for _optional in (
    ("train.cli", "train", "the train/ package (models and k-fold training)", "k-fold training"),
    ("export.cli", "export", "the export/ package (ONNX/TorchScript bundles)", "export runs"),
):
    main.add_command(_optional_command(*_optional))
